"""Your own data: readers for the five documented formats, format detection, the rank split.

Formats (docs/data.md, "Your own data"):
    pairs          webdataset .tar shards of `KEY.jpg|jpeg|png|webp` + `KEY.txt` or `KEY.json` {"caption"},
                   or a JSONL of {"image": path, "caption": …}
    conversations  LLaVA JSONL: {"image": path | [paths] (optional), "conversations": [{"from": "human"|"gpt",
                   "value": "…<image>…"}]}, one `<image>` per image
    edits          JSONL of {"source_image", "target_image", "instruction"}
    interleaved    JSONL of [{"text": …} | {"image": path}, …]
    grounding      JSONL of {"image", "objects": [{"phrase", "box": [x0, y0, x1, y1]}]}, boxes in pixels

Image paths are relative to the data file's directory, the data root; one that leads out of it is a
bad record. Every record that cannot be used is skipped and counted by reason in a `BadRecords`
(`user_records`), which keeps the first few to print at the end: reading never stops on one and
never drops one unsaid.
"""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path

from .user_records import (
    BAD_SHARD,
    EMPTY_TEXT,
    ESCAPES,
    IMAGE_COUNT,
    IMAGE_PLACEHOLDER,
    INVERTED,
    MALFORMED,
    MISSING,
    OUTSIDE,
    ROLES,
    BadRecord,
    BadRecords,
    Conversation,
    DataError,
    Document,
    Edit,
    GroundedObject,
    Grounding,
    Pair,
    Record,
    Turn,
    UserData,
    UserImage,
    decode_image,
)

FORMATS = ("pairs", "conversations", "edits", "interleaved", "grounding")
TAR_IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")


def _image_at(root: Path, value, name: str) -> UserImage:
    """The image a record names at `value`, resolved against the data root and decoded once."""
    if not isinstance(value, str) or not value.strip():
        raise BadRecord(MISSING, f"{name} is {'missing' if value is None else 'not a path'}")
    # Lexical, not resolved: `..` and absolute paths leave the root, while a symlinked image folder
    # inside it is the user's own choice.
    path = Path(os.path.normpath(root / value))
    if not path.is_relative_to(root):
        raise BadRecord(ESCAPES, f"{name} {value}")
    return UserImage(value, decode_image(path, value).size, path=path)


def _text(obj: dict, key: str, name: str | None = None) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise BadRecord(MISSING, f"{name or key} is {'missing' if value is None else 'not a string'}")
    if not value.strip():
        raise BadRecord(EMPTY_TEXT, name or key)
    return value.strip()


def _object(record) -> dict:
    if not isinstance(record, dict):
        raise BadRecord(MISSING, f"a record of this format is a JSON object, not a {type(record).__name__}")
    return record


def _pair(record, root: Path, key: str) -> Pair:
    obj = _object(record)
    caption = _text(obj, "caption")
    return Pair(key, _image_at(root, obj.get("image"), "image"), caption)


def _conversation(record, root: Path, key: str) -> Conversation:
    obj = _object(record)
    raw = obj.get("conversations")
    if not isinstance(raw, list) or not raw:
        raise BadRecord(MISSING, "conversations is not a non-empty list")
    turns = []
    for i, turn in enumerate(raw):
        if not isinstance(turn, dict) or turn.get("from") not in ROLES:
            raise BadRecord(MISSING, f"conversations[{i}].from is not one of {', '.join(ROLES)}")
        turns.append(Turn(turn["from"], _text(turn, "value", f"conversations[{i}].value")))
    if all(t.role != "gpt" for t in turns):
        raise BadRecord(MISSING, "no gpt turn (nothing to learn from)")
    paths = obj.get("image")  # absent in LLaVA's text-only conversations
    paths = [] if paths is None else [paths] if isinstance(paths, str) else paths
    if not isinstance(paths, list):
        raise BadRecord(MISSING, "image is not a path or a list of paths")
    placeholders = sum(t.text.count(IMAGE_PLACEHOLDER) for t in turns)
    if placeholders != len(paths):
        raise BadRecord(IMAGE_COUNT, f"{placeholders} {IMAGE_PLACEHOLDER} for {len(paths)} image(s)")
    return Conversation(key, [_image_at(root, p, f"image[{i}]") for i, p in enumerate(paths)], turns)


def _edit(record, root: Path, key: str) -> Edit:
    obj = _object(record)
    instruction = _text(obj, "instruction")
    return Edit(key, _image_at(root, obj.get("source_image"), "source_image"),
                _image_at(root, obj.get("target_image"), "target_image"), instruction)


def _document(record, root: Path, key: str) -> Document:
    if not isinstance(record, list) or not record:
        raise BadRecord(MISSING, "a document is a non-empty JSON list")
    parts = []
    for i, part in enumerate(record):
        if not isinstance(part, dict) or ("text" in part) == ("image" in part):
            raise BadRecord(MISSING, f"[{i}] is neither {{\"text\": …}} nor {{\"image\": …}}")
        parts.append(_text(part, "text", f"[{i}].text") if "text" in part
                     else _image_at(root, part["image"], f"[{i}].image"))
    return Document(key, parts)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _grounding(record, root: Path, key: str) -> Grounding:
    obj = _object(record)
    raw = obj.get("objects")
    if not isinstance(raw, list) or not raw:
        raise BadRecord(MISSING, "objects is not a non-empty list")
    objects = []
    for i, o in enumerate(raw):
        if not isinstance(o, dict):
            raise BadRecord(MISSING, f"objects[{i}] is not an object")
        phrase = _text(o, "phrase", f"objects[{i}].phrase")
        box = o.get("box")
        if not isinstance(box, list) or len(box) != 4 or not all(map(_is_number, box)):
            raise BadRecord(MISSING, f"objects[{i}].box is not [x0, y0, x1, y1]")
        if box[0] >= box[2] or box[1] >= box[3]:
            raise BadRecord(INVERTED, f"objects[{i}].box {box}")
        objects.append(GroundedObject(phrase, tuple(box)))
    image = _image_at(root, obj.get("image"), "image")
    width, height = image.size
    for i, o in enumerate(objects):
        x0, y0, x1, y1 = o.box
        if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
            raise BadRecord(OUTSIDE, f"objects[{i}].box {list(o.box)} in a {width}×{height} image")
    return Grounding(key, image, objects)


_PARSERS = {"pairs": _pair, "conversations": _conversation, "edits": _edit, "interleaved": _document,
            "grounding": _grounding}


def _format_of(record) -> str | None:
    """The format a JSONL record's shape names, or None if it names none."""
    if isinstance(record, list):
        return "interleaved"
    if not isinstance(record, dict):
        return None
    if "conversations" in record:
        return "conversations"
    if "source_image" in record or "target_image" in record:
        return "edits"
    if "objects" in record:  # before "caption": grounding sets often caption their images too
        return "grounding"
    return "pairs" if "caption" in record else None


def _is_shards(path: Path) -> bool:
    return path.is_dir() or path.suffix == ".tar"


def _json_lines(path: Path) -> Iterator[tuple[int, object]]:
    """(line number, the parsed value or its ValueError) of each non-blank line."""
    with open(path, "rb") as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                try:
                    yield number, json.loads(line)
                except ValueError as e:  # a JSONDecodeError, or a UnicodeDecodeError from bytes that are not UTF-8
                    yield number, e


def _require_readable(path: Path) -> None:
    if not path.exists():
        raise DataError(f"no such data file or directory: {str(path)!r}")
    if not _is_shards(path) and not os.access(path, os.R_OK):
        raise DataError(f"cannot read {str(path)!r}: permission denied")


def detect_format(path: str | os.PathLike) -> str:
    """The format of a data set: tar shards (a .tar or a directory of them) hold pairs; a JSONL file
    is told by the first record whose shape names a format."""
    path = Path(path)
    _require_readable(path)
    if _is_shards(path):
        return "pairs"
    for _, record in _json_lines(path):
        if kind := _format_of(record):
            return kind
    raise DataError(f"cannot tell the format of {path}: no record has the shape of one of {', '.join(FORMATS)} "
                    "(docs/data.md); name it with --format")


def iter_records(path: str | os.PathLike, format: str | None = None, bad: BadRecords | None = None,
                 label: str = "") -> Iterator[Record]:
    """The good records of the data set at `path`, in file order, read as `format` (default: detected);
    each skipped one goes to `bad`. The path and format are checked at the call, the records as read.
    A record's key is where it is ("line 12", "shard-0.tar:000042"), after `label` if given (the path,
    when a run reads several: a key names one record of the run)."""
    from .shards import shard_files

    path = Path(path)
    kind = format or detect_format(path)
    if kind not in FORMATS:
        raise DataError(f"unknown data format {kind!r}; choose from {', '.join(FORMATS)}")
    _require_readable(path)
    bad = BadRecords() if bad is None else bad
    if _is_shards(path):
        if kind != "pairs":
            raise DataError(f"{path} is webdataset shards, which hold image-text pairs, not {kind}")
        shards = shard_files(path)
        if not shards:
            raise DataError(f"no .tar shards under {path}")
        return _tar_pairs(shards, bad, label)
    return _jsonl_records(path, _PARSERS[kind], bad, label)


def _jsonl_records(path: Path, parse, bad: BadRecords, label: str = "") -> Iterator[Record]:
    root = Path(os.path.abspath(path.parent))
    for number, value in _json_lines(path):
        key = f"{label} line {number}" if label else f"line {number}"
        try:
            if isinstance(value, ValueError):
                raise BadRecord(MALFORMED, str(value))
            record = parse(value, root, key)
        except BadRecord as e:
            bad.add(key, e.reason, e.detail)
            continue
        yield record


def _tar_pairs(shards: list[Path], bad: BadRecords, label: str = "") -> Iterator[Pair]:
    import webdataset as wds

    for shard in shards:
        name = f"{label} {shard.name}" if label else shard.name

        def skip_shard(e: Exception, name=name) -> bool:  # webdataset's handler: True = go on
            bad.add(name, BAD_SHARD, f"{type(e).__name__}: {e.args[0] if e.args else ''}")
            return True

        for sample in wds.WebDataset(str(shard), shardshuffle=False, empty_check=False, handler=skip_shard):
            key = f"{name}:{sample['__key__']}"
            try:
                pair = _tar_pair(sample, key)
            except BadRecord as e:
                bad.add(key, e.reason, e.detail)
                continue
            yield pair


def _tar_pair(sample: dict, key: str) -> Pair:
    name = sample["__key__"]
    files = {k.lower(): v for k, v in sample.items() if not k.startswith("__")}
    ext = next((e for e in TAR_IMAGE_EXTENSIONS if e in files), None)
    if ext is None:
        raise BadRecord(MISSING, f"no {name}.{'|'.join(TAR_IMAGE_EXTENSIONS)}")
    if "txt" in files:
        try:
            caption = files["txt"].decode("utf-8")
        except UnicodeDecodeError:
            raise BadRecord(MISSING, f"{name}.txt is not UTF-8 text") from None
    elif "json" in files:
        try:
            meta = json.loads(files["json"])
        except ValueError as e:
            raise BadRecord(MALFORMED, f"{name}.json: {e}") from None
        caption = meta.get("caption") if isinstance(meta, dict) else None
    else:
        raise BadRecord(MISSING, f"no {name}.txt or {name}.json caption")
    caption = _text({"caption": caption}, "caption")
    source = f"{name}.{ext}"
    return Pair(key, UserImage(source, decode_image(io.BytesIO(files[ext]), source).size, data=files[ext]), caption)


def read_data(path: str | os.PathLike, format: str | None = None, keep: int = 10) -> UserData:
    """The whole data set at `path`: its good records and the report of the skipped ones (first `keep` kept)."""
    bad = BadRecords(keep=keep)
    kind = format or detect_format(path)
    return UserData(Path(path), kind, list(iter_records(path, kind, bad)), bad)


def shard_indices(n: int, rank: int, world_size: int) -> range:
    """Rank `rank`'s share of the indices 0…n−1: every `world_size`-th from `rank`, so over the ranks
    each index comes exactly once. Nothing is padded in (torch's DistributedSampler repeats indices
    to even the shares out); the shares differ by at most one."""
    if world_size < 1 or not 0 <= rank < world_size or n < 0:
        raise ValueError(f"need n >= 0 and 0 <= rank < world_size, got n={n}, rank={rank}, world_size={world_size}")
    return range(rank, n, world_size)
