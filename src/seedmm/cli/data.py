"""`seedmm data check`: validate a data set of your own (docs/data.md)."""

from __future__ import annotations

import json


def cmd_data_check(args) -> None:
    from ..data.user_data import detect_format, iter_records
    from ..data.user_records import BadRecords

    kind = args.format or detect_format(args.path)
    bad = BadRecords()
    good = images = 0
    for record in iter_records(args.path, kind, bad):  # streamed: a large set is counted, never held
        good += 1
        images += len(record.images)
    summary = {"path": args.path, "format": kind, "records": good + bad.total, "good": good, "images": images,
               **bad.to_dict()}
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    print(f"{args.path}: {kind}")
    records = summary["records"]
    print(f"  {records} record{'s' if records != 1 else ''}: {good} good with {images} images, {bad.total} bad")
    for line in bad.lines():
        print(line)
