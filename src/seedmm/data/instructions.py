"""SEED-LLaMA-I instruction data: the paper's templates (Table 8) and conversations built from
pretokenized world records.

A conversation is a list of turns `(role, parts)`, role "user" or "assistant", parts text strings
and images (32 codes each). `conversation_ids` lays it out as SEED-LLaMA-I does,

    <s>USER: {parts}\\nASSISTANT: {answer}</s>USER: {parts}\\nASSISTANT: {answer}</s>

with the loss only on the assistant's answers (and their `</s>`). Training and `SeedLlama.chat`
both go through `conversation_ids`, so a prompt at inference is the training layout to the token.

One builder per task turns a record into a conversation ending with the assistant's answer; the
evaluation drops that last turn to get the prompt and judges the answer against the record.
"""

from __future__ import annotations

import random

from ..world.scene import Scene
from ..world.tasks import PICTURE_NAMES, sample_question

USER, ASSISTANT = "USER:", "\nASSISTANT:"
GENERATE = "Please generation an image."  # the paper's wording, kept as the official prompts have it
DESCRIBE = "Please provide an accurate and concise description of the given image."
DESCRIBE_VIDEO = "Please provide an accurate and concise description of the given video."
SHORT_ANSWER = "Please provide an accurate answer consisting of only one word or phrase."
FIRST_IMAGE, SECOND_IMAGE = "This is the first image.", "This is the second image."
DIFFERENCE_QUESTION = "What is the difference between the two images?"
BLEND = "Please blend the two images into one image."
CONTINUE_STORY = "Please continue the story with an image."
# Text-to-image requests: the paper's template first, then rephrasings a user may type.
T2I_REQUESTS = ("{caption} " + GENERATE, "Generate an image of {caption}.", "Draw {caption}.",
                "Can you draw {caption}?", "Show me a picture of {caption}.")
COMPOSE_REQUEST = "Add {caption} to this image. " + GENERATE
IN_CONTEXT_REQUEST = "Draw {a} and {b} together. " + GENERATE

TASK_WEIGHTS = {"t2i": 0.15, "caption": 0.1, "vqa": 0.3, "edit": 0.15, "difference": 0.05, "story": 0.05,
                "video": 0.05, "conversation": 0.1, "compose": 0.05}
# Which pretokenized world task each builder reads.
SOURCE = {"t2i": "caption", "caption": "caption", "vqa": "vqa", "edit": "edit", "difference": "edit",
          "story": "story", "video": "video", "conversation": "story", "compose": "compose"}


def conversation_ids(tok, turns, generation_prompt: bool = False) -> tuple[list[int], list[int]]:
    """(ids, labels) of a conversation; labels are −100 except on assistant answers. With
    `generation_prompt`, the conversation ends with a user turn whose `ASSISTANT:` opens the reply.
    With a keep token in `tok`, an answer's image is written against the image before it in the
    conversation (`MultimodalTokenizer.image_ids`); the user's images are always written in full."""
    ids, labels = [tok.bos_id], [-100]
    previous = None
    for role, parts in turns:
        if role == "user":
            segment = tok.encode([USER, *parts, ASSISTANT], bos=False)
            labels += [-100] * len(segment)
        elif role == "assistant":
            segment = tok.encode(list(parts), bos=False, eos=True, keep_from=previous)
            labels += segment
        else:
            raise ValueError(f"a turn's role is 'user' or 'assistant', got {role!r}")
        ids += segment
        previous = last_image([(role, parts)]) or previous
    if generation_prompt and (not turns or turns[-1][0] != "user"):
        raise ValueError("a generation prompt ends with a user turn")
    return ids, labels


def last_image(turns) -> list[int] | None:
    """The codes of the conversation's last image (what a reply's keep tokens refer to), None if none."""
    images = [part for _, parts in turns for part in parts if not isinstance(part, str)]
    return list(images[-1]) if images else None


def changed_code_weights(tok, ids: list[int], labels: list[int], weight: float,
                         blank: list[int] | None = None, kept_object_weight: float = 1.0) -> list[float]:
    """Per-token loss weights of a conversation: `weight` on the answer image codes that differ from
    the code at the same index of the image before them in the sequence (what an edit, a story step
    or a composition changes), 1 elsewhere. Most codes of an edited picture are copies of the
    source's, which the model learns first; unweighted, the few codes that carry the change are a
    sixth of an edit answer's loss. With `blank` (the codes of an empty canvas), copied codes of a
    region that holds an object weigh `kept_object_weight`: an empty region has one code pattern,
    seen in nearly every picture, and the model wrote it over objects it was told to keep. A keep
    token is a copied code."""
    weights = [1.0] * len(ids)
    previous, start = None, None
    for p, t in enumerate(ids):
        if t == tok.boi_id:
            start = p + 1
        elif t == tok.eoi_id and start is not None:
            span = ids[start:p]
            if previous is not None and len(previous) == len(span):
                span = [previous[j] if code == tok.keep_id else code for j, code in enumerate(span)]
                for j, code in enumerate(span):
                    if labels[start + j] == -100:
                        continue
                    if code != previous[j]:
                        weights[start + j] = weight
                    elif blank is not None and code != tok.code_offset + blank[j]:
                        weights[start + j] = kept_object_weight
            previous, start = span, None
    return weights


def with_request(text: str, request: str) -> str:
    return f"{text} {request}"


# What a user turn says for each single-step task: the builders below and `SeedLlama` both use these.
def caption_request(image) -> list:
    return [image, DESCRIBE]


def question_request(image, question: str) -> list:
    return [image, with_request(question, SHORT_ANSWER)]


def edit_request(image, instruction: str) -> list:
    return [image, with_request(instruction, GENERATE)]


def t2i_request(text: str, template: str = T2I_REQUESTS[0]) -> list:
    return [template.format(caption=text)]


def requested_caption(turns) -> str | None:
    """The caption a conversation asks to draw, if it is one text-to-image request (a single user turn
    of text, phrased as one of `T2I_REQUESTS`); else None."""
    if len(turns) != 1 or turns[0][0] != "user" or not all(isinstance(p, str) for p in turns[0][1]):
        return None
    text = " ".join(p.strip() for p in turns[0][1]).strip()
    for template in T2I_REQUESTS:
        head, tail = template.split("{caption}")
        if text.startswith(head) and text.endswith(tail) and len(text) > len(head) + len(tail):
            return text[len(head):len(text) - len(tail)].strip()
    return None


# ---------------------------------------------------------------- one builder per task

def t2i(record: dict, rng: random.Random) -> list:
    text = record["paraphrase"] if rng.random() < 0.3 else record["caption"]
    template = T2I_REQUESTS[0] if rng.random() < 0.5 else rng.choice(T2I_REQUESTS[1:])
    return [("user", t2i_request(text, template)), ("assistant", [record["codes"][0]])]


def captioning(record: dict, rng: random.Random) -> list:
    return [("user", caption_request(record["codes"][0])), ("assistant", [record["caption"]])]


def vqa(record: dict, rng: random.Random) -> list:
    """One to all of the record's questions about its image, a turn each (LLaVA's multi-turn VQA):
    the image is shown once, in the first turn, so a sequence supervises several answers where a
    single question would spend 40 tokens of context on a one-word answer."""
    asked = rng.sample(record["qa"], rng.randint(1, len(record["qa"])))
    turns = []
    for k, qa in enumerate(asked):
        question = qa["paraphrase"] if rng.random() < 0.3 else qa["question"]
        request = question_request(record["codes"][0], question) if k == 0 else [with_request(question, SHORT_ANSWER)]
        turns += [("user", request), ("assistant", [qa["answer"]])]
    return turns


def edit(record: dict, rng: random.Random) -> list:
    instruction = record["paraphrase"] if rng.random() < 0.3 else record["instruction"]
    return [("user", edit_request(record["codes"][0], instruction)), ("assistant", [record["codes"][1]])]


def difference(record: dict, rng: random.Random) -> list:
    source, target = record["codes"]
    return [("user", [FIRST_IMAGE, source, SECOND_IMAGE, target, DIFFERENCE_QUESTION]),
            ("assistant", [record["difference"]])]


def story(record: dict, rng: random.Random) -> list:
    """The story so far (text, image, text, image…), the next sentence, then its picture."""
    steps = record["steps"]
    k = rng.randint(1, len(steps) - 1)
    told = [part for s in steps[:k] for part in (s["text"], record["codes"][s["image"]])]
    return [("user", [*told, with_request(steps[k]["text"], CONTINUE_STORY)]),
            ("assistant", [record["codes"][steps[k]["image"]]])]


def video(record: dict, rng: random.Random) -> list:
    frames = list(record["codes"])
    if rng.random() < 0.5:
        return [("user", [*frames, with_request(record["question"], SHORT_ANSWER)]), ("assistant", [record["answer"]])]
    return [("user", [*frames, DESCRIBE_VIDEO]), ("assistant", [record["caption"]])]


def conversation(record: dict, rng: random.Random) -> list:
    """Draw, then edit, with questions about the current picture in between (a story record's
    scenes and edits): the pictures the assistant drew stay in the history as codes."""
    scenes = [Scene.from_dict(s) for s in record["scenes"]]
    first = record["steps"][0]["text"]  # the first scene's caption
    turns = t2i({"caption": first, "paraphrase": first, "codes": record["codes"][:1]}, rng)
    for k, instruction in enumerate(record["edits"], start=1):
        if rng.random() < 0.4:
            q = sample_question(scenes[k - 1], rng)
            turns += [("user", [with_request(q.text, SHORT_ANSWER)]), ("assistant", [q.answer])]
        turns += [("user", [with_request(instruction, GENERATE)]), ("assistant", [record["codes"][k]])]
    return turns


def compose(record: dict, rng: random.Random, kind: str | None = None) -> list:
    """Image blending (two images → one), composition (image + text → image) and in-context
    generation (named images, then "draw A and B together"); the answer is the union scene."""
    first, second, union = record["codes"]
    kind = kind or rng.choice(COMPOSE_KINDS)
    if kind == "blend":
        prompt = [FIRST_IMAGE, first, SECOND_IMAGE, second, BLEND]
    elif kind == "composition":
        prompt = [first, COMPOSE_REQUEST.format(caption=record["captions"][1])]
    else:
        a, b = record["names"]
        prompt = [f"This is {a}.", first, f"This is {b}.", second, IN_CONTEXT_REQUEST.format(a=a, b=b)]
    return [("user", prompt), ("assistant", [union])]


COMPOSE_KINDS = ("blend", "composition", "in_context")
BUILDERS = {"t2i": t2i, "caption": captioning, "vqa": vqa, "edit": edit, "difference": difference, "story": story,
            "video": video, "conversation": conversation, "compose": compose}


# ---------------------------------------------------------------- your own data (`seedmm train sft --data`)

def user_conversation(record: dict, rng: random.Random) -> list:
    """A LLaVA conversation of your own (data/codes.py `user_code_records`): "human" turns are the
    user's, "gpt" turns the assistant's, each `<image>` the next of the record's images in place."""
    from .user_records import IMAGE_PLACEHOLDER

    images = iter(record["codes"])
    turns = []
    for role, text in record["turns"]:
        pieces = [piece.strip() for piece in text.split(IMAGE_PLACEHOLDER)]
        parts = [pieces[0]] + [part for piece in pieces[1:] for part in (next(images), piece)]
        turns.append(("user" if role == "human" else "assistant", [p for p in parts if not isinstance(p, str) or p]))
    return turns


# What SFT on your own data trains: the conversations as they are, and each edit as the world's edit
# task lays it out (`edit`: source image and instruction → the target image). Builders and the format
# each reads; the weights are the mixture's when both formats are given.
USER_BUILDERS = {"conversation": user_conversation, "edit": edit}
USER_SOURCE = {"conversation": "conversations", "edit": "edits"}
USER_TASK_WEIGHTS = {"conversation": 0.7, "edit": 0.3}


def instruction_corpus(seed: int = 0, n: int = 2000) -> list[str]:
    """Every sentence an instruction conversation can hold (questions, answers, instructions,
    differences, templates, picture names): with the captions, the text the tiny LLM's BPE and its
    text-only base stage learn, so no prompt word falls back to `<unk>`."""
    from .world_samples import make_record

    texts = [USER + " " + ASSISTANT, GENERATE, DESCRIBE, DESCRIBE_VIDEO, SHORT_ANSWER, FIRST_IMAGE, SECOND_IMAGE,
             DIFFERENCE_QUESTION, BLEND, CONTINUE_STORY, *(f"This is {name}." for name in PICTURE_NAMES)]
    rng = random.Random(f"instruction-corpus/{seed}")
    for i in range(n):
        vqa_meta = make_record("vqa", "train", i, seed).meta
        texts += [t for qa in vqa_meta["qa"] for t in (qa["question"], qa["paraphrase"], qa["answer"])]
        e = make_record("edit", "train", i, seed).meta
        texts += [with_request(e["instruction"], GENERATE), e["paraphrase"], e["difference"]]
        v = make_record("video", "train", i, seed).meta
        texts += [with_request(v["question"], SHORT_ANSWER), v["answer"], v["caption"]]
        c = make_record("compose", "train", i, seed).meta
        names = c["names"]
        texts += [rng.choice(T2I_REQUESTS).format(caption=c["captions"][2]),
                  COMPOSE_REQUEST.format(caption=c["captions"][1]), IN_CONTEXT_REQUEST.format(a=names[0], b=names[1])]
    return texts
