"""The records of your own data (what `user_data`'s readers yield), and the report of the skipped ones.

A record is one typed dataclass per format (`Pair`, `Conversation`, `Edit`, `Document`, `Grounding`),
each with `images` and `texts`. An image is a `UserImage`: decoded once by the reader to prove it
whole (a truncated file is found only by decoding it) and kept as a handle that decodes it again on
`load()`, so a data set of any size can be listed without holding its pixels. A record that cannot
be used is a `BadRecord` with a reason; `BadRecords` counts them by reason and keeps the first few.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError

IMAGE_PLACEHOLDER = "<image>"
ROLES = ("human", "gpt")

# Why a record is skipped: the keys of `BadRecords.counts`.
MALFORMED = "malformed JSON"
MISSING = "missing or invalid field"
EMPTY_TEXT = "empty text"
UNREADABLE = "unreadable image"
ESCAPES = "path escapes the data root"
OUTSIDE = "box outside the image"
INVERTED = "inverted or empty box"
IMAGE_COUNT = "<image> count differs from the images"
BAD_SHARD = "unreadable shard"
TOO_LONG = "longer than the model's context"  # found by the stage, once a record is a sequence


class DataError(ValueError):
    """A data set that cannot be read at all (no such path, format not told): one line, exit 2."""


class BadRecord(ValueError):
    """Why one record cannot be used: `reason` (one of the constants above) and what it concerns."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail = reason, detail


@dataclass
class BadRecords:
    """The skipped records: a count by reason, and the first `keep` as (where, reason, detail)."""

    keep: int = 10
    counts: Counter = field(default_factory=Counter)
    first: list[tuple[str, str, str]] = field(default_factory=list)
    keys: set[str] = field(default_factory=set)  # of every skipped record

    def add(self, where: str, reason: str, detail: str = "") -> None:
        if where in self.keys:  # refused again by a later step (its pictures loaded twice): counted once
            return
        self.keys.add(where)
        self.counts[reason] += 1
        if len(self.first) < self.keep:
            self.first.append((where, reason, detail))

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def lines(self) -> list[str]:
        """The report to print at the end of a run: the counts, then one line per kept record."""
        if not self.total:
            return ["no bad records"]
        reasons = ", ".join(f"{n} {reason}" for reason, n in self.counts.most_common())
        head = f"{self.total} bad record{'s' if self.total > 1 else ''} skipped ({reasons})"
        more = self.total - len(self.first)
        return [head, *(f"  {where}: {reason}{f' ({detail})' if detail else ''}" for where, reason, detail in self.first),
                *([f"  … and {more} more"] if more else [])]

    def to_dict(self) -> dict:
        return {"bad": self.total, "bad_by_reason": dict(self.counts.most_common()),
                "first_bad": [{"where": w, "reason": r, "detail": d} for w, r, d in self.first]}


@dataclass(frozen=True)
class UserImage:
    """One image of a record: its name as the data set gives it, its size, and `load()`, an RGB PIL image
    (a BadRecord if the file went bad after it was read)."""

    source: str
    size: tuple[int, int]
    path: Path | None = None
    data: bytes | None = field(default=None, repr=False)  # the bytes of an image read from a tar shard

    def load(self) -> Image.Image:
        return decode_image(self.path if self.data is None else io.BytesIO(self.data), self.source)


@dataclass
class Pair:
    key: str
    image: UserImage
    caption: str

    @property
    def images(self) -> list[UserImage]:
        return [self.image]

    @property
    def texts(self) -> list[str]:
        return [self.caption]


@dataclass
class Turn:
    role: str  # "human" or "gpt"
    text: str


@dataclass
class Conversation:
    key: str
    images: list[UserImage]  # in the order of the `<image>` placeholders in the turns
    turns: list[Turn]

    @property
    def texts(self) -> list[str]:
        return [text for t in self.turns if (text := t.text.replace(IMAGE_PLACEHOLDER, " ").strip())]


@dataclass
class Edit:
    key: str
    source: UserImage
    target: UserImage
    instruction: str

    @property
    def images(self) -> list[UserImage]:
        return [self.source, self.target]

    @property
    def texts(self) -> list[str]:
        return [self.instruction]


@dataclass
class Document:
    key: str
    parts: list[str | UserImage]  # in reading order

    @property
    def images(self) -> list[UserImage]:
        return [p for p in self.parts if isinstance(p, UserImage)]

    @property
    def texts(self) -> list[str]:
        return [p for p in self.parts if isinstance(p, str)]


@dataclass
class GroundedObject:
    phrase: str
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels of the image


@dataclass
class Grounding:
    key: str
    image: UserImage
    objects: list[GroundedObject]

    @property
    def images(self) -> list[UserImage]:
        return [self.image]

    @property
    def texts(self) -> list[str]:
        return [o.phrase for o in self.objects]


Record = Pair | Conversation | Edit | Document | Grounding


@dataclass
class UserData:
    """A data set read whole: its good records in file order and the report of the skipped ones."""

    path: Path
    format: str
    records: list[Record]
    bad: BadRecords

    def texts(self) -> Iterator[str]:
        """Every text of every record (what a text tokenizer is trained on)."""
        return (text for record in self.records for text in record.texts)


def decode_image(source, name: str) -> Image.Image:
    """`source` (a path or a file object) decoded whole into RGB, or a BadRecord naming `name`."""
    from ..models.images import to_rgb

    try:
        with Image.open(source) as image:
            image.load()
            return to_rgb(image)
    except FileNotFoundError:
        raise BadRecord(UNREADABLE, f"{name}: no such file") from None
    except UnidentifiedImageError:
        raise BadRecord(UNREADABLE, f"{name}: not an image") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise BadRecord(UNREADABLE, f"{name}: {e}") from None

