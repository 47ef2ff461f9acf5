"""The README is the user's manual, so it is run as written (litgpt tests its own docs the same way).

Every ```python block runs, in order, in one namespace; every line of every ```sh block runs through
the real `seedmm` command line in the same directory — except the long jobs (training, evaluation,
the demo, benchmarks, the server), which are parsed by the real argument parser instead, so a renamed
command or flag still fails here. The serving examples (curl, the `openai` client) run against the
tests' real server, with its address and key. A ```json block introduced by a line "`NAME`:" is
written to NAME first.
"""

import re
import shlex
import subprocess
from pathlib import Path

import pytest

from seedmm import cli

from conftest import SERVE_KEY

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
# `seedmm …` commands that take minutes (or write a whole report): parsed, not run.
PARSED_ONLY = {("train",), ("eval",), ("demo",), ("serve",)}
README_SERVER = "http://127.0.0.1:8000"  # the address the README's serving examples use
BENCH = re.compile(r"^(\.venv/bin/)?python3? (bench/\w+\.py)$")


def readme_blocks(text: str) -> list[tuple[str, str, str]]:
    """(language, body, the line before the block) for each fenced block, in order."""
    blocks = []
    for m in BLOCK.finditer(text):
        before = text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        blocks.append((m.group(1), m.group(2), before))
    return blocks


def shell_commands(body: str) -> list[list[str]]:
    """Each command of a sh block as argv, comments dropped, `\\` continuations joined."""
    commands = []
    for line in body.replace("\\\n", " ").splitlines():
        argv = shlex.split(line, comments=True)
        if argv:
            commands.append(argv)
    return commands


def makefile_targets() -> set[str]:
    text = (REPO / "Makefile").read_text()
    return {m.group(1) for m in re.finditer(r"^([a-z][\w-]*):", text, re.M)}


def check_command(argv: list[str], server: dict | None = None) -> None:
    """Run (or, for a long job, parse) one README command; fail with the command on any error."""
    shown = shlex.join(argv)
    if argv[0] == "curl" and server is not None:
        argv = [a.replace(README_SERVER, server["base"]) for a in argv]
        run = subprocess.run([*argv, "--fail", "-H", f"Authorization: Bearer {SERVE_KEY}"], capture_output=True,
                             text=True, timeout=600)
        assert run.returncode == 0 and '"choices"' in run.stdout, f"README: `{shown}` failed: {run.stderr}{run.stdout}"
        return
    if argv[0] == "make":
        assert argv[1] in makefile_targets(), f"README: `{shown}`: no such Makefile target"
        return
    bench = BENCH.match(shown)
    if bench:
        assert (REPO / bench.group(2)).is_file(), f"README: `{shown}`: no such script"
        return
    assert argv[0] == "seedmm", f"README: `{shown}`: this test does not know how to run it"
    args = argv[1:]
    try:
        if tuple(args[:1]) in PARSED_ONLY:
            cli.build_parser().parse_args(args)
            return
        code = cli.main(args)
    except (cli.UsageError, SystemExit) as e:  # an unknown command or flag
        raise AssertionError(f"README: `{shown}` does not parse: {e}") from None
    assert code == 0, f"README: `{shown}` exited {code}"


def test_every_readme_command_and_snippet_runs(tmp_path, monkeypatch, server):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "checkpoints").symlink_to(REPO / "checkpoints")  # the snippets' relative paths
    namespace: dict = {}
    ran = {"python": 0, "sh": 0}
    for language, body, before in readme_blocks(README.read_text()):
        if language == "python":
            if README_SERVER in body:  # a serving example: against the tests' server
                body = body.replace(README_SERVER, server["base"]).replace('api_key="unused"', f'api_key="{SERVE_KEY}"')
            exec(compile(body, "README.md", "exec"), namespace)
        elif language == "sh":
            for argv in shell_commands(body):
                check_command(argv, server)
        elif language == "json" and (name := re.fullmatch(r".*`([\w.-]+)`:", before)):
            (tmp_path / name.group(1)).write_text(body)
        ran[language] = ran.get(language, 0) + 1
    assert ran["python"] >= 3 and ran["sh"] >= 4
    # What the snippets promise, checked on what they wrote.
    assert (tmp_path / "scene.png").is_file() and (tmp_path / "edited.png").is_file()
    results = (tmp_path / "results" / "results.jsonl").read_text().splitlines()
    assert len(results) == 3 and all('"error": null' in r for r in results)
    assert namespace["reply"].images, "the README's drawing request drew nothing"


@pytest.mark.parametrize("argv", [
    ["seedmm", "batch", "requests.jsonl", "--output-dir", "results"],       # a renamed flag, run
    ["seedmm", "train", "sft", "--preset", "shapes-tiny", "--outdir", "x"],  # a renamed flag, parsed only
    ["seedmm", "evaluate", "sft"],                                           # a renamed command
    ["make", "tests"],
])
def test_a_renamed_command_or_flag_fails_the_readme_check(argv):
    with pytest.raises(AssertionError):
        check_command(argv)


def test_docs_links_resolve_and_nothing_points_outside_the_repository():
    pages = [README, *sorted((REPO / "docs").glob("*.md")), REPO / "tests" / "fixtures" / "README.md"]
    for page in pages:
        text = page.read_text()
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if not re.match(r"https?:", target):
                assert (page.parent / target).exists(), f"{page.relative_to(REPO)}: broken link {target}"
        assert "../shared" not in text and "shared/" not in text, f"{page.relative_to(REPO)} points outside the repo"
    for path in [*REPO.glob("src/**/*.py"), *REPO.glob("tests/*.py"), *REPO.glob("bench/*.py"), REPO / "Makefile"]:
        if path != Path(__file__).resolve():
            assert "../shared" not in path.read_text(), f"{path.relative_to(REPO)} points outside the repo"
