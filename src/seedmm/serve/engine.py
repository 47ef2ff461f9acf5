"""The serving engine: one worker thread owns the model; requests wait in a queue and the worker
takes every request waiting (up to `max_batch`) as one batch — dynamic batching.

A batch is split into groups that can share one forward pass: the same kind of work (a chat
reply, a text-to-image request, an edit) with the same generation options, picture requests apart
from answers in words. Each group runs as one batched call of the Python API (`SeedLlama.respond`,
`generate_codes`, `edit_coded`), its pictures are drawn by one de-tokenizer call per (steps, seed),
and it is answered; the cheap groups go first. If a
group's batched call fails, its requests are run one by one, so a request that fails fails alone
and the others in its batch are still answered; the worker itself never stops on a request's
error.

A reply can depend on the requests it was batched with (left padding, batched numerics); pass a
`seed` and send requests one at a time where bit-for-bit repeatability matters.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import astuple, dataclass, field

from ..data.instructions import conversation_ids, edit_request, requested_caption, t2i_request
from ..models.generation import GenerationOptions


@dataclass
class Job:
    """One unit of work. `kind`: "chat" (`messages` as `SeedLlama.chat` takes them), "generate"
    (`text`: a caption to draw) or "edit" (`image`: the source picture, PIL or {"codes": [32 ints]};
    `text`: the instruction). Pictures are encoded on the worker, inside the batch."""

    kind: str
    options: GenerationOptions
    messages: list | None = None
    text: str | None = None
    image: object = None
    steps: int = 25
    seed: int = 0
    future: Future = field(default_factory=Future)

    def draws(self) -> bool:
        """Whether the job is a picture request (the costly kind: self-reranked candidates)."""
        if self.kind != "chat":
            return True
        turns = [(m["role"], [m["content"]] if isinstance(m["content"], str) else m["content"]) for m in self.messages]
        return requested_caption(turns) is not None

    def group_key(self) -> tuple:
        return (self.draws(), self.kind, astuple(self.options))


@dataclass
class Result:
    """A job's answer: `parts` in order (text strings and 32-code lists), the text, the pictures drawn
    from the code lists (PIL), and the token counts (images count as their `<img>` + 32 codes + `</img>`)."""

    parts: list
    text: str
    images: list = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def codes(self) -> list[list[int]]:
        return [p for p in self.parts if not isinstance(p, str)]


class Engine:
    """Owns a SeedLlama (instruction-tuned) and serves `Job`s from a queue on one thread."""

    def __init__(self, llm, max_batch: int = 16, wait_seconds: float = 0.01):
        self.llm, self.max_batch, self.wait_seconds = llm, max_batch, wait_seconds
        self.queue: queue.Queue = queue.Queue()
        self.batches: list[int] = []  # the size of every batch served (for tests and the bench)
        self.worker = threading.Thread(target=self._run, name="seedmm-engine", daemon=True)
        self.worker.start()

    def submit(self, job: Job) -> Future:
        self.queue.put(job)
        return job.future

    def close(self) -> None:
        self.queue.put(None)
        self.worker.join(timeout=30)

    # ------------------------------------------------------------ the worker
    def _run(self) -> None:
        while True:
            first = self.queue.get()
            if first is None:
                return
            time.sleep(self.wait_seconds)  # a moment for the requests sent together to arrive together
            jobs = [first]
            while len(jobs) < self.max_batch:
                try:
                    job = self.queue.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    self.queue.put(None)
                    break
                jobs.append(job)
            self.batches.append(len(jobs))
            try:
                self._serve(jobs)
            except BaseException as e:  # noqa: BLE001 — the worker outlives any failure
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(e if isinstance(e, Exception) else RuntimeError(str(e)))

    def _serve(self, jobs: list[Job]) -> None:
        """Group by cost, kind and options; the cheap groups (answers in words) are served and
        answered first, so their clients are not held behind the picture requests of the batch."""
        groups: dict[tuple, list[Job]] = {}
        for job in jobs:
            groups.setdefault(job.group_key(), []).append(job)
        for key in sorted(groups, key=lambda k: k[0]):
            group, answered = groups[key], []
            try:
                answered += zip(group, self._step(group))
            except Exception:  # noqa: BLE001 — retry alone, so only the failing request fails
                for job in group:
                    try:
                        answered += zip([job], self._step([job]))
                    except Exception as e:  # noqa: BLE001
                        job.future.set_exception(e)
            self._draw(answered)
            for job, result in answered:
                if not job.future.done():
                    job.future.set_result(result)

    def _step(self, group: list[Job]) -> list[Result]:
        """One batched LLM call for jobs of one kind and one set of options."""
        llm, kind, options = self.llm, group[0].kind, group[0].options
        if kind == "chat":
            self._encode_pictures(group)
            conversations = [llm.conversation(j.messages) for j in group]
            decoded = llm.respond(conversations, options)
            return [self._result(turns, d.parts) for turns, d in zip(conversations, decoded)]
        if kind == "generate":
            codes = llm.generate_codes([j.text for j in group], options)
            turns = [[("user", t2i_request(j.text))] for j in group]
        elif kind == "edit":
            # the source pictures as one user turn: encoded in one batch, each as its 32 codes
            sources = llm.conversation([{"role": "user", "content": [j.image for j in group]}])[0][1]
            codes = llm.edit_coded(sources, [j.text for j in group], options)
            turns = [[("user", edit_request(c, j.text))] for c, j in zip(sources, group)]
        else:
            raise ValueError(f"unknown job kind {kind!r}")
        return [self._result(t, [c] if c is not None else []) for t, c in zip(turns, codes)]

    def _encode_pictures(self, group: list[Job]) -> None:
        """Every picture of the group's conversations through the image tokenizer in one batch,
        replaced by {"codes": …} (one ViT pass for the batch instead of one per request)."""
        places = [(m["content"], k) for j in group for m in j.messages if isinstance(m["content"], list)
                  for k, part in enumerate(m["content"]) if not isinstance(part, (str, dict))]
        if places:
            codes = self.llm.component("image_tokenizer").encode([parts[k] for parts, k in places]).tolist()
            for (parts, k), c in zip(places, codes):
                parts[k] = {"codes": c}

    def _result(self, turns: list, parts: list) -> Result:
        tok = self.llm.tokenizer
        prompt = len(conversation_ids(tok, turns, generation_prompt=True)[0])
        total = len(conversation_ids(tok, [*turns, ("assistant", parts)])[0])
        text = " ".join(p.strip() for p in parts if isinstance(p, str)).strip()
        return Result(parts=parts, text=text, prompt_tokens=prompt, completion_tokens=max(0, total - prompt))

    def _draw(self, answered: list[tuple[Job, Result]]) -> None:
        """Every picture of the batch, one de-tokenizer call per (steps, seed)."""
        pending: dict[tuple[int, int], list[tuple[Result, list[int]]]] = {}
        for job, result in answered:
            for codes in result.codes:
                pending.setdefault((job.steps, job.seed), []).append((result, codes))
        for (steps, seed), items in pending.items():
            try:
                pictures = self.llm.draw([codes for _, codes in items], steps=steps, seed=seed)
            except Exception as e:  # noqa: BLE001 — these requests fail; the rest of the batch is answered
                failed = {id(result) for result, _ in items}
                for job, result in answered:
                    if id(result) in failed and not job.future.done():
                        job.future.set_exception(e)
                continue
            for (result, _), picture in zip(items, pictures):
                result.images.append(picture)
