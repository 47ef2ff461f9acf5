"""Your own data as SEED-X cases (`seedmm train seedx --data`): each record becomes `Case`s of the
world's kind (data/seedx_world.py), so the world's layouts (`plain`, `conversation`) lay them out;
the two the world has no case for, a LLaVA conversation and an interleaved document, are laid out
here with the same `conversation_items` / `plain_items`.

    pretrain  pairs          caption (picture → caption), t2i (caption → drawing)
              grounding      ground (picture, phrase → box), refer (picture, box → phrase); a case per object
              interleaved    document (its texts predicted, its pictures drawn; a leading picture is read)
    sft       conversations  conversation (`[INST] … [/INST]\\n` turns, each `<image>` the picture's views)
              edits          edit (source read, target drawn)
              grounding      ground and refer, as questions and answers

Each distinct image goes through the frozen ViT once; a box in pixels becomes `<loc-k>` tokens of
its picture's size (`box_to_text`). A record whose picture the model refuses (too small or too
large) or whose layout does not fit the context joins the bad-record report.
"""

from __future__ import annotations

import random
import re
from collections import Counter

from ..models.seedx_layout import (
    ViewsIn,
    box_to_text,
    conversation_items,
    lay_out,
    plain_items,
)
from .seedx_world import Case, conversation, featurize_pictures, plain, target
from .user_records import (
    IMAGE_PLACEHOLDER,
    OUTSIDE,
    TOO_LONG,
    BadRecords,
    Conversation,
    DataError,
    Document,
    Edit,
    Grounding,
    Pair,
)
from .user_training import load_pictures

# The tasks each format teaches in each stage, with their shares of the format's weight (grounding
# as the world's pretraining mix: ground 0.15, refer 0.05).
STAGE_TASKS = {
    "pretrain": {"pairs": {"caption": 0.5, "t2i": 0.5}, "grounding": {"ground": 0.75, "refer": 0.25},
                 "interleaved": {"document": 1.0}},
    "sft": {"conversations": {"conversation": 1.0}, "edits": {"edit": 1.0}, "grounding": {"ground": 0.75, "refer": 0.25}},
}
# The question `SeedX.ground` asks of a phrase (the world's grounding questions have the same form).
GROUND = "where is {phrase}? answer with a box."
PICTURE_REFUSED = "picture too small or too large"
CHUNK = 256  # records whose pictures are decoded at a time
MAX_UNKNOWN_WORDS = 0.05  # SFT refuses data more of whose words than this its tokenizer spells with <unk>


def check_formats(stage: str, formats) -> None:
    takes = STAGE_TASKS[stage]
    for fmt in formats:
        if fmt not in takes:
            raise DataError(f"seedmm train seedx --stage {stage} learns from {', '.join(takes)} (docs/data.md); "
                            f"the data holds {fmt}")


def task_weights(stage: str, pools: dict[str, list[Case]], records: dict[str, list]) -> dict[str, float]:
    """Each format weighs by its share of the records, split among its tasks; tasks without a case drop."""
    total = sum(len(records[fmt]) for fmt in STAGE_TASKS[stage] if fmt in records)
    return {task: len(records[fmt]) / total * share for fmt, tasks in STAGE_TASKS[stage].items() if fmt in records
            for task, share in tasks.items() if pools.get(task)}


def layout(stage: str):
    """(task, case, rng) → the items of one sequence: the world's layout of the stage, or a
    conversation's or a document's (their parts name pictures by index into `case.pictures`)."""
    world = plain if stage == "pretrain" else conversation

    def items(task: str, case: Case, rng: random.Random):
        v = case.pictures
        if task == "conversation":  # the user's pictures read, any the assistant shows drawn
            return conversation_items([(role, [p if isinstance(p, str) else (v[p] if role == "user" else target(v[p]))
                                               for p in parts]) for role, parts in case.meta["turns"]])
        if task == "document":
            return plain_items([p if isinstance(p, str) else (v[p] if k == 0 else target(v[p]))
                                for k, p in enumerate(case.meta["parts"])], answer_from=0)
        return world(task, case, rng)

    return items


def user_cases(model, records: dict[str, list], stage: str, bad: BadRecords) -> dict[str, list[Case]]:
    """The cases of each task of the stage from the records of each format; a record the model cannot
    take joins `bad`."""
    lay, limit = layout(stage), model.llm.config.max_position_embeddings
    pools: dict[str, list[Case]] = {task: [] for tasks in STAGE_TASKS[stage].values() for task in tasks}
    views_of: dict = {}  # UserImage → ViewsIn: an image shared by records goes through the ViT once
    for fmt, recs in records.items():
        for start in range(0, len(recs), CHUNK):
            kept, pictures = load_pictures(recs[start:start + CHUNK], None, bad)
            kept, pictures = _fitting_pictures(model, kept, pictures, bad)
            new = {image: picture for record, loaded in zip(kept, pictures) for image, picture in zip(record.images, loaded)
                   if image not in views_of}
            views_of.update(zip(new, featurize_pictures(model, list(new.values())) if new else []))
            for record in kept:
                try:
                    cases = cases_of(record, [views_of[image] for image in record.images], STAGE_TASKS[stage][fmt])
                except ValueError as e:  # a box box_to_text refuses
                    bad.add(record.key, OUTSIDE, str(e))
                    continue
                longest = max(len(lay_out(model.tokenizer, lay(task, case, random.Random(0)))) for task, case in cases)
                if longest > limit:
                    bad.add(record.key, TOO_LONG, f"{longest} tokens; the context holds {limit}")
                    continue
                for task, case in cases:
                    pools[task].append(case)
    return pools


def _fitting_pictures(model, records: list, pictures: list, bad: BadRecords) -> tuple[list, list]:
    from ..models.seedx import InputError, check_picture

    kept = []
    for record, loaded in zip(records, pictures):
        try:
            kept.append((record, [check_picture(p, model.config) for p in loaded]))
        except InputError as e:
            bad.add(record.key, PICTURE_REFUSED, str(e))
    return [r for r, _ in kept], [p for _, p in kept]


def cases_of(record, views: list[ViewsIn], tasks: dict[str, float]) -> list[tuple[str, Case]]:
    """One record → (task, case) for each task it teaches (a grounding record: a case per object)."""
    if isinstance(record, Pair):
        case = Case("caption", {"caption": record.caption}, views, [])
        return [(task, case) for task in tasks]
    if isinstance(record, Grounding):
        width, height = record.image.size
        cases = [Case("ground", {"boxes": [{"phrase": o.phrase, "box": list(o.box), "question": GROUND.format(phrase=o.phrase),
                                            "answer": box_to_text(o.box, width, height)}]}, views, [])
                 for o in record.objects]
        return [(task, case) for case in cases for task in tasks]
    if isinstance(record, Edit):
        return [("edit", Case("edit", {"instruction": record.instruction}, views, []))]
    if isinstance(record, Conversation):
        return [("conversation", Case("conversation", {"turns": conversation_turns(record)}, views, []))]
    if isinstance(record, Document):
        parts, k = [], 0
        for part in record.parts:
            parts.append(part if isinstance(part, str) else k)
            k += not isinstance(part, str)
        return [("document", Case("document", {"parts": parts}, views, []))]
    raise TypeError(f"no SEED-X case for a {type(record).__name__} record")


def conversation_turns(record: Conversation) -> list[tuple[str, list]]:
    """LLaVA turns → [(role, parts)], each `<image>` the index of its picture (in placeholder order)."""
    turns, k = [], 0
    for turn in record.turns:
        parts = []
        for j, piece in enumerate(turn.text.split(IMAGE_PLACEHOLDER)):
            if j:
                parts.append(k)
                k += 1
            if piece.strip():
                parts.append(piece.strip())
        turns.append(("user" if turn.role == "human" else "assistant", parts))
    return turns


def check_vocabulary(tokenizer, texts: list[str], model_dir, limit: float = MAX_UNKNOWN_WORDS) -> None:
    """A DataError when more than `limit` of the texts' words hold a character the SEED-X tokenizer
    spells <unk> (the world-trained model's BPE knows the world's alphabet only)."""
    words = Counter(w for t in texts for w in re.findall(r"\S+", t))
    unk = tokenizer.text.unk_token_id
    unknown = Counter({w: n for w, n in words.items() if unk is not None and unk in tokenizer.encode_text(w)})
    share = unknown.total() / max(1, words.total())
    if share > limit:
        examples = ", ".join(repr(w) for w, _ in unknown.most_common(3))
        raise DataError(f"the tokenizer of {model_dir} spells {share:.0%} of the data's words with <unk> (e.g. "
                        f"{examples}): pretrain on this data first (--stage pretrain --data …), or --init a SEED-X "
                        f"whose tokenizer covers it")
