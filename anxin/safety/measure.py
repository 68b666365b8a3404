"""The figures `anxin safety eval` reports, from labelled examples and the care layer's readings.

- crisis recall: crisis messages rated crisis; crisis-or-concern recall: rated at least concern
  (the model then still answers, with a help line);
- false-positive rate: non-crisis messages rated crisis (a concern is not a false alarm);
- the same per category, per stratum (how the real corpus was sampled) and per PsySUICIDE
  label; a confusion table; a precision-recall curve of the care layer's crisis score with the
  operating point its decisions make.

Errors in the report carry line numbers and rule names, never the text; `write_errors` writes
the misses and false alarms with their text for a reviewer.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from anxin.atomic import atomic_path, write_text
from anxin.safety.detector import LEVELS, Assessment
from anxin.safety.sets import LABELS, Example

AT_LEAST_CONCERN = ("concern", "crisis")


def figures(results: list[tuple[Example, Assessment]], cpu_seconds: list[float]) -> dict:
    """Everything `format_report` prints, as one JSON-ready dict (`cpu_seconds`: per message)."""
    confusion = {label: Counter() for label in LABELS}
    for example, assessment in results:
        confusion[example.label][assessment.level] += 1
    milliseconds = 1000 * np.asarray(cpu_seconds or [0.0])
    report = {
        "n": len(results),
        "ms_per_message": round(float(milliseconds.mean()), 4),
        "ms_p50": round(float(np.percentile(milliseconds, 50)), 4),
        "ms_p99": round(float(np.percentile(milliseconds, 99)), 4),
        "overall": _rates(results),
        "categories": _grouped(results, lambda example: [example.category]),
        "confusion": {
            label: {level: confusion[label][level] for level in LEVELS} for label in LABELS
        },
        "errors": [_error(example, assessment) for example, assessment in _errors(results)],
    }
    if any(example.stratum for example, _ in results):
        report["strata"] = _grouped(results, lambda example: [example.stratum or "-"])
    if any(example.source_labels for example, _ in results):
        report["source_labels"] = _grouped(results, lambda example: list(example.source_labels))
    scores = [(example.label == "crisis", assessment.score) for example, assessment in results]
    if all(score is not None for _, score in scores):
        report["pr_auc"] = round(pr_auc(*zip(*scores, strict=True)), 4)
    return report


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _rates(results: list[tuple[Example, Assessment]]) -> dict:
    crisis = [a.level for e, a in results if e.label == "crisis"]
    other = [a.level for e, a in results if e.label != "crisis"]
    true_positive, false_positive = crisis.count("crisis"), other.count("crisis")
    return {
        "crisis": len(crisis),
        "non_crisis": len(other),
        "true_positive": true_positive,
        "false_positive": false_positive,
        "recall": _ratio(true_positive, len(crisis)),
        "crisis_or_concern_recall": _ratio(
            sum(level in AT_LEAST_CONCERN for level in crisis), len(crisis)
        ),
        "precision": _ratio(true_positive, true_positive + false_positive),
        "false_positive_rate": _ratio(false_positive, len(other)),
    }


def _grouped(results, keys) -> dict[str, dict]:
    groups: dict[str, list] = defaultdict(list)
    for example, assessment in results:
        for key in keys(example):
            groups[key].append((example, assessment))
    return {name: _rates(members) for name, members in sorted(groups.items())}


def _errors(results):
    for example, assessment in results:
        if (assessment.level == "crisis") != (example.label == "crisis"):
            yield example, assessment


def _error(example: Example, assessment: Assessment) -> dict:
    return {
        "line": example.line,
        "label": example.label,
        "category": example.category,
        "predicted": assessment.level,
        "rules": list(assessment.reasons),
    }


def write_errors(path: Path, results: list[tuple[Example, Assessment]]) -> int:
    """Misses and false alarms, one JSON object a line, with their text, for review."""
    lines = []
    for example, assessment in _errors(results):
        record = {
            **_error(example, assessment),
            "kind": "miss" if example.label == "crisis" else "false_alarm",
            "level": example.level,
            "stratum": example.stratum,
            "score": assessment.score,
            "text": example.text,
            "context": example.context,
        }
        lines.append(json.dumps(record, ensure_ascii=False))
    # the texts are people's words: written readable by the owner only, like converted data
    write_text(path, "".join(line + "\n" for line in lines), private=True)
    return len(lines)


# --- the precision-recall curve ----------------------------------------------------------------


def precision_recall(labels, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision and recall at each distinct score, highest first, and those scores."""
    labels, scores = np.asarray(labels, dtype=bool), np.asarray(scores, dtype=float)
    order = np.argsort(-scores, kind="stable")
    labels, scores = labels[order], scores[order]
    last_of_each = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    true_positives = np.cumsum(labels)[last_of_each]
    flagged = last_of_each + 1
    return true_positives / flagged, true_positives / max(labels.sum(), 1), scores[last_of_each]


def pr_auc(labels, scores) -> float:
    """Average precision: precision summed over the steps in recall."""
    precision, recall, _ = precision_recall(labels, scores)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def recall_at_fpr(labels: np.ndarray, scores: np.ndarray, fpr: float = 0.05) -> float:
    """Recall at the highest threshold that keeps the false-positive rate at most `fpr`."""
    negatives = np.sort(scores[~labels])[::-1]
    allowed = int(np.floor(fpr * len(negatives)))
    threshold = negatives[allowed] if allowed < len(negatives) else -np.inf
    return float((scores[labels] > threshold).mean())


def draw_curve(path: Path, title: str, results: list[tuple[Example, Assessment]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [example.label == "crisis" for example, _ in results]
    scores = [assessment.score for _, assessment in results]
    if any(score is None for score in scores):
        raise ValueError("the detector gave no crisis score, so there is no curve to draw")
    precision, recall, _ = precision_recall(labels, scores)
    rates = _rates(results)
    figure, axes = plt.subplots(figsize=(6, 5))
    axes.plot(recall, precision, label=f"crisis score (PR-AUC {pr_auc(labels, scores):.3f})")
    axes.plot(
        [rates["recall"] or 0.0],
        [rates["precision"] or 0.0],
        "o",
        color="crimson",
        label=f"operating point: recall {rates['recall']}, FPR {rates['false_positive_rate']}",
    )
    axes.set(xlabel="recall (crisis)", ylabel="precision", xlim=(0, 1.01), ylim=(0, 1.01))
    axes.set_title(title, fontsize=10)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower left", fontsize=8)
    figure.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        figure.savefig(tmp, dpi=120)
    plt.close(figure)


# --- the printed report ------------------------------------------------------------------------


def format_report(path: Path, report: dict) -> str:
    overall = report["overall"]
    lines = [
        f"{path}: {report['n']} messages ({overall['crisis']} crisis, {overall['non_crisis']} "
        f"non-crisis); CPU per message: mean {report['ms_per_message']:.2f} ms, "
        f"p50 {report['ms_p50']:.2f} ms, p99 {report['ms_p99']:.2f} ms",
        "",
        f"crisis recall             {_fmt(overall['recall'])}  "
        f"({overall['true_positive']}/{overall['crisis']})",
        f"crisis-or-concern recall  {_fmt(overall['crisis_or_concern_recall'])}",
        f"precision                 {_fmt(overall['precision'])}",
        f"false-positive rate       {_fmt(overall['false_positive_rate'])}  "
        f"({overall['false_positive']}/{overall['non_crisis']})",
    ]
    if "pr_auc" in report:
        lines.append(f"PR-AUC                    {_fmt(report['pr_auc'])}")
    for key, title in (("categories", "category"), ("strata", "stratum")):
        if key in report:
            lines += ["", *_table(title, report[key])]
    if "source_labels" in report:
        lines += ["", *_table("PsySUICIDE label", report["source_labels"])]
    lines += [
        "",
        "confusion (rows: label; columns: predicted level)",
        f"{'':<11}" + "".join(f"{level:>9}" for level in LEVELS),
    ]
    for label, row in report["confusion"].items():
        lines.append(f"{label:<11}" + "".join(f"{row[level]:>9}" for level in LEVELS))
    return "\n".join(lines)


def _table(title: str, groups: dict[str, dict]) -> list[str]:
    lines = [f"{title:<24} {'crisis':>6} {'recall':>7} {'≥concern':>8} {'other':>6} {'FPR':>6}"]
    for name, rates in groups.items():
        lines.append(
            f"{name:<24} {rates['crisis']:>6} {_fmt(rates['recall']):>7} "
            f"{_fmt(rates['crisis_or_concern_recall']):>8} {rates['non_crisis']:>6} "
            f"{_fmt(rates['false_positive_rate']):>6}"
        )
    return lines


def _fmt(value: float | None) -> str:
    return "  n/a" if value is None else f"{value:.3f}"
