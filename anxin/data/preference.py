"""Preference records, and the checks they pass before preference training.

A *pair* (DPO, ORPO, SimPO) is ``{"messages": [...], "chosen": TEXT, "rejected": TEXT}``: the
conversation so far, ending with the user's turn, and two answers to it, the better first. It is
what the readers make of LLaMA-Factory's `"ranking": true` datasets (alpaca's chosen/rejected
columns, sharegpt's chosen/rejected turns). A *KTO example* is an ordinary conversation whose
last answer is marked good or bad: ``{"messages": [...], "kto_tag": true|false}``.

Problems are reported as ``FILE:LINE: field: problem``, never quoting the text, as for
conversations (anxin.data.record).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable

from anxin.data.readers import KTO_TAG, PAIR_FIELDS
from anxin.data.record import (
    BAD_STRUCTURE,
    EMPTY_CONTENT,
    NOT_TEXT,
    CheckReport,
    SourcedRecord,
    canonical_messages,
    location,
    record_problem,
)
from anxin.errors import DataError

NO_USER_TURN = "the prompt does not end with a user turn"


def is_pair(record: dict) -> bool:
    return all(side in record for side in PAIR_FIELDS)


def is_kto_example(record: dict) -> bool:
    return isinstance(record.get(KTO_TAG), bool)


def pair_problem(record: object, file: str | None = None, line: int | None = None):
    """The first problem that keeps `record` from being a valid pair, or None."""
    if not isinstance(record, dict):
        return DataError(file, line, "record", "must be a JSON object", BAD_STRUCTURE)
    for side in PAIR_FIELDS:
        answer = record.get(side)
        if not isinstance(answer, str):
            found = "missing" if answer is None else type(answer).__name__
            problem = f"must be the answer's text, not {found}"
            return DataError(file, line, side, problem, NOT_TEXT)
        if not answer.strip():
            return DataError(file, line, side, "is empty", EMPTY_CONTENT)
    prompt = record.get("messages")
    if not isinstance(prompt, list) or not prompt:
        problem = "must be a non-empty list of messages"
        return DataError(file, line, "messages", problem, BAD_STRUCTURE)
    # The prompt plus either answer is a conversation; judge that with the common rules.
    answered = {"messages": [*prompt, {"role": "assistant", "content": record["chosen"]}]}
    found = record_problem(answered, file, line)
    if found is not None and found.field.startswith(f"messages[{len(prompt)}]"):
        problem = "must end with the user's turn that chosen and rejected answer"
        return DataError(file, line, "messages", problem, NO_USER_TURN)
    return found


def kto_problem(record: object, file: str | None = None, line: int | None = None):
    """The first problem that keeps `record` from being a KTO example, or None."""
    found = record_problem(record, file, line)
    if found is None and not is_kto_example(record):
        problem = "must be true (a good last answer) or false (a bad one)"
        found = DataError(file, line, KTO_TAG, problem, BAD_STRUCTURE)
    return found


def preference_key(record: dict) -> str:
    """A digest of what trains: the prompt, the answers and the tag (not the metadata)."""
    trained = {key: record.get(key) for key in ("messages", *PAIR_FIELDS, KTO_TAG)}
    text = json.dumps(trained, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def preference_fingerprint(records: Iterable[dict]) -> str:
    """sha256 over what trains in every record, in order (for run.json and the token cache)."""
    digest = hashlib.sha256()
    for record in records:
        digest.update(preference_key(record).encode("ascii"))
    return digest.hexdigest()


def check_preferences(
    records: Iterable[object], kind: str, report: CheckReport
) -> tuple[list[dict], CheckReport]:
    """Validate and de-duplicate pairs (`kind` "pair") or KTO examples (`kind` "kto").

    As `anxin.data.record.check_records`: the first problem raises unless the report skips
    invalid records; exact duplicates are dropped and counted; messages keep role and content.
    """
    problem_of = pair_problem if kind == "pair" else kto_problem
    seen: set[str] = set()
    kept: list[dict] = []
    for index, record in enumerate(records, start=1):
        file, line = location(record)
        found = problem_of(record, file or f"<record {index}>", line)
        if found is not None:
            report.add_problem(found)
            continue
        record = _canonical(record)
        key = preference_key(record)
        if key in seen:
            report.duplicates += 1
            continue
        seen.add(key)
        kept.append(record)
    report.kept += len(kept)
    return kept, report


def _canonical(record: dict) -> dict:
    data = {**record, "messages": canonical_messages(record["messages"])}
    if isinstance(record, SourcedRecord):
        return SourcedRecord(data, record.file, record.line)
    return data
