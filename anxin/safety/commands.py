"""`anxin safety`: check one message, or measure the crisis detector on a labelled set.

A set is JSONL, one message a line: {"text": str, "label": "crisis" | "non_crisis",
"category": str, "context": [earlier messages]}. Only the crisis level counts as a positive;
"concern" counts as non-crisis (the model still answers, with a gentle footer).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from anxin.atomic import write_json
from anxin.safety.detector import LEVELS, Assessment, CrisisDetector
from anxin.safety.guard import check_reply

LABELS = ("crisis", "non_crisis")

EPILOG = """\
examples:
  anxin safety check "最近总是睡不好，活着好累"
  anxin safety check "我已经想好了，就在今晚" --context "我不想活了"
  anxin safety check --reply "你患有抑郁症，每天吃两片舍曲林就好。"
  anxin safety eval data/safety_dev.jsonl --json reports/safety_dev.json
  anxin safety eval my_set.jsonl --show-errors --min-recall 0.98 --max-fpr 0.05

The detector runs locally; nothing is sent anywhere. `eval` prints recall and precision on
crisis, the false-positive rate per category of non-crisis messages, and a confusion table.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = "Crisis detection: check one message, or evaluate on a labelled set."
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    verbs = parser.add_subparsers(dest="safety_command", metavar="{check,eval}", required=True)

    check = verbs.add_parser(
        "check",
        help="assess one user message (or, with --reply, check a model reply)",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument("text", help="the message to assess")
    check.add_argument(
        "--context",
        action="append",
        default=[],
        metavar="MESSAGE",
        help="an earlier user message (repeat for several, oldest first)",
    )
    check.add_argument("--reply", action="store_true", help="check TEXT as a model reply instead")
    check.add_argument("--json", action="store_true", help="print the result as JSON")

    evaluate = verbs.add_parser(
        "eval",
        help="recall, precision and false-positive rate on a labelled JSONL set",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    evaluate.add_argument("file", type=Path, help="JSONL: text, label, category, context")
    evaluate.add_argument("--json", type=Path, metavar="OUT", help="also write the figures here")
    evaluate.add_argument(
        "--show-errors", action="store_true", help="print each misclassified message with its line"
    )
    evaluate.add_argument("--min-recall", type=float, help="exit 1 if crisis recall is lower")
    evaluate.add_argument(
        "--max-fpr", type=float, help="exit 1 if the false-positive rate is higher"
    )


def main(args: argparse.Namespace) -> int:
    if args.safety_command == "check":
        return _check(args)
    return _evaluate(args)


# --- check --------------------------------------------------------------------------------------


def _check(args: argparse.Namespace) -> int:
    if args.reply:
        verdict = check_reply(args.text)
        result = {"ok": verdict.ok, "reasons": verdict.reasons}
        print(json.dumps(result, ensure_ascii=False) if args.json else _describe_verdict(result))
        return 0
    assessment = CrisisDetector().assess(args.text, context=list(args.context))
    if args.json:
        print(json.dumps(assessment.to_dict(), ensure_ascii=False))
    else:
        print(f"level:      {assessment.level}")
        print(f"categories: {', '.join(assessment.categories) or '-'}")
        print(f"language:   {assessment.language}")
        print(f"rules:      {', '.join(assessment.reasons) or '-'}")
    return 0


def _describe_verdict(result: dict) -> str:
    if result["ok"]:
        return "ok: the reply may be shown"
    return "unsafe: " + ", ".join(result["reasons"])


# --- eval ---------------------------------------------------------------------------------------


@dataclass
class Example:
    line: int
    text: str
    label: str
    category: str
    context: list


def read_examples(path: Path) -> list[Example]:
    """Read a labelled set; a bad line raises ValueError naming FILE:LINE: field."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise ValueError(f"{path}: cannot read ({error.strerror})") from None
    examples = []
    for number, raw in enumerate(lines, start=1):
        if raw.strip():
            examples.append(_parse_example(path, number, raw))
    if not examples:
        raise ValueError(f"{path}: no examples")
    return examples


def _parse_example(path: Path, number: int, raw: str) -> Example:
    def fail(field: str, problem: str) -> ValueError:
        return ValueError(f"{path}:{number}: {field}: {problem}")

    try:
        record = json.loads(raw)
    except json.JSONDecodeError as error:
        raise fail("(line)", f"not valid JSON ({error.msg})") from None
    if not isinstance(record, dict):
        raise fail("(line)", "must be a JSON object")
    if not isinstance(record.get("text"), str) or not record["text"].strip():
        raise fail("text", "missing or not a non-empty string")
    if record.get("label") not in LABELS:
        raise fail("label", f"{record.get('label')!r} is not one of {', '.join(LABELS)}")
    category = record.get("category", "uncategorised")
    if not isinstance(category, str) or not category:
        raise fail("category", "must be a non-empty string")
    context = record.get("context", [])
    if not isinstance(context, list):
        raise fail("context", "must be a list of messages")
    for i, message in enumerate(context):
        if isinstance(message, str):
            continue
        if not (isinstance(message, dict) and isinstance(message.get("content"), str)):
            raise fail(f"context[{i}]", 'must be a string or {"role", "content"}')
        if message.get("role", "user") not in ("user", "assistant", "system"):
            raise fail(f"context[{i}].role", f"unknown role {message.get('role')!r}")
    return Example(number, record["text"], record["label"], category, context)


def evaluate(examples: list[Example], detector: CrisisDetector | None = None) -> dict:
    """Figures for a labelled set. Errors carry line numbers and rule names, never text."""
    detector = detector or CrisisDetector()
    started = time.process_time()  # CPU time: honest on a shared, busy machine
    results: list[tuple[Example, Assessment]] = [
        (example, detector.assess(example.text, example.context)) for example in examples
    ]
    elapsed = time.process_time() - started
    confusion = {label: Counter() for label in LABELS}
    by_category: dict[str, Counter] = defaultdict(Counter)
    errors = []
    for example, assessment in results:
        flagged = assessment.level == "crisis"
        confusion[example.label][assessment.level] += 1
        counts = by_category[example.category]
        counts["n"] += 1
        counts["flagged"] += flagged
        counts[example.label] += 1
        if flagged != (example.label == "crisis"):
            errors.append(
                {
                    "line": example.line,
                    "label": example.label,
                    "category": example.category,
                    "predicted": assessment.level,
                    "rules": assessment.reasons,
                }
            )
    return {
        "n": len(examples),
        "ms_per_message": round(1000 * elapsed / len(examples), 4),
        "overall": _overall(confusion),
        "categories": {name: _category(c) for name, c in sorted(by_category.items())},
        "confusion": {
            label: {level: confusion[label][level] for level in LEVELS} for label in LABELS
        },
        "errors": errors,
    }


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _overall(confusion: dict[str, Counter]) -> dict:
    positives = sum(confusion["crisis"].values())
    negatives = sum(confusion["non_crisis"].values())
    true_positive = confusion["crisis"]["crisis"]
    false_positive = confusion["non_crisis"]["crisis"]
    return {
        "crisis": positives,
        "non_crisis": negatives,
        "true_positive": true_positive,
        "false_positive": false_positive,
        "recall": _ratio(true_positive, positives),
        "precision": _ratio(true_positive, true_positive + false_positive),
        "false_positive_rate": _ratio(false_positive, negatives),
    }


def _category(counts: Counter) -> dict:
    label = "crisis" if counts["crisis"] >= counts["non_crisis"] else "non_crisis"
    figures = {"label": label, "n": counts["n"], "flagged_crisis": counts["flagged"]}
    if counts["crisis"] and counts["non_crisis"]:
        figures["note"] = "mixed labels: flagged_crisis counts both"
    key = "recall" if label == "crisis" else "false_positive_rate"
    figures[key] = _ratio(counts["flagged"], counts["n"])
    return figures


def format_report(path: Path, report: dict) -> str:
    overall = report["overall"]
    lines = [
        f"{path}: {report['n']} messages ({overall['crisis']} crisis, {overall['non_crisis']} "
        f"non-crisis), {report['ms_per_message']} ms CPU per message",
        "",
        f"crisis recall        {_fmt(overall['recall'])}  ({overall['true_positive']}/{overall['crisis']})",
        f"precision            {_fmt(overall['precision'])}",
        f"false-positive rate  {_fmt(overall['false_positive_rate'])}  "
        f"({overall['false_positive']}/{overall['non_crisis']})",
        "",
        f"{'category':<24} {'label':<11} {'n':>4} {'as crisis':>9}  rate",
    ]
    for name, figures in report["categories"].items():
        key = "recall" if figures["label"] == "crisis" else "false_positive_rate"
        rate = f"{'recall' if key == 'recall' else 'FPR'} {_fmt(figures[key])}"
        lines.append(
            f"{name:<24} {figures['label']:<11} {figures['n']:>4} {figures['flagged_crisis']:>9}  {rate}"
        )
    lines += [
        "",
        "confusion (rows: label; columns: predicted level)",
        f"{'':<11}" + "".join(f"{level:>9}" for level in LEVELS),
    ]
    for label, row in report["confusion"].items():
        lines.append(f"{label:<11}" + "".join(f"{row[level]:>9}" for level in LEVELS))
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "  n/a" if value is None else f"{value:.3f}"


def _evaluate(args: argparse.Namespace) -> int:
    try:
        examples = read_examples(args.file)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    report = evaluate(examples)
    print(format_report(args.file, report))
    if args.show_errors and report["errors"]:
        texts = {example.line: example.text for example in examples}
        print("\nmisclassified:")
        for error in report["errors"]:
            print(
                f"  {args.file}:{error['line']}: {error['label']} → {error['predicted']} "
                f"[{error['category']}] {texts[error['line']]}  ({', '.join(error['rules']) or '-'})"
            )
    if args.json:
        write_json(args.json, {"file": str(args.file), **report})
        print(f"\nwrote {args.json}")
    return _gate(report["overall"], args.min_recall, args.max_fpr)


def _gate(overall: dict, min_recall: float | None, max_fpr: float | None) -> int:
    failed = []
    if min_recall is not None and (overall["recall"] or 0) < min_recall:
        failed.append(f"recall {overall['recall']} < {min_recall}")
    if max_fpr is not None and (overall["false_positive_rate"] or 0) > max_fpr:
        failed.append(f"false-positive rate {overall['false_positive_rate']} > {max_fpr}")
    for problem in failed:
        print(f"below target: {problem}", file=sys.stderr)
    return 1 if failed else 0
