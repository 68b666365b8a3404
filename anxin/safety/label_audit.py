"""Readers' guideline labels beside a benchmark's own: how PsySUICIDE's labels read under anxin's.

    python -m anxin.safety.label_audit data/psysuicide/valid.json data/psysuicide/reader_audit.jsonl
    python -m anxin.safety.training --cv --levels detector.jsonl   # the detector as a reader
    python -m anxin.safety.label_audit data/psysuicide/valid.json \
        data/psysuicide/reader_audit.jsonl detector.jsonl

PsySUICIDE calls ten labels "risk" and the issue asks that anxin rate them crisis; anxin's
guideline (docs/safety-labels.md) calls some of the same messages concern or none: someone
else's suicide, a curse at no one in particular. This tool says how large that difference is:
for each reader who labelled a sample of the benchmark by the guideline alone, the share of the
benchmark's risk messages the reader calls crisis (or at least concern), the share of its
unrelated messages the reader calls crisis, the same per benchmark label, and how often the
readers agree with each other. Items are named by their position in the benchmark file (from
1): PsySUICIDE's `idx` is not unique (164 of its ids name two different messages, 12 three).

The audit file is JSONL, one line per reader and item:
{"position", "idx", "labeller", "level": none|concern|crisis, "category", "reason"}.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

from anxin.atomic import write_json
from anxin.safety.measure import AT_LEAST_CONCERN
from anxin.safety.sets import GOLD_LEVELS, Example, LabelledSetError, json_record, read_examples

FIELDS = ("position", "idx", "labeller", "level", "category", "reason")
UNRELATED = "unrelated"  # how the table names the benchmark's no-risk label


@dataclass(frozen=True)
class ReaderLabel:
    position: int
    labeller: str
    level: str
    category: str
    reason: str


def read_audit(paths: Sequence[Path], benchmark: list[Example]) -> list[ReaderLabel]:
    """The readers' labels from one or more files, each checked against the benchmark item it
    names; a reader may label an item once across all the files."""
    by_position = {example.line: example for example in benchmark}
    labels, seen = [], set()
    for path in paths:
        lines = path.read_text(encoding="utf-8").splitlines()
        for number, raw in enumerate(lines, start=1):
            if raw.strip():
                label = _reader_label(path, number, json_record(path, number, raw), by_position)
                if (label.labeller, label.position) in seen:
                    raise LabelledSetError(
                        f"{path}:{number}: position: item {label.position} twice for labeller"
                        f" {label.labeller!r}"
                    )
                seen.add((label.labeller, label.position))
                labels.append(label)
    return labels


def _reader_label(
    path: Path, number: int, record: dict, by_position: dict[int, Example]
) -> ReaderLabel:
    def fail(field: str, problem: str) -> LabelledSetError:
        return LabelledSetError(f"{path}:{number}: {field}: {problem}")

    unknown = sorted(set(record) - set(FIELDS))
    if unknown:
        raise fail(unknown[0], f"unknown field (fields: {', '.join(FIELDS)})")
    position = record.get("position")
    if not isinstance(position, int) or position not in by_position:
        raise fail("position", f"{position!r} is not an item of the benchmark file")
    if str(record.get("idx")) != by_position[position].id:
        raise fail("idx", f"{record.get('idx')!r} is not the idx of item {position}")
    if record.get("level") not in GOLD_LEVELS:
        raise fail("level", f"{record.get('level')!r}: must be one of {', '.join(GOLD_LEVELS)}")
    for field in ("labeller", "category", "reason"):
        if not isinstance(record.get(field), str) or not record[field].strip():
            raise fail(field, "missing or not a non-empty string")
    return ReaderLabel(
        position, record["labeller"], record["level"], record["category"], record["reason"]
    )


def compare(benchmark: list[Example], labels: list[ReaderLabel]) -> dict:
    """Each reader's levels on the benchmark's risk and unrelated items, and the agreement."""
    by_position = {example.line: example for example in benchmark}
    readers: dict[str, dict[int, str]] = defaultdict(dict)
    for label in labels:
        readers[label.labeller][label.position] = label.level
    report = {"items": len({label.position for label in labels}), "readers": {}}
    for name, levels in sorted(readers.items()):
        report["readers"][name] = _reader_figures(levels, by_position)
    report["agreement"] = {
        f"{first}-{second}": _agreement(readers[first], readers[second])
        for first, second in combinations(sorted(readers), 2)
    }
    return report


def only_shared(labels: list[ReaderLabel]) -> tuple[list[ReaderLabel], dict[str, int]]:
    """The labels of the items every reader read, and how many each reader had beyond them: a
    reader of more items (the detector reads the whole development part) is compared on the
    same ones as the others."""
    readers: dict[str, set[int]] = defaultdict(set)
    for label in labels:
        readers[label.labeller].add(label.position)
    shared = set.intersection(*readers.values()) if readers else set()
    if not shared:
        raise LabelledSetError("the audit files hold no item that every reader labelled")
    left_out = {name: len(read - shared) for name, read in sorted(readers.items())}
    return [label for label in labels if label.position in shared], left_out


def _reader_figures(levels: dict[int, str], by_position: dict[int, Example]) -> dict:
    groups: dict[str, list[str]] = defaultdict(list)
    for position, level in levels.items():
        example = by_position[position]
        kind = "risk" if example.label == "crisis" else UNRELATED
        groups[kind].append(level)
        for benchmark_label in example.source_labels if kind == "risk" else ():
            groups[f"risk: {benchmark_label}"].append(level)
    return {name: _shares(found) for name, found in sorted(groups.items())}


def _shares(levels: list[str]) -> dict:
    return {
        "n": len(levels),
        "crisis": round(levels.count("crisis") / len(levels), 3),
        "crisis_or_concern": round(
            sum(level in AT_LEAST_CONCERN for level in levels) / len(levels), 3
        ),
    }


def _agreement(first: dict[int, str], second: dict[int, str]) -> dict:
    """Level agreement on the items both read, and the specific agreement on crisis
    (2 * both / (first's + second's): how often a crisis one reader sees, the other sees)."""
    shared = sorted(first.keys() & second.keys())
    one = {p for p in shared if first[p] == "crisis"}
    other = {p for p in shared if second[p] == "crisis"}
    return {
        "n": len(shared),
        "level": round(sum(first[p] == second[p] for p in shared) / max(len(shared), 1), 3),
        # undefined where neither reader saw a crisis
        "crisis_specific": round(2 * len(one & other) / (len(one) + len(other)), 3)
        if one or other
        else None,
    }


def format_report(report: dict) -> str:
    lines = [f"{report['items']} items read by {len(report['readers'])} reader(s)"]
    width = max([len("reader"), *map(len, report["readers"])])
    lines.append(
        f"{'reader':<{width}} {'n':>4} {'crisis':>7} {'crisis+concern':>15}  benchmark label"
    )
    for name, groups in report["readers"].items():
        for group, shares in groups.items():  # the label last: CJK text breaks the columns
            lines.append(
                f"{name:<{width}} {shares['n']:>4} {shares['crisis']:>7.3f}"
                f" {shares['crisis_or_concern']:>15.3f}  {group}"
            )
    for name, count in report.get("left_out", {}).items():
        if count:
            lines.append(f"{name}: {count} more items, not read by every reader, left out")
    for pair, agreement in report["agreement"].items():
        lines.append(
            f"agreement {pair}: levels {agreement['level']:.3f}, crisis (specific)"
            f" {_shown(agreement['crisis_specific'])} over {agreement['n']} items"
        )
    return "\n".join(lines)


def _shown(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m anxin.safety.label_audit",
        description="How readers of anxin's guideline label a sample of PsySUICIDE, beside "
        "PsySUICIDE's own labels.",
    )
    parser.add_argument("benchmark", type=Path, help="PsySUICIDE JSON (data/psysuicide/valid.json)")
    parser.add_argument(
        "audit", type=Path, nargs="+", help="the readers' labels (JSONL, see the module doc)"
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    try:
        benchmark = read_examples(args.benchmark)
        if not all(example.source_labels for example in benchmark):
            raise LabelledSetError(f"{args.benchmark}: not PsySUICIDE JSON (items with labels)")
        labels, left_out = only_shared(read_audit(args.audit, benchmark))
        report = {**compare(benchmark, labels), "left_out": left_out}
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.json:  # before printing: a reader that stops early must not cost the file
        write_json(args.json, report)
    print(format_report(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
