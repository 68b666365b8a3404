"""Snapshot every decision of the care layer, so a refactor can prove it changed none of them.

    python -m anxin.safety.snapshot /tmp/before.json        # before the change
    python -m anxin.safety.snapshot /tmp/after.json         # after it
    python -m anxin.safety.snapshot --compare /tmp/before.json /tmp/after.json

A snapshot holds, for every message of the labelled safety sets (written and real) and the
classifier's training file, the detector's level, categories and reasons (with the message's context) and the
classifier's own probability; and for every turn of the bundled dialogues and every message,
the reply guard's verdict and the rubric's forbidden-content rules that fire. The labelled sets and the dialogues
are read from the repository checkout, so this runs from a checkout, not an installed wheel.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path

from anxin.atomic import write_json

ROOT = Path(__file__).resolve().parents[2]
MESSAGE_SETS = {
    "dev": ROOT / "data" / "safety_dev.jsonl",
    "heldout": ROOT / "data" / "safety_heldout.jsonl",
    "train": ROOT / "anxin" / "resources" / "crisis_train.jsonl",
    # real client messages, longer and messier than the written sets
    "smile_dev": ROOT / "data" / "safety_real" / "smilechat_dev.jsonl",
    "smile_heldout": ROOT / "data" / "safety_real" / "smilechat_heldout.jsonl",
    "psysuicide": ROOT / "data" / "psysuicide" / "valid.json",
}
DIALOGUES = ROOT / "data" / "anxin_sample.jsonl"


def _records(path: Path) -> Iterator[tuple[int, dict]]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":  # one JSON list
        yield from enumerate(json.loads(text), start=1)
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            yield number, json.loads(line)


def _assessments() -> dict[str, dict]:
    from anxin.safety import CrisisDetector
    from anxin.safety.care import learned_probability

    detector = CrisisDetector()
    found = {}
    for name, path in MESSAGE_SETS.items():
        for number, record in _records(path):
            assessment = detector.assess(record["text"], record.get("context", []))
            found[f"{name}:{number}"] = {
                "level": assessment.level,
                "categories": assessment.categories,
                "reasons": assessment.reasons,
                "classifier": learned_probability(record["text"], record.get("context", [])),
            }
    return found


def _texts_to_check() -> Iterator[tuple[str, str]]:
    """Every turn of the dialogues, user turns too, and every labelled message: between them
    they hold the doses, methods and diagnoses the reply checks look for."""
    for number, record in _records(DIALOGUES):
        for i, message in enumerate(record["messages"]):
            yield f"sample:{number}:{i}", message["content"]
    for name, path in MESSAGE_SETS.items():
        for number, record in _records(path):
            yield f"{name}:{number}", record["text"]


def _turn_checks() -> dict[str, dict]:
    from anxin.data.rubric import FORBIDDEN_IN_ASSISTANT
    from anxin.safety import check_reply

    found = {}
    for key, text in _texts_to_check():
        forbidden = [rule for rule, pattern, _ in FORBIDDEN_IN_ASSISTANT if pattern.search(text)]
        found[key] = {"reply": check_reply(text).reasons, "rubric": forbidden}
    return found


def take() -> dict:
    return {"assess": _assessments(), "turns": _turn_checks()}


def differences(before: dict, after: dict) -> list[str]:
    lines = []
    for section in ("assess", "turns"):
        old, new = before[section], after[section]
        for key in sorted(old.keys() | new.keys()):
            if old.get(key) != new.get(key):
                lines.append(f"{section} {key}: {old.get(key)} → {new.get(key)}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m anxin.safety.snapshot", description=__doc__)
    parser.add_argument("out", nargs="?", type=Path, help="write a snapshot here")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE", "AFTER"))
    args = parser.parse_args(argv)
    if args.compare:
        before, after = (json.loads(p.read_text(encoding="utf-8")) for p in args.compare)
        changed = differences(before, after)
        print("\n".join(changed))
        total = len(before["assess"]) + len(before["turns"])
        print(f"{len(changed)} of {total} decisions differ", file=sys.stderr)
        return 1 if changed else 0
    if args.out is None:
        parser.error("give OUT, or --compare BEFORE AFTER")
    snapshot = take()
    write_json(args.out, snapshot)
    print(f"wrote {args.out}: {len(snapshot['assess'])} messages, {len(snapshot['turns'])} turns")
    return 0


if __name__ == "__main__":
    sys.exit(main())
