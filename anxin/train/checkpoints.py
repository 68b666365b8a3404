"""Checkpoints that a crash cannot fake, and resuming from the newest complete one.

HF Trainer writes `checkpoint-N/` in place, file by file, so a crash mid-save leaves a folder
that looks like a checkpoint. anxin marks a checkpoint complete (`anxin_checkpoint.json`,
written atomically) only after every file is written and every process has finished its part;
resuming ignores unmarked folders and removes them. Rotation (`save_total_limit`) runs after
the mark, so an older complete checkpoint is never deleted before the new one is complete.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

from anxin.atomic import write_json, write_jsonl
from anxin.errors import ConfigError

COMPLETE_MARK = "anxin_checkpoint.json"
TRAINER_LOG = "trainer_log.jsonl"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def checkpoint_step(folder: Path) -> int | None:
    match = _CHECKPOINT.match(folder.name)
    return int(match.group(1)) if match and folder.is_dir() else None


def all_checkpoints(output_dir: str | Path) -> list[Path]:
    """checkpoint-N folders, oldest step first, complete or not."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if checkpoint_step(p) is not None]
    return sorted(found, key=checkpoint_step)


def is_complete(folder: Path) -> bool:
    return (folder / COMPLETE_MARK).is_file()


def mark_complete(folder: Path, step: int) -> None:
    write_json(folder / COMPLETE_MARK, {"step": step, "saved_at": time.strftime("%FT%T")})


def newest_complete(output_dir: str | Path) -> Path | None:
    complete = [p for p in all_checkpoints(output_dir) if is_complete(p)]
    return complete[-1] if complete else None


def remove_incomplete(output_dir: str | Path) -> list[Path]:
    """Delete checkpoint folders a crash left half written; return what was removed."""
    removed = [p for p in all_checkpoints(output_dir) if not is_complete(p)]
    for folder in removed:
        shutil.rmtree(folder, ignore_errors=True)
    return removed


def rotate(output_dir: str | Path, keep: int | None, protect: str | Path | None = None) -> None:
    """Keep the newest `keep` complete checkpoints, plus `protect` (the best one)."""
    if not keep:
        return
    complete = [p for p in all_checkpoints(output_dir) if is_complete(p)]
    protected = {complete[-1].resolve()} if complete else set()
    if protect:
        protected.add(Path(protect).resolve())
    surplus = len(complete) - max(keep, len(protected))
    for folder in complete:
        if surplus <= 0:
            break
        if folder.resolve() not in protected:
            shutil.rmtree(folder, ignore_errors=True)
            surplus -= 1


def resolve_resume(output_dir: str | Path, resume: bool | str | None) -> Path | None:
    """The checkpoint to continue from: the newest complete one (`true`) or a given path."""
    if not resume:
        return None
    if resume is True:
        return newest_complete(output_dir)
    folder = Path(resume)
    if not folder.is_dir() or not (folder / "trainer_state.json").is_file():
        raise ConfigError(f"resume_from_checkpoint: {folder} is not a checkpoint folder")
    written_by_anxin = any(is_complete(p) for p in all_checkpoints(folder.parent))
    if written_by_anxin and not is_complete(folder):
        raise ConfigError(
            f"resume_from_checkpoint: {folder} is incomplete (a crash during its save); "
            "use resume_from_checkpoint: true to pick the newest complete one"
        )
    return folder


def resume_step(checkpoint: Path | None) -> int:
    """The step a run continues from (0: from scratch)."""
    if checkpoint is None:
        return 0
    state = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
    return int(state.get("global_step", 0))


def trim_log(output_dir: str | Path, last_step: int) -> float:
    """Keep trainer_log.jsonl up to `last_step` (a resumed run rewrites what came after).

    Returns the elapsed seconds recorded at that point, so time keeps adding up on resume.
    A torn last line (a crash mid-write) is dropped.
    """
    path = Path(output_dir) / TRAINER_LOG
    if not path.is_file():
        return 0.0
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if entry.get("step", 0) <= last_step:
            kept.append(entry)
    write_jsonl(path, kept)
    return max((e.get("elapsed_s", 0.0) for e in kept), default=0.0)


def prepare_output_dir(output: object, is_main: bool) -> Path | None:
    """Check output_dir against the config; return the checkpoint to resume from, if any.

    - resume: trims the log past the checkpoint and removes half-written checkpoints;
    - overwrite_output_dir: removes old checkpoints and the log;
    - otherwise a non-empty output_dir is refused, so no earlier run is silently mixed in.
    Only the main process changes files; every process reaches the same answer.
    """
    root = Path(output.output_dir)
    resume = resolve_resume(root, output.resume_from_checkpoint)
    if output.resume_from_checkpoint:
        if is_main:
            remove_incomplete(root)
            trim_log(root, resume_step(resume))
        return resume
    if root.is_dir() and any(root.iterdir()):
        if not output.overwrite_output_dir:
            raise ConfigError(
                f"output_dir {root} is not empty: set overwrite_output_dir: true to replace it, "
                "resume_from_checkpoint: true to continue it, or choose another output_dir"
            )
        if is_main:
            for folder in all_checkpoints(root):
                shutil.rmtree(folder, ignore_errors=True)
            (root / TRAINER_LOG).unlink(missing_ok=True)
    return None
