"""Labelled sets the care layer is measured on, read into one shape: `Example`.

Two formats:

- JSONL, one message a line: {"text", "label": "crisis" | "non_crisis", "category",
  "context": [earlier messages]}, optionally "level" (none / concern / crisis, as in the real
  corpus data/safety_real/) and "stratum" (how the message was sampled);
- PsySUICIDE JSON (a list of {"idx", "text", "labels": [...]}, PsyGUARD, EMNLP 2024), mapped
  through docs/safety-labels.md: every risk label is crisis, 与自杀/自伤/攻击行为无关 is none;
  `part="dev"` or `"heldout"` keeps the items listed in dev_idx.txt / heldout_idx.txt beside
  the file.

A bad line or item raises LabelledSetError (a ValueError) naming FILE:LINE (or FILE:[index]) and the field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from anxin.errors import AnxinError

LABELS = ("crisis", "non_crisis")
GOLD_LEVELS = ("none", "concern", "crisis")
PARTS = ("dev", "heldout")


class LabelledSetError(AnxinError, ValueError):
    """A labelled set that cannot be read; the message names FILE:LINE and the field."""


# PsySUICIDE's labels (docs/safety-labels.md): each risk label maps to a crisis category.
PSYSUICIDE_UNRELATED = "与自杀/自伤/攻击行为无关"
PSYSUICIDE_CATEGORIES = {
    "主动自杀意图": "suicidal_ideation",
    "被动自杀意图": "suicidal_ideation",
    "关于自杀的探索": "suicidal_ideation",
    "自杀计划": "plan_means",
    "自杀准备行为": "plan_means",
    "自杀未遂": "plan_means",
    "自伤意图": "self_harm",
    "自伤行为": "self_harm",
    "用户攻击行为": "harm_others",
    "他人攻击行为": "abuse_danger",
}


@dataclass
class Example:
    line: int  # the line of a JSONL file, or the position in a JSON list (from 1)
    text: str
    label: str  # crisis / non_crisis
    category: str
    context: list = field(default_factory=list)
    level: str | None = None  # the gold level where the set gives one (none/concern/crisis)
    stratum: str | None = None
    source_labels: tuple[str, ...] = ()  # PsySUICIDE's own labels
    id: str | None = None  # the record's own id, where it has one (smile-6-t04)


def read_examples(path: Path, part: str | None = None) -> list[Example]:
    """Read a labelled set (JSONL, or PsySUICIDE JSON with an optional part)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise LabelledSetError(f"{path}: cannot read ({error.strerror})") from None
    except UnicodeDecodeError:
        raise LabelledSetError(f"{path}: not UTF-8 text") from None
    if text.lstrip().startswith("["):
        examples = _psysuicide(path, text, part)
    elif part is not None:
        raise LabelledSetError(
            f"{path}: --part needs PsySUICIDE JSON with dev_idx.txt/heldout_idx.txt"
        )
    else:
        examples = [
            _parse_line(path, number, raw)
            for number, raw in enumerate(text.splitlines(), start=1)
            if raw.strip()
        ]
    if not examples:
        raise LabelledSetError(f"{path}: no examples")
    return examples


def json_record(path: Path, number: int, raw: str) -> dict:
    """One line of a JSONL file as a JSON object; anything else names FILE:LINE."""
    try:
        record = json.loads(raw)
    except json.JSONDecodeError as error:
        raise LabelledSetError(f"{path}:{number}: (line): not valid JSON ({error.msg})") from None
    if not isinstance(record, dict):
        raise LabelledSetError(f"{path}:{number}: (line): must be a JSON object")
    return record


def _parse_line(path: Path, number: int, raw: str) -> Example:
    def fail(field: str, problem: str) -> LabelledSetError:
        return LabelledSetError(f"{path}:{number}: {field}: {problem}")

    record = json_record(path, number, raw)
    if not isinstance(record.get("text"), str) or not record["text"].strip():
        raise fail("text", "missing or not a non-empty string")
    if record.get("label") not in LABELS:
        raise fail("label", f"{record.get('label')!r} is not one of {', '.join(LABELS)}")
    category = record.get("category", "uncategorised")
    if not isinstance(category, str) or not category:
        raise fail("category", "must be a non-empty string")
    level = record.get("level")
    if level is not None and level not in GOLD_LEVELS:
        raise fail("level", f"{level!r} is not one of {', '.join(GOLD_LEVELS)}")
    if level is not None and (level == "crisis") != (record["label"] == "crisis"):
        raise fail("level", f"{level!r} disagrees with label {record['label']!r}")
    stratum = record.get("stratum")
    if stratum is not None and not isinstance(stratum, str):
        raise fail("stratum", "must be a string")
    context = _context(record.get("context", []), fail)
    record_id = record.get("id")
    record_id = str(record_id) if isinstance(record_id, str | int) else None
    return Example(
        number, record["text"], record["label"], category, context, level, stratum, (), record_id
    )


def _context(context: object, fail) -> list:
    if not isinstance(context, list):
        raise fail("context", "must be a list of messages")
    for i, message in enumerate(context):
        if isinstance(message, str):
            continue
        if not (isinstance(message, dict) and isinstance(message.get("content"), str)):
            raise fail(f"context[{i}]", 'must be a string or {"role", "content"}')
        if message.get("role", "user") not in ("user", "assistant", "system"):
            raise fail(f"context[{i}].role", f"unknown role {message.get('role')!r}")
    return context


def _psysuicide(path: Path, text: str, part: str | None) -> list[Example]:
    try:
        items = json.loads(text)
    except json.JSONDecodeError as error:
        raise LabelledSetError(
            f"{path}: not valid JSON ({error.msg}, line {error.lineno})"
        ) from None
    if not isinstance(items, list):
        raise LabelledSetError(f"{path}: must be a JSON list of items")
    kept = _part_ids(path, part)
    examples = []
    for position, item in enumerate(items, start=1):
        example = _psysuicide_item(path, position, item)
        if kept is None or item["idx"] in kept:
            examples.append(example)
    return examples


def _psysuicide_item(path: Path, position: int, item: object) -> Example:
    def fail(field: str, problem: str) -> LabelledSetError:
        return LabelledSetError(f"{path}:[{position}]: {field}: {problem}")

    if not isinstance(item, dict):
        raise fail("(item)", "must be a JSON object")
    if not isinstance(item.get("text"), str) or not item["text"].strip():
        raise fail("text", "missing or not a non-empty string")
    if not isinstance(item.get("idx"), int):
        raise fail("idx", "missing or not an integer")
    labels = item.get("labels")
    known = {PSYSUICIDE_UNRELATED, *PSYSUICIDE_CATEGORIES}
    if not isinstance(labels, list) or not labels or not set(labels) <= known:
        raise fail("labels", f"{labels!r}: each must be one of PsySUICIDE's 11 labels")
    risks = [label for label in labels if label in PSYSUICIDE_CATEGORIES]
    if risks and len(risks) != len(labels):
        raise fail("labels", f"{labels!r} mixes a risk label with {PSYSUICIDE_UNRELATED}")
    category = PSYSUICIDE_CATEGORIES[risks[0]] if risks else "unrelated"
    label, level = ("crisis", "crisis") if risks else ("non_crisis", "none")
    source = item.get("data_source")
    stratum = source if isinstance(source, str) else None
    return Example(
        position, item["text"], label, category, [], level, stratum, tuple(labels), str(item["idx"])
    )


def _part_ids(path: Path, part: str | None) -> set[int] | None:
    if part is None:
        return None
    if part not in PARTS:
        raise LabelledSetError(f"part {part!r} is not one of {', '.join(PARTS)}")
    listing = path.parent / f"{part}_idx.txt"
    try:
        return {int(word) for word in listing.read_text(encoding="utf-8").split()}
    except OSError:
        raise LabelledSetError(
            f"{listing}: missing (it lists the items of the {part} part)"
        ) from None
    except ValueError:
        raise LabelledSetError(f"{listing}: each line must be one item idx") from None
