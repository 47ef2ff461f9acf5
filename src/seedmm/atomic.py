"""Files written whole or not at all: what a killed process leaves is the old file or the new one."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path


def fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: Path, write: Callable[[Path], None]) -> Path:
    """A file a later run or reader opens (a loss plot, a report): written beside, fsynced, renamed
    over the old one, so it is the old file or the new one, never half of one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    write(tmp)
    fsync(tmp)
    os.replace(tmp, path)
    return path


def save_directory_atomically(directory: Path, write: Callable[[Path], None]) -> Path:
    """A whole output directory (a `save_pretrained` pipeline): written under a temporary name, then
    swapped in, so a later stage never opens half of one."""
    directory = Path(directory)
    for leftover in directory.parent.glob(f".{directory.name}.*-*"):  # of a write killed before this one
        shutil.rmtree(leftover, ignore_errors=True)
    tmp = directory.with_name(f".{directory.name}.tmp-{os.getpid()}")
    write(tmp)
    for f in tmp.rglob("*"):
        if f.is_file():
            fsync(f)
    old = directory.with_name(f".{directory.name}.old-{os.getpid()}")
    if directory.exists():
        os.rename(directory, old)
    os.rename(tmp, directory)
    shutil.rmtree(old, ignore_errors=True)
    fsync(directory.parent)
    return directory
