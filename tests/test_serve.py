"""`seedmm serve` as its users meet it: a real uvicorn server on a free loopback port, the official
`openai` client, the shipped SEED-LLaMA-I; pictures judged by the world's judge."""

import base64
import io
import json
import random
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
from PIL import Image

from seedmm.cli import main
from seedmm.data.instructions import SHORT_ANSWER
from seedmm.models.generation import task_options
from seedmm.serve.engine import Job
from seedmm.serve.media import carried_codes, png_data_url
from seedmm.world import parse_caption, read_scene, render, sample_scene

from conftest import SERVE_KEY as KEY
from conftest import SERVE_LIMITS as LIMITS

ASK_COLOUR = f"what color is the circle? {SHORT_ANSWER}"  # the trained wording of a short-answer question


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server["base"] + "/v1", api_key=KEY, max_retries=0)


def image_part(image) -> dict:
    return {"type": "image_url", "image_url": {"url": png_data_url(image)}}


def picture(url_or_b64: str) -> Image.Image:
    data = url_or_b64.split(",", 1)[1] if url_or_b64.startswith("data:") else url_or_b64
    return Image.open(io.BytesIO(base64.b64decode(data)))


def test_models_health_and_auth(server, client):
    assert [m.id for m in client.models.list().data] == ["seed-llama-i"]
    assert httpx.get(server["base"] + "/health").json()["status"] == "ok"  # no key needed
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        r = httpx.get(server["base"] + "/v1/models", headers=headers)
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server["base"] + "/v1", api_key="nope", max_retries=0).models.list()


def test_chat_image_in_text_out(server, client):
    scene = parse_caption("a large red circle in the center")
    reply = client.chat.completions.create(model="seed-llama-i", messages=[
        {"role": "user", "content": [image_part(render(scene)), {"type": "text", "text": ASK_COLOUR}]}])
    assert reply.choices[0].message.content == "red"
    assert reply.choices[0].finish_reason == "stop"
    # the same answer as the Python API with the same defaults; usage counts the image's 34 tokens
    assert server["llm"].ask([render(scene)], ["what color is the circle?"]) == ["red"]
    assert reply.usage.prompt_tokens > 34 and reply.usage.completion_tokens >= 1
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_chat_draws_a_picture_the_judge_reads_back_and_the_conversation_goes_on(client):
    caption = "a large blue square in the center"
    messages = [{"role": "user", "content": f"Generate an image of {caption}."}]
    reply = client.chat.completions.create(model="seed-llama-i", messages=messages, seed=0)
    images = reply.choices[0].message.model_extra["images"]
    assert len(images) == 1
    drawn = picture(images[0]["image_url"]["url"])
    assert read_scene(drawn).key() == parse_caption(caption).key()
    assert reply.usage.completion_tokens >= 34  # <img>, 32 codes, </img>
    codes = carried_codes(drawn)
    assert codes is not None and len(codes) == 32  # the PNG carries what the model drew
    # multi-turn: the history is sent back, the drawn picture included; the edit continues from it
    messages += [{"role": "assistant", "content": reply.choices[0].message.content or "", "images": images},
                 {"role": "user", "content": "make the blue square red Please generation an image."}]
    second = client.chat.completions.create(model="seed-llama-i", messages=messages, seed=0)
    edited = second.choices[0].message.model_extra["images"]
    assert len(edited) == 1 and read_scene(picture(edited[0]["image_url"]["url"])).objects[0].colour == "red"
    assert second.usage.prompt_tokens > reply.usage.prompt_tokens + 34


def test_streaming_carries_the_same_reply(client):
    scene = parse_caption("a small green triangle in the top left")
    messages = [{"role": "user", "content": [image_part(render(scene)), {"type": "text", "text": f"what shape is it? {SHORT_ANSWER}"}]}]
    whole = client.chat.completions.create(model="seed-llama-i", messages=messages).choices[0].message.content
    chunks = list(client.chat.completions.create(model="seed-llama-i", messages=messages, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == whole
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_images_generate_and_edit(client):
    caption = "a small red circle in the top left"
    result = client.images.generate(model="seed-llama-i", prompt=caption, n=2, response_format="b64_json")
    assert len(result.data) == 2
    for item in result.data:
        assert read_scene(picture(item.b64_json)).objects  # a picture of the world, not noise
    assert any(read_scene(picture(item.b64_json)).key() == parse_caption(caption).key() for item in result.data)
    source = io.BytesIO()
    render(parse_caption("a large blue square in the center")).save(source, format="PNG")
    source.seek(0)
    edited = client.images.edit(model="seed-llama-i", image=("scene.png", source, "image/png"),
                                prompt="make the blue square red")
    scene = read_scene(picture(edited.data[0].b64_json))
    assert [(o.shape, o.colour) for o in scene.objects] == [("square", "red")]


def test_batching_serves_concurrent_clients_and_a_bad_request_fails_alone(server):
    engine, before = server["engine"], len(server["engine"].batches)
    scenes = [sample_scene(random.Random(i), n_objects=1) for i in range(8)]
    questions = [f"what color is the {s.objects[0].shape}? {SHORT_ANSWER}" for s in scenes]
    jobs = [Job("chat", task_options("ask"), messages=[{"role": "user", "content": [render(s), q]}])
            for s, q in zip(scenes, questions)]
    bad = Job("chat", jobs[0].options, messages=[{"role": "user", "content": [{"codes": [10 ** 6] * 32}, "what?"]}])
    futures = [engine.submit(j) for j in jobs[:4] + [bad] + jobs[4:]]
    results = [f.exception(timeout=120) or f.result() for f in futures]
    assert isinstance(results[4], ValueError)
    assert [r.text for r in results[:4] + results[5:]] == [s.objects[0].colour for s in scenes]
    assert max(engine.batches[before:]) > 1  # they were served together


def test_concurrent_http_clients(server, client):
    scene = parse_caption("a small yellow circle in the bottom right")

    def ask(_):
        return client.chat.completions.create(model="seed-llama-i", messages=[
            {"role": "user", "content": [image_part(render(scene)), {"type": "text", "text": ASK_COLOUR}]}],
            max_tokens=8).choices[0].message.content

    before = len(server["engine"].batches)
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask, range(8)))
    assert answers == ["yellow"] * 8
    assert len(server["engine"].batches) - before < 8  # fewer batches than requests


def big_png(width, height) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height)).save(buffer, format="PNG")  # compresses to a few KB
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


HOSTILE = [
    b"{", b"[]", b"null", b'"text"', b"\xff\xfe", b'{"messages": "hi"}', b'{"messages": []}',
    b'{"messages": [{"role": "robot", "content": "hi"}]}', b'{"messages": [{"role": "user"}]}',
    b'{"messages": [{"role": "user", "content": 5}]}', b'{"messages": [{"role": "user", "content": [{"type": "audio"}]}]}',
    b'{"messages": [{"role": "assistant", "content": "hi"}]}',
    b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 100000}',
    b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": -1}',
    b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": "many"}',
    b'{"messages": [{"role": "user", "content": "hi"}], "temperature": -1}',
    b'{"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}',
    b'{"messages": [{"role": "user", "content": "hi"}], "top_p": 0}',
    b'{"messages": [{"role": "user", "content": "hi"}], "seed": 1.5}',
    b'{"messages": [{"role": "user", "content": "hi"}], "n": 3}',
    b'{"messages": [{"role": "user", "content": "hi"}], "model": "gpt-4"}',
] + [json.dumps({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}, "hi"]}]}).encode()
     for url in ("https://example.com/a.png", "file:///etc/passwd", "data:image/png;base64,@@@@", "data:text/plain,hello",
                 "data:image/png;base64," + base64.b64encode(b"not an image").decode(),
                 "data:image/gif;base64," + base64.b64encode(b"GIF89a\x01\x00\x01\x00\x00\x00\x00;").decode(),
                 big_png(1024, 1024), 12, None)]


def test_bad_and_hostile_requests_get_openai_errors_and_the_server_goes_on(server, client):
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    base = server["base"]
    rng = random.Random(0)
    bodies = HOSTILE + [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))) for _ in range(20)]
    bodies += [json.dumps({"messages": [{"role": "user", "content": [image_part(render(sample_scene(rng, 1)))] * 4}]}).encode()]
    assert len(bodies) >= 50
    for body in bodies:
        r = httpx.post(base + "/v1/chat/completions", content=body, headers=headers, timeout=60)
        assert 400 <= r.status_code < 500, (body[:80], r.status_code, r.text)
        error = r.json()["error"]
        assert error["message"] and "Traceback" not in error["message"] and set(error) == {"message", "type", "param", "code"}
    by_code = {}
    for body, name in ((HOSTILE[-9], "remote"), (HOSTILE[-3], "pixels"), (HOSTILE[12], "tokens")):
        by_code[name] = httpx.post(base + "/v1/chat/completions", content=body, headers=headers).json()["error"]
    assert by_code["remote"]["code"] == "remote_url_refused"
    assert by_code["pixels"]["code"] == "image_too_large" and "1024×1024" in by_code["pixels"]["message"]
    assert by_code["tokens"]["param"] == "max_tokens"
    huge = httpx.post(base + "/v1/chat/completions", content=b"x" * (LIMITS.max_body_bytes + 1), headers=headers)
    assert huge.status_code == 413
    r = httpx.post(base + "/v1/images/generations", json={"prompt": "a red circle", "n": 9}, headers=headers)
    assert r.status_code == 400 and r.json()["error"]["param"] == "n"
    r = httpx.post(base + "/v1/images/generations", json={"prompt": "x", "response_format": "url"}, headers=headers)
    assert r.status_code == 400 and r.json()["error"]["param"] == "response_format"
    r = httpx.post(base + "/v1/images/edits", files={"prompt": (None, "make it red")}, headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "image"
    assert httpx.get(base + "/v1/nothing", headers=headers).status_code == 404
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="seed-llama-i", messages=[{"role": "user", "content": "hi"}], max_tokens=10 ** 6)
    # still serving
    scene = parse_caption("a large red circle in the center")
    reply = client.chat.completions.create(model="seed-llama-i", messages=[
        {"role": "user", "content": [image_part(render(scene)), {"type": "text", "text": ASK_COLOUR}]}])
    assert reply.choices[0].message.content == "red"


def test_the_page_is_served(server):
    page = httpx.get(server["base"] + "/")
    assert page.status_code == 200 and "/v1/chat/completions" in page.text and 'id="attach"' in page.text


def test_serve_command_refusals(capsys):
    assert main(["serve", "--model", "seed-x"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not built yet" in err
    assert main(["serve", "--max-batch", "0"]) == 2
    assert "--max-batch must be positive" in capsys.readouterr().err
