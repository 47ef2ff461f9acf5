"""Pretokenized code shards: image shards run once through the SEED tokenizer (`seedmm pretokenize`).

The papers never run the image tokenizer inside LLM training; neither does seedmm. Each input
shard `IN/…/name.tar` becomes `OUT/…/name.tar` with the same samples in the same order, each one
`{key}.json` = the input's metadata plus `"codes"`: one list of 32 codes per image.

Resuming: an output shard is written to `name.tar.partial` and renamed when complete, and shards
whose output exists are skipped, so a killed run restarted with the same arguments neither loses
nor duplicates a sample. `OUT/codes.json` records which tokenizer produced the codes; a restart
with a different tokenizer is refused instead of mixing codes of two codebooks.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

from ..world.scene import WorldError
from .shards import ensure_writable_dir, export_world, read_samples, shard_files

# The tensors that decide which codes an image gets, and what a code is (its codebook row).
CODE_DECIDING = ("visual_encoder.", "qformer.", "encode_task_layer.", "quantize.")


def tokenizer_fingerprint(directory: str | Path) -> str:
    """The BLAKE2b of the tokenizer weights that make the codes (ViT, Q-Former, encode task layer,
    codebook): identifies the codebook the codes index. The heads that turn codes back into
    embeddings are left out, so refitting one (stage III) keeps the LLMs trained on the codes."""
    from safetensors import safe_open

    from ..models.persistence import WEIGHTS_NAME

    digest = hashlib.blake2b(digest_size=16)
    with safe_open(str(Path(directory) / WEIGHTS_NAME), framework="pt") as weights:
        for name in sorted(k for k in weights.keys() if k.startswith(CODE_DECIDING)):
            digest.update(name.encode())
            digest.update(weights.get_tensor(name).numpy().tobytes())
    return digest.hexdigest()


def pretokenize(in_path: str | os.PathLike, out: str | os.PathLike, tokenizer_dir: str | Path, batch: int = 64,
                progress: bool = True) -> dict:
    """Encode every image of every shard under `in_path`; returns {"shards", "skipped", "samples"}."""
    import webdataset as wds
    from tqdm import tqdm

    from ..models.tokenizer import SeedTokenizer

    in_root = Path(in_path)
    files = shard_files(in_root)
    if not files:
        raise WorldError(f"no .tar shards under {str(in_root)!r}")
    out = ensure_writable_dir(out)
    stamp = {"format": "seedmm-code-shards/1", "tokenizer": str(tokenizer_dir),
             "tokenizer_blake2b": tokenizer_fingerprint(tokenizer_dir)}
    stamp_path = out / "codes.json"
    if stamp_path.exists():
        old = json.loads(stamp_path.read_text())
        if old.get("tokenizer_blake2b") != stamp["tokenizer_blake2b"]:
            raise WorldError(f"{str(out)!r} holds codes of another tokenizer ({old.get('tokenizer')}); "
                             "use a new output directory")
    stamp_path.write_text(json.dumps(stamp, indent=2) + "\n")
    tokenizer = SeedTokenizer.from_pretrained(tokenizer_dir)
    done = {"shards": 0, "skipped": 0, "samples": 0}
    bar = tqdm(files, desc="pretokenize", unit="shard", disable=not progress)
    for shard in bar:
        target = out / (shard.relative_to(in_root) if in_root.is_dir() else shard.name)
        if target.exists():
            done["skipped"] += 1
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        samples = list(read_samples(shard))
        images = [im for s in samples for im in s["images"]]
        codes = [c for k in range(0, len(images), batch) for c in tokenizer.encode(images[k:k + batch]).tolist()]
        with open(partial, "wb") as f, wds.TarWriter(f, encoder=False, mtime=0.0) as sink:
            at = 0
            for s in samples:
                n = len(s["images"])
                meta = {**s["meta"], "codes": codes[at:at + n]}
                at += n
                sink.write({"__key__": s["key"], "json": json.dumps(meta, sort_keys=True).encode()})
        os.replace(partial, target)
        done["shards"] += 1
        done["samples"] += len(samples)
    return done


def read_code_records(path: str | os.PathLike) -> Iterator[dict]:
    """Yield the metadata dicts (with "codes") of code shards, in shard order."""
    return (sample["meta"] for sample in read_samples(path))


def code_records_by_split(path: str | os.PathLike) -> dict[str, dict[str, list[dict]]]:
    """The code shards' records as {split: {task: [records in shard order]}}."""
    records: dict[str, dict[str, list[dict]]] = {}
    for r in read_code_records(path):
        records.setdefault(r["split"], {}).setdefault(r["task"], []).append(r)
    return records


def world_code_records(out: Path, counts: dict[str, dict[str, int]], seed: int, tokenizer_dir: Path,
                 progress: bool = True) -> dict[str, dict]:
    """Export (once) and pretokenize (resumably) `counts` = {split: {task: n}} world records into
    OUT/world and OUT/codes — the data preparation every LLM recipe starts with; returns {split: {task: [records]}}."""
    from ..train.distributed import main_process_writes

    world = out / "world"

    def prepare() -> None:
        for split, tasks in counts.items():
            for task, n in tasks.items():
                manifest = world / "manifest.json"
                have = json.loads(manifest.read_text()).get("splits", {}).get(split, {}).get(task) if manifest.exists() else None
                if not have or have["n"] != n or have["seed"] != seed:
                    export_world([task], n, seed, world, split, progress=progress)
        pretokenize(world, out / "codes", tokenizer_dir, progress=progress)

    main_process_writes(prepare)  # under torchrun by rank 0; every rank then reads the shards
    records = code_records_by_split(out / "codes")
    return {split: records.get(split, {}) for split in counts}


def user_code_records(data, image_tokenizer, batch: int = 64) -> dict[str, dict[str, list[dict]]]:
    """Your own data (a `user_training.StageData`) pretokenized as the world's is, once at the start of
    a run: every picture loaded at the tokenizer's size and encoded by the frozen SEED tokenizer, each
    record a dict the sequence builders read as they read a world record, {split: {format: [records]}}:

        pairs          {"caption", "paraphrase" (= the caption: own pairs have one), "codes": [image]}
        interleaved    {"parts": texts and images (32 codes) in reading order, "codes"}
        conversations  {"turns": [(role, text with <image> placeholders)], "codes": the images in order}
        edits          {"instruction", "paraphrase" (= the instruction), "codes": [source, target]}

    A record whose image went bad since it was read joins `data.bad`; a format left with no training
    record is a DataError."""
    from .user_records import DataError
    from .user_training import load_pictures

    size = image_tokenizer.config.vision.image_size
    out: dict[str, dict[str, list[dict]]] = {"train": {}, "val": {}}
    for split, by_format in (("train", data.train), ("val", data.val)):
        for kind, records in by_format.items():
            kept, pictures = load_pictures(records, size, data.bad)
            flat = [p for ps in pictures for p in ps]
            codes = [c for k in range(0, len(flat), batch) for c in image_tokenizer.encode(flat[k:k + batch]).tolist()]
            at, made = 0, []
            for record, ps in zip(kept, pictures):
                made.append(_code_record(record, codes[at:at + len(ps)]))
                at += len(ps)
            if split == "train" and not made:
                raise DataError(f"no {kind} record of {', '.join(map(str, data.paths))} has an image that loads")
            if made:
                out[split][kind] = made
    return out


def fitting_records(records: dict[str, dict[str, list[dict]]], length, limit: int, bad) -> dict[str, dict[str, list[dict]]]:
    """`user_code_records`' records less those whose sequence, `length(kind, record)` tokens as the
    stage builds it, is longer than the model's context of `limit` positions: each joins `bad` (a cut
    would lose an image's codes or an answer's end; SEED-OPT's learnt positions stop there). A kind
    left with no training record is a DataError."""
    from .user_records import TOO_LONG, DataError

    fitting: dict[str, dict[str, list[dict]]] = {}
    for split, by_kind in records.items():
        fitting[split] = {}
        for kind, recs in by_kind.items():
            kept = []
            for record in recs:
                n = length(kind, record)
                if n > limit:
                    bad.add(record["key"], TOO_LONG, f"{n} tokens; the context holds {limit}")
                else:
                    kept.append(record)
            if split == "train" and not kept:
                raise DataError(f"no {kind} record fits the model's context of {limit} tokens")
            if kept:
                fitting[split][kind] = kept
    return fitting


def _code_record(record, codes: list[list[int]]) -> dict:
    from .user_records import Conversation, Document, Edit, Pair

    if isinstance(record, Pair):
        return {"key": record.key, "caption": record.caption, "paraphrase": record.caption, "codes": codes}
    if isinstance(record, Edit):
        return {"key": record.key, "instruction": record.instruction, "paraphrase": record.instruction, "codes": codes}
    if isinstance(record, Document):
        images = iter(codes)
        return {"key": record.key, "parts": [p if isinstance(p, str) else next(images) for p in record.parts],
                "codes": codes}
    if isinstance(record, Conversation):
        return {"key": record.key, "turns": [(t.role, t.text) for t in record.turns], "codes": codes}
    raise TypeError(f"no LLM sequence is built from a {type(record).__name__} record")
