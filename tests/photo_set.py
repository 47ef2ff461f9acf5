"""The own-data photo set the tests share: scikit-image's bundled sample photos written as files of a
data root, with captions written by looking at them, boxes drawn by hand, edits made by cropping and
flipping, conversations and documents about them, and one bad record of each kind per format."""

import json

from PIL import Image, ImageOps
from skimage import data as samples

from seedmm.data.user_records import (
    EMPTY_TEXT,
    ESCAPES,
    IMAGE_COUNT,
    INVERTED,
    MALFORMED,
    MISSING,
    OUTSIDE,
    UNREADABLE,
    Conversation,
    Document,
    Edit,
    Grounding,
    Pair,
)

# The photos as files of the data root, each with a caption written by looking at it.
PHOTOS = {
    "astronaut": ("photos/astronaut.jpg", ("an astronaut in an orange spacesuit smiling in front of an American "
                                           "flag and a model of the space shuttle")),
    "coffee": ("photos/coffee.jpg", "a cup of espresso on a red saucer with a spoon, on a wooden table"),
    "chelsea": ("photos/chelsea.png", "a close-up of a tabby cat with green eyes looking to the side"),
    "rocket": ("photos/rocket.jpg", "a rocket on its launch pad between four lightning towers at dusk"),
}
# Boxes drawn by hand on the photos: [x0, y0, x1, y1] in pixels.
BOXES = {
    "astronaut": [("the astronaut's face", [170, 55, 280, 190]), ("the black helmet", [275, 340, 512, 512]),
                  ("the model of the space shuttle", [355, 0, 470, 285])],
    "coffee": [("the cup", [170, 15, 410, 305]), ("the spoon", [325, 65, 425, 325]), ("the saucer", [75, 70, 480, 390])],
    "chelsea": [("the cat's left eye", [135, 85, 210, 145]), ("the cat's right eye", [293, 108, 345, 163]),
                ("the cat's nose", [232, 222, 292, 265])],
    "rocket": [("the rocket", [300, 125, 345, 410]), ("the tower on the left", [0, 0, 90, 427]),
               ("the tower on the right", [555, 0, 640, 427])],
}
# Edits made from the photos: (source, target file, how the target is made, the instruction).
EDITS = [
    ("chelsea", "edits/chelsea-mirrored.png", ImageOps.mirror, "flip the picture left to right"),
    ("coffee", "edits/coffee-cup.png", lambda im: im.crop((170, 15, 410, 305)), "crop the picture to the cup"),
    ("rocket", "edits/rocket-upside-down.png", ImageOps.flip, "turn the picture upside down"),
    ("astronaut", "edits/astronaut-face.png", lambda im: im.crop((170, 55, 280, 190)), "zoom in on the astronaut's face"),
]
CONVERSATIONS = [
    {"image": "photos/coffee.jpg", "conversations": [
        {"from": "human", "value": "<image>\nWhat is in the cup?"},
        {"from": "gpt", "value": "An espresso with a golden crema."}]},
    {"image": "photos/chelsea.png", "conversations": [
        {"from": "human", "value": "<image>\nWhat animal is this?"}, {"from": "gpt", "value": "A tabby cat."},
        {"from": "human", "value": "What colour are its eyes?"}, {"from": "gpt", "value": "Green."}]},
    {"image": ["photos/astronaut.jpg", "photos/rocket.jpg"], "conversations": [
        {"from": "human", "value": "This is the first image. <image> This is the second image. <image> "
                                   "Which one shows a launch pad?"},
        {"from": "gpt", "value": "The second one."}]},
    {"conversations": [{"from": "human", "value": "How many legs does a cat have?"},
                       {"from": "gpt", "value": "Four."}]},
]
DOCUMENTS = [
    [{"text": "Espresso is pushed through the coffee under pressure and served in a small cup."},
     {"image": "photos/coffee.jpg"}, {"text": "A spoon rests on the saucer."}],
    [{"image": "photos/rocket.jpg"}, {"text": "Before a launch the rocket stands between its lightning towers."},
     {"image": "photos/astronaut.jpg"}, {"text": "The crew posed for portraits months earlier."}],
    [{"text": "Cats see well in dim light."}, {"image": "photos/chelsea.png"}],
]


def pairs():
    return [{"image": path, "caption": caption} for path, caption in PHOTOS.values()]


def groundings():
    return [{"image": PHOTOS[name][0], "objects": [{"phrase": p, "box": b} for p, b in boxes]}
            for name, boxes in BOXES.items()]


def edits():
    return [{"source_image": PHOTOS[s][0], "target_image": t, "instruction": i} for s, t, _, i in EDITS]


# For each format: its good records and one bad record of each kind that applies, with its reason.
# A raw string is written to the file as it is (a malformed line).
SETS = {
    "pairs": (Pair, pairs, [
        ('{"image": "photos/coffee.jpg", "caption": "a cup', MALFORMED),
        ({"image": "photos/coffee.jpg"}, MISSING),
        ({"image": "photos/coffee.jpg", "caption": "  "}, EMPTY_TEXT),
        ({"image": "broken/truncated.jpg", "caption": "an astronaut"}, UNREADABLE),
        ({"image": "broken/not-an-image.png", "caption": "a cat"}, UNREADABLE),
        ({"image": "photos/no-such-photo.jpg", "caption": "a cat"}, UNREADABLE),
        ({"image": "../photos/coffee.jpg", "caption": "a cup of espresso"}, ESCAPES),
    ]),
    "conversations": (Conversation, lambda: CONVERSATIONS, [
        ({"conversations": [{"from": "human", "value": "<image>\nWhat is this?"}, {"from": "gpt", "value": "A cat."}]},
         IMAGE_COUNT),
        ({"image": ["photos/chelsea.png", "photos/coffee.jpg"], "conversations": [
            {"from": "human", "value": "<image>\nWhat is this?"}, {"from": "gpt", "value": "A cat."}]}, IMAGE_COUNT),
        ({"image": "photos/chelsea.png", "conversations": [
            {"from": "human", "value": "<image>\nWhat is this?"}, {"from": "assistant", "value": "A cat."}]}, MISSING),
        ({"image": "photos/chelsea.png", "conversations": [
            {"from": "human", "value": "<image>\nWhat is this?"}, {"from": "gpt", "value": ""}]}, EMPTY_TEXT),
        ({"image": "broken/truncated.jpg", "conversations": [
            {"from": "human", "value": "<image>\nWho is this?"}, {"from": "gpt", "value": "An astronaut."}]},
         UNREADABLE),
        ({"image": ["photos/chelsea.png", "../../etc/passwd"], "conversations": [
            {"from": "human", "value": "<image> <image> Same?"}, {"from": "gpt", "value": "No."}]}, ESCAPES),
    ]),
    "edits": (Edit, edits, [
        ({"source_image": "photos/chelsea.png", "instruction": "flip it"}, MISSING),
        ({"source_image": "photos/chelsea.png", "target_image": "edits/chelsea-mirrored.png", "instruction": ""},
         EMPTY_TEXT),
        ({"source_image": "broken/not-an-image.png", "target_image": "edits/chelsea-mirrored.png",
          "instruction": "flip the picture left to right"}, UNREADABLE),
        ({"source_image": "photos/chelsea.png", "target_image": "/etc/hostname", "instruction": "flip it"}, ESCAPES),
    ]),
    "interleaved": (Document, lambda: DOCUMENTS, [
        ([], MISSING),
        ([{"text": " "}, {"image": "photos/coffee.jpg"}], EMPTY_TEXT),
        ([{"text": "a cup", "image": "photos/coffee.jpg"}], MISSING),
        ('[{"text": "never closed"}', MALFORMED),
    ]),
    "grounding": (Grounding, groundings, [
        ({"image": "photos/astronaut.jpg", "objects": [{"phrase": "the helmet", "box": [400, 400, 600, 520]}]},
         OUTSIDE),
        ({"image": "photos/coffee.jpg", "objects": [{"phrase": "the table", "box": [-5, 0, 50, 50]}]}, OUTSIDE),
        ({"image": "photos/rocket.jpg", "objects": [{"phrase": "the rocket", "box": [345, 410, 300, 125]}]}, INVERTED),
        ({"image": "photos/rocket.jpg", "objects": [{"phrase": "the rocket", "box": [300, 125, 345]}]}, MISSING),
        ({"image": "photos/chelsea.png", "objects": [{"phrase": "", "box": [232, 222, 292, 265]}]}, EMPTY_TEXT),
        ({"image": "photos/chelsea.png", "objects": []}, MISSING),
        ({"image": "broken/truncated.jpg", "objects": [{"phrase": "a face", "box": [170, 55, 280, 190]}]},
         UNREADABLE),
    ]),
}


def write_jsonl(path, lines) -> None:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))


def tenth_bad(good: list, bad: list) -> tuple[list, list[int], list[int]]:
    """Lines of which every 10th is one of `bad` and the others cycle through `good`; the line
    numbers of the good and of the bad ones."""
    lines, good_at, bad_at = [], [], []
    for i in range(10 * len(bad)):
        if i % 10 == 9:
            lines.append(bad[i // 10][0])
            bad_at.append(i + 1)
        else:
            lines.append(good[len(good_at) % len(good)])
            good_at.append(i + 1)
    return lines, good_at, bad_at


def make_photo_root(root):
    """The data root: the photos, the edits made from them, and two broken image files."""
    for name, (path, _) in PHOTOS.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(getattr(samples, name)()).save(root / path, quality=90)
    for source, target, make, _ in EDITS:
        (root / target).parent.mkdir(parents=True, exist_ok=True)
        make(Image.open(root / PHOTOS[source][0]).convert("RGB")).save(root / target)
    (root / "broken").mkdir()
    whole = (root / PHOTOS["astronaut"][0]).read_bytes()
    (root / "broken/truncated.jpg").write_bytes(whole[: len(whole) // 2])
    (root / "broken/not-an-image.png").write_text("these are words, not pixels\n")
    return root
