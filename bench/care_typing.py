"""How the care layer reads a message typed as people type in a chat box, not as written.

    python -m bench.care_typing --out bench/results/care            # development sets
    python -m bench.care_typing --frozen --out bench/results/care   # and the frozen parts

On a phone people set clauses apart with spaces or emoji where a careful writer puts a comma:
不想上学 想死, 没考好😭不想活了, or run them on: 不想上学想死. Each labelled set is read as written,
and then once per typing style with every run of punctuation between two Chinese characters
replaced (`typed`): by one space, by an emoji, or by nothing. The labels are kept, so a
detector that reads Chinese as its writers do gives every copy the decisions it gives the
written one (run on, that is not always possible: 不想上学想死 and 我不想上学想死的 differ only
in what is meant). Reports, per set and style, crisis recall and false-positive rate of the
messages the style changes, as written and as typed, and how many decisions the typing changed. Nothing is chosen on the frozen parts: `--frozen`
is for measuring after. Writes `typing.json` under --out.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import sys
from pathlib import Path

from anxin.atomic import write_text
from anxin.safety import care
from anxin.safety.sets import Example, read_examples
from bench.common import machine_facts

ROOT = Path(__file__).resolve().parents[1]
DEVELOPMENT = {
    "smilechat_dev": (ROOT / "data/safety_real/smilechat_dev.jsonl", None),
    "psysuicide_dev": (ROOT / "data/psysuicide/valid.json", "dev"),
    "safety_dev": (ROOT / "data/safety_dev.jsonl", None),
    "posts_train": (ROOT / "data/safety_posts/posts_train.jsonl", None),
    "phrases_dev": (ROOT / "data/safety_posts/phrases_dev.jsonl", None),
    "review_past_now": (ROOT / "data/safety_posts/review_past_now.jsonl", None),
    "review_recovery": (ROOT / "data/safety_posts/review_recovery.jsonl", None),
}
FROZEN = {
    "smilechat_heldout": (ROOT / "data/safety_real/smilechat_heldout.jsonl", None),
    "psysuicide_heldout": (ROOT / "data/psysuicide/valid.json", "heldout"),
    "safety_heldout": (ROOT / "data/safety_heldout.jsonl", None),
}
# A run of punctuation between two Chinese characters (quotation marks stay).
_PUNCTUATION_RUN = re.compile(r"(?<=[\u4e00-\u9fff])[，。！？；、：,.!?;:…~]+(?=[\u4e00-\u9fff])")


# What stands for the punctuation in each style; emoji take turns, as people vary them; run on,
# nothing does (不想上学想死).
STYLES = {"spaces": (" ",), "emoji": ("😭", "😔", "🙃", "💔", "😢"), "run_on": ("",)}


def typed(text: str, style: str) -> str:
    """不想上学，想死。 → 不想上学 想死。 (spaces) or 不想上学😭想死。 (emoji): each run of
    punctuation between two Chinese characters replaced by what the style puts there."""
    marks = itertools.cycle(STYLES[style])
    return _PUNCTUATION_RUN.sub(lambda _: next(marks), text)


def decisions(examples: list[Example], transform) -> list[bool]:
    """Whether the detector answers each message (through `transform`) with the crisis reply."""
    return [care.decide(transform(e.text), e.context).level == "crisis" for e in examples]


def rates(examples: list[Example], said: list[bool]) -> dict:
    crises = [s for e, s in zip(examples, said) if e.label == "crisis"]
    others = [s for e, s in zip(examples, said) if e.label != "crisis"]
    return {
        "recall": round(sum(crises) / len(crises), 4) if crises else None,
        "false_positive_rate": round(sum(others) / len(others), 4) if others else None,
        "crises_found": sum(crises),
        "false_alarms": sum(others),
    }


def measure(path: Path, part: str | None) -> dict:
    """Every style on one set: the messages it changes, read as written and as typed."""
    examples = read_examples(path, part)
    touched = [e for e in examples if typed(e.text, "spaces") != e.text]
    as_written = decisions(touched, lambda text: text)
    result = {
        "messages": len(examples),
        "messages_with_punctuation_between_chinese": len(touched),
        "crises_among_them": sum(e.label == "crisis" for e in touched),
        "as_written": rates(touched, as_written),
    }
    for style in STYLES:
        as_typed = decisions(touched, lambda text, style=style: typed(text, style))
        result[style] = {
            **rates(touched, as_typed),
            "decisions_changed": sum(a != b for a, b in zip(as_written, as_typed)),
        }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frozen", action="store_true", help="also measure the frozen parts")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/care")
    args = parser.parse_args(argv)
    sets = {**DEVELOPMENT, **(FROZEN if args.frozen else {})}
    results = {}
    for name, (path, part) in sets.items():
        results[name] = measure(path, part)
        print(name, json.dumps(results[name], ensure_ascii=False), file=sys.stderr)
    report = {"machine": machine_facts(), "sets": results}
    out = args.out / "typing.json"
    write_text(out, json.dumps(report, ensure_ascii=False, indent=2) + "\n")
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
