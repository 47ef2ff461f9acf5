"""`seedmm chat`: a multi-turn conversation in the terminal.

A line is what the user says; a word `@PATH` in it attaches that image (`what color is the circle?
@scene.png`). The assistant answers with text and images; images are saved under --out-dir and
printed as paths. The history keeps every image as its 32 codes (attached images are encoded once,
the assistant's own images are never re-encoded), so later turns can refer to them. Commands:
`/force` toggles "force image" (the next replies start with an image, as SEED's demo offers),
`/reset` starts over, `/quit` (or end of input) leaves.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

from ..models.images import ImageInputError, load_image, save_images

HELP = "type a message; @PATH attaches an image; /force toggles force-image, /reset clears, /quit leaves"


def user_message(line: str) -> dict:
    """A typed line → a user message: text, with each `@PATH` word loaded as an image part."""
    parts, words = [], []
    for word in line.split():
        if word.startswith("@") and len(word) > 1:
            if words:
                parts.append(" ".join(words))
                words = []
            parts.append(load_image(word[1:]))
        else:
            words.append(word)
    if words:
        parts.append(" ".join(words))
    return {"role": "user", "content": parts}


def chat_session(llm, args, options, stdin=None, stdout=None) -> None:
    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    interactive = stdin.isatty()
    out_dir, force, history, turn = Path(args.out_dir), args.force_image, [], 0

    def say(text: str) -> None:
        print(text, file=stdout, flush=True)

    if interactive:
        say(f"SEED-LLaMA chat — {HELP}")
    while True:
        if interactive:
            print("you> ", end="", file=stdout, flush=True)
        line = stdin.readline()
        if not line:
            break
        line = line.strip()
        if not line:
            continue
        if line in ("/quit", "/exit"):
            break
        if line == "/reset":
            history = []
            say("(conversation cleared)")
            continue
        if line == "/force":
            force = not force
            say(f"(force image {'on' if force else 'off'})")
            continue
        if line.startswith("/"):
            say(f"(unknown command; {HELP})")
            continue
        try:
            message = user_message(line)
        except ImageInputError as e:
            say(f"seedmm: error: {e}")
            continue
        turn += 1
        reply = llm.chat(history + [message], replace(options, force_image=force), steps=args.steps, seed=args.seed)
        history = reply.history
        if reply.text:
            say(f"assistant> {reply.text}")
        for path in save_images(reply.images, out_dir / f"turn{turn:02d}"):
            say(f"assistant> [image] {path}")
        for note in reply.dropped:
            say(f"(dropped: {note})")

