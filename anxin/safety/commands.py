"""`anxin safety`: check one message, or measure the care layer on a labelled set.

A set is JSONL, one message a line: {"text": str, "label": "crisis" | "non_crisis",
"category": str, "context": [earlier messages]} (optionally "level" and "stratum", as in the
real corpus), or PsySUICIDE's JSON list, read directly (`sets.py`). Only the crisis level
counts as a positive; "concern" counts as non-crisis (the model still answers, with a gentle
footer), and crisis-or-concern recall is reported beside crisis recall.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from anxin.atomic import write_json
from anxin.machine import machine_facts
from anxin.safety.care import CrisisDetector
from anxin.safety.guard import check_reply
from anxin.safety.measure import draw_curve, figures, format_report, write_errors
from anxin.safety.sets import PARTS, Example, read_examples

EPILOG = """\
examples:
  anxin safety check "最近总是睡不好，活着好累"
  anxin safety check "我已经想好了，就在今晚" --context "我不想活了"
  anxin safety check "没有 不想活 只是累" --context "好累" --asked "你有没有想过不想活了？"
  anxin safety check --reply "你患有抑郁症，每天吃两片舍曲林就好。"
  anxin safety eval data/safety_dev.jsonl --json reports/safety_dev.json
  anxin safety eval data/safety_real/smilechat_dev.jsonl --curve pr.png --errors errors.jsonl
  anxin safety eval data/psysuicide/valid.json --part heldout
  anxin safety eval my_set.jsonl --show-errors --min-recall 0.98 --max-fpr 0.05

The detector runs locally; nothing is sent anywhere. `eval` prints crisis recall,
crisis-or-concern recall, precision and the false-positive rate, per category, per stratum
(real corpus) and per PsySUICIDE label, and a confusion table.
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
    check.add_argument(
        "--asked",
        metavar="QUESTION",
        help="the assistant's turn just before TEXT, after the --context messages (a safety "
        "question decides how its answer reads: 有 is a crisis, 没有 就是累 a plain no)",
    )
    check.add_argument("--reply", action="store_true", help="check TEXT as a model reply instead")
    check.add_argument("--json", action="store_true", help="print the result as JSON")

    evaluate = verbs.add_parser(
        "eval",
        help="recall, precision and false-positive rate on a labelled JSONL set",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    evaluate.add_argument(
        "file", type=Path, help="JSONL (text, label, category, context) or PsySUICIDE JSON"
    )
    evaluate.add_argument(
        "--part",
        choices=PARTS,
        help="PsySUICIDE only: the items listed in dev_idx.txt or heldout_idx.txt beside FILE",
    )
    evaluate.add_argument("--json", type=Path, metavar="OUT", help="also write the figures here")
    evaluate.add_argument(
        "--curve", type=Path, metavar="PNG", help="draw the precision-recall curve here"
    )
    evaluate.add_argument(
        "--errors",
        type=Path,
        metavar="JSONL",
        help="write the misses and false alarms here, with their text, for review",
    )
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
    context = [{"role": "user", "content": message} for message in args.context]
    if args.asked:
        context.append({"role": "assistant", "content": args.asked})
    assessment = CrisisDetector().assess(args.text, context=context)
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


def evaluate(examples: list[Example], detector: CrisisDetector | None = None) -> dict:
    """Figures for a labelled set. Errors carry line numbers and rule names, never text."""
    return figures(*_assess_all(examples, detector))


def _assess_all(examples: list[Example], detector: CrisisDetector | None = None):
    """Each example's assessment, and the CPU seconds each took (honest on a busy machine).
    A first message is assessed untimed: it loads the weights and builds the rules' caches
    (about 90 ms once), which on a set of fewer than a hundred was its p99."""
    detector = detector or CrisisDetector()
    detector.assess("你好，最近睡得不太好")
    results, seconds = [], []
    for example in examples:
        started = time.process_time()
        results.append((example, detector.assess(example.text, example.context)))
        seconds.append(time.process_time() - started)
    return results, seconds


def _evaluate(args: argparse.Namespace) -> int:
    examples = read_examples(args.file, args.part)  # a bad set: one line from anxin.cli, status 2
    results, seconds = _assess_all(examples)
    report = figures(results, seconds)
    shown = f"{args.file} ({args.part} part)" if args.part else str(args.file)
    machine = machine_facts(torch_too=False)  # times compare only on one CPU, side by side
    # The files before the report: a reader that stops early (anxin safety eval FILE --json OUT
    # | head) ends the printing, and that must not cost the figures.
    written = _write_outputs(args, report, machine, shown, results)
    print(format_report(shown, report))
    print(f"timed on: {machine['cpu']} ({' '.join(machine['cpu_flags']) or 'no listed flags'})")
    if args.show_errors and report["errors"]:
        texts = {example.line: example.text for example in examples}
        print("\nmisclassified:")
        for error in report["errors"]:
            print(
                f"  {args.file}:{error['line']}: {error['label']} → {error['predicted']} "
                f"[{error['category']}] {texts[error['line']]}  ({', '.join(error['rules']) or '-'})"
            )
    if written:
        print("\n" + "\n".join(written))
    return _gate(report["overall"], args.min_recall, args.max_fpr)


def _write_outputs(
    args: argparse.Namespace, report: dict, machine: dict, shown: str, results: list
) -> list[str]:
    """Write what --json, --curve and --errors ask for; the lines that say so."""
    written = []
    if args.json:
        record = {"file": str(args.file), "part": args.part, **report, "machine": machine}
        write_json(args.json, record)
        written.append(f"wrote {args.json}")
    if args.curve:
        draw_curve(args.curve, shown, results)
        written.append(f"wrote {args.curve}")
    if args.errors:
        count = write_errors(args.errors, results)
        written.append(f"wrote {args.errors} ({count} misses and false alarms)")
    return written


def _gate(overall: dict, min_recall: float | None, max_fpr: float | None) -> int:
    failed = []
    if min_recall is not None and (overall["recall"] or 0) < min_recall:
        failed.append(f"recall {overall['recall']} < {min_recall}")
    if max_fpr is not None and (overall["false_positive_rate"] or 0) > max_fpr:
        failed.append(f"false-positive rate {overall['false_positive_rate']} > {max_fpr}")
    for problem in failed:
        print(f"below target: {problem}", file=sys.stderr)
    return 1 if failed else 0
