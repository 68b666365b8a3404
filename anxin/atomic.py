"""Write files and folders so that a crash never leaves a half-written result behind.

Everything anxin produces (converted data, cached models, checkpoints, reports) goes through
these helpers: write next to the target under a temporary name, then rename, which is atomic
on one filesystem. Files that hold conversation text can be written `private` (0600).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from anxin.errors import OutputError


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(
    target: str | os.PathLike, suffix: str = "", private: bool = False
) -> Iterator[Path]:
    """Yield a temporary file path beside `target`; rename it onto `target` on success.

    On any exception the temporary file is removed and `target` is left untouched. A target
    that is a folder, or a place that cannot be created or written, raises OutputError naming
    it before anything is written. `private` keeps the file readable by its owner only (0600):
    for conversation text.
    """
    target = Path(target)
    if target.is_dir():
        raise OutputError(f"{target}: is a folder; give a file name to write")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=suffix or ".tmp", dir=target.parent
        )
    except OSError as error:
        raise OutputError(f"{target}: cannot write here ({error.strerror})") from None
    os.close(fd)
    tmp_path = Path(tmp)
    if not private:  # mkstemp makes 0600; other results are shared files
        os.chmod(tmp_path, 0o666 & ~_current_umask())
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text(target: str | os.PathLike, text: str, private: bool = False) -> None:
    with atomic_path(target, private=private) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(target: str | os.PathLike, obj) -> None:
    write_text(target, json.dumps(obj, ensure_ascii=False, indent=2) + "\n")


def write_jsonl(target: str | os.PathLike, records: Iterable[dict], private: bool = False) -> int:
    """Write one JSON object per line; returns the number of lines written."""
    count = 0
    with atomic_path(target, private=private) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    return count


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside `target`; move it onto `target` on success.

    An existing `target` is replaced only after the new folder is complete.
    """
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise OutputError(f"{target}: is a file; give a folder to write into")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    except OSError as error:
        raise OutputError(f"{target}: cannot write here ({error.strerror})") from None
    try:
        yield tmp
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
