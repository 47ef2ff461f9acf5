"""Your own data made ready for a training stage, one floor below the recipes.

`seedmm train STAGE --data PATH [--data PATH …]` reads each data set (`user_data`), checks that the
stage takes its format, holds out a validation share, and at the end of the run prints the
bad-record report and writes it to `OUT/bad_records.json`. What every recipe needs of it lives
here: `read_stage_data`, `load_pictures` (the pictures at the model's size, a record whose image
went bad since it was read joining the report), `stage_text_tokenizer` (a byte-level BPE trained on
the data's texts, or `--text-tokenizer DIR`) and `report_bad_records`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from .user_data import FORMATS, detect_format, iter_records
from .user_records import BadRecord, BadRecords, DataError, Record, UserImage

# Which formats each `seedmm train` stage learns from (docs/data.md, "Training on your own data").
STAGE_FORMATS: dict[str, tuple[str, ...]] = {
    "tokenizer": ("pairs",),
    "detokenizer": ("pairs",),
    "seedx-detokenizer": ("pairs", "edits"),
    "llm": ("pairs", "interleaved"),
    "seed-opt": ("pairs",),
    "sft": ("conversations", "edits"),
    "seedx": ("pairs", "grounding", "interleaved", "conversations", "edits"),
}
# Every VAL_EVERY-th record of a format is held out for validation, once a format has at least
# 2·VAL_EVERY records (a handful of records is all training data).
VAL_EVERY = 20
TEXT_TOKENIZER_DIR = "text_tokenizer"
BAD_RECORDS_FILE = "bad_records.json"


@dataclass
class StageData:
    """A stage's own data: its good records by format, split into train and validation, and the
    report of every record skipped so far (reading, then loading pictures)."""

    paths: list[Path]
    train: dict[str, list[Record]]
    val: dict[str, list[Record]]
    bad: BadRecords = field(default_factory=BadRecords)

    def texts(self) -> list[str]:
        """Every text of the training records (what the text tokenizer and the base LM learn)."""
        return [text for records in self.train.values() for record in records for text in record.texts]

    def count(self) -> int:
        """The good records: those read, less those a stage refused after reading (an image gone bad,
        a sequence longer than the model's context), which stay in `train` / `val` but joined `bad`."""
        return sum(r.key not in self.bad.keys for records in (*self.train.values(), *self.val.values()) for r in records)


def read_stage_data(stage: str, paths: Sequence[str | os.PathLike], format: str | None = None,
                    val_every: int = VAL_EVERY) -> StageData:
    """The data sets at `paths` read for `seedmm train STAGE`: a DataError (one line) for a path that
    cannot be read, a format the stage does not learn from, or no good record at all."""
    takes = STAGE_FORMATS[stage]
    if format is not None and format not in FORMATS:
        raise DataError(f"unknown data format {format!r}; choose from {', '.join(FORMATS)}")
    bad = BadRecords()
    train: dict[str, list[Record]] = {}
    val: dict[str, list[Record]] = {}
    for path in map(Path, paths):
        kind = format or detect_format(path)
        if kind not in takes:
            raise DataError(f"seedmm train {stage} learns from {' and '.join(takes)} (docs/data.md); {path} holds {kind}")
        records = list(iter_records(path, kind, bad, str(path) if len(paths) > 1 else ""))
        held = val_every if len(records) >= 2 * val_every else 0
        train.setdefault(kind, []).extend(r for i, r in enumerate(records) if not held or i % held != held - 1)
        val.setdefault(kind, []).extend(r for i, r in enumerate(records) if held and i % held == held - 1)
    data = StageData([Path(p) for p in paths], {k: v for k, v in train.items() if v}, {k: v for k, v in val.items() if v},
                     bad)
    if not data.train:
        raise DataError(f"no good record in {', '.join(map(str, paths))}: {bad.lines()[0]}")
    return data


def load_picture(image: UserImage, size: int | None = None) -> Image.Image:
    """An image of a record as RGB, stretched to size × size (as BLIP-2's image processor does) unless
    `size` is None; a BadRecord if the file went bad since it was read."""
    picture = image.load()
    return picture if size is None or picture.size == (size, size) else picture.resize((size, size), Image.BICUBIC)


def load_pictures(records: list[Record], size: int | None, bad: BadRecords) -> tuple[list[Record], list[list[Image.Image]]]:
    """The records whose every image still loads, and their pictures (one list a record, in the
    record's image order); each record that fails joins `bad` under its reason."""
    kept, pictures = [], []
    for record in records:
        try:
            loaded = [load_picture(image, size) for image in record.images]
        except BadRecord as e:
            bad.add(record.key, e.reason, e.detail)
            continue
        kept.append(record)
        pictures.append(loaded)
    return kept, pictures


def stage_text_tokenizer(data: StageData, out: str | os.PathLike, given: str | os.PathLike | None = None,
                         vocab_size: int = 4096):
    """The text tokenizer of a run on own data: `given` (`--text-tokenizer DIR`) loaded as it is, else
    the byte-level BPE saved in OUT/text_tokenizer by an earlier start of the run, else one trained on
    the training texts and saved there (so a resumed run keeps its ids)."""
    from .text_tokenizer import load_text_tokenizer, train_text_bpe

    if given is not None:
        return load_text_tokenizer(given)
    from ..train.distributed import main_process_writes

    directory = Path(out) / TEXT_TOKENIZER_DIR
    if not directory.is_dir():  # under torchrun rank 0 learns it; every rank loads the one it saved
        main_process_writes(lambda: train_text_bpe(data.texts(), directory, vocab_size))
    return load_text_tokenizer(directory)


def report_bad_records(data: StageData, out: str | os.PathLike, print_line=print) -> None:
    """The end of a run on own data: the bad-record report printed and written to OUT/bad_records.json
    (by rank 0 only under torchrun)."""
    from ..atomic import write_atomically
    from ..train.distributed import current

    if not current().is_main:
        return
    for line in data.bad.lines():
        print_line(line)
    summary = {"data": [str(p) for p in data.paths], "good": data.count(), **data.bad.to_dict()}
    write_atomically(Path(out) / BAD_RECORDS_FILE, lambda tmp: tmp.write_text(json.dumps(summary, indent=2) + "\n"))


def validation_line(data: StageData) -> str:
    """What a run on own data validates on, for its log: the held-out records, or why there are none."""
    if not data.val:
        return (f"no validation: no format of the data has the {2 * VAL_EVERY} records from which every "
                f"{VAL_EVERY}th is held out")
    held = ", ".join(f"{len(records)} {kind}" for kind, records in data.val.items())
    return f"validation on the held-out records ({held})"
