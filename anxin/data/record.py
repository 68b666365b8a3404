"""The canonical conversation record, and the checks every record passes before training.

A record is a dict ``{"messages": [{"role": ..., "content": ...}, ...], **metadata}``: the
OpenAI messages layout, stored one JSON object a line in a ``.jsonl`` file. Roles are
``system`` (at most one, first), then ``user`` and ``assistant`` alternating, ending with
``assistant``. Other keys (``id``, ``source``, ``topic``...) are metadata: they travel with the
record and training and evaluation ignore them.

Problems are reported as ``FILE:LINE: field: problem`` and never quote conversation text.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from anxin.errors import DataError

ROLES = ("system", "user", "assistant")

# Short reasons used to count skipped records; the DataError message carries the details.
BAD_JSON = "bad JSON"
BAD_STRUCTURE = "bad structure"
UNKNOWN_ROLE = "unknown role"
NOT_TEXT = "content is not text"
EMPTY_CONTENT = "empty content"
MISPLACED_SYSTEM = "misplaced system turn"
NOT_ALTERNATING = "roles do not alternate"
NO_FINAL_ANSWER = "does not end with an assistant reply"

# Kinds of repair counted by check_records(repair=True).
MERGED_TURNS = "merged consecutive turns of one speaker"
DROPPED_LAST_USER = "dropped an unanswered last user turn"


OnError = Callable[[DataError], None]


class SourcedRecord(dict):
    """A record that remembers the file and line it was read from.

    The location lives in attributes, not keys, so writing the record as JSON never writes it
    and a record's own ``source`` metadata is never overwritten.
    """

    __slots__ = ("file", "line")

    def __init__(self, data: dict, file: str | None = None, line: int | None = None) -> None:
        super().__init__(data)
        self.file = file
        self.line = line


def location(record: object, default_line: int | None = None) -> tuple[str | None, int | None]:
    """Where `record` came from: (file, line) for a SourcedRecord, else (None, default_line)."""
    if isinstance(record, SourcedRecord):
        return record.file, record.line
    return None, default_line


def short_repr(value: object, limit: int = 12) -> str:
    """Name a bad value (a role tag) without ever quoting conversation text.

    Short strings and scalars are shown as they are; longer strings, which may be text that
    ended up in the wrong field, only by their length.
    """
    if isinstance(value, str):
        return repr(value) if len(value) <= limit else f"a text of {len(value)} characters"
    if value is None or isinstance(value, int | float | bool):
        return repr(value)
    return f"a {type(value).__name__}"


def record_problem(
    record: object, file: str | None = None, line: int | None = None
) -> DataError | None:
    """The first problem that keeps `record` from being a valid training dialogue, or None."""

    def problem(field_name: str, text: str, reason: str) -> DataError:
        return DataError(file, line, field_name, text, reason)

    if not isinstance(record, dict):
        return problem("record", "must be a JSON object", BAD_STRUCTURE)
    messages = record.get("messages")
    if not isinstance(messages, list) or not messages:
        return problem("messages", "must be a non-empty list of messages", BAD_STRUCTURE)
    for index, message in enumerate(messages):
        found = _message_problem(message, f"messages[{index}]")
        if found:
            return problem(*found)
    return _order_problem(messages, problem)


def _message_problem(message: object, name: str) -> tuple[str, str, str] | None:
    if not isinstance(message, dict):
        return name, "must be an object with role and content", BAD_STRUCTURE
    role = message.get("role")
    if role not in ROLES:
        return (
            f"{name}.role",
            f"unknown role {short_repr(role)}; use system, user or assistant",
            UNKNOWN_ROLE,
        )
    content = message.get("content")
    if not isinstance(content, str):
        return f"{name}.content", f"must be a string, not {type(content).__name__}", NOT_TEXT
    if not content.strip():
        return f"{name}.content", "is empty", EMPTY_CONTENT
    return None


def _order_problem(messages: list[dict], problem: Callable[..., DataError]) -> DataError | None:
    start = 1 if messages[0]["role"] == "system" else 0
    for index in range(start, len(messages)):
        expected = "user" if (index - start) % 2 == 0 else "assistant"
        role = messages[index]["role"]
        if role == expected:
            continue
        name = f"messages[{index}].role"
        if role == "system":
            return problem(name, "a system turn may only come first", MISPLACED_SYSTEM)
        after = f"after {messages[index - 1]['role']}" if index else "first"
        return problem(name, f"expected {expected} {after}, got {role}", NOT_ALTERNATING)
    if len(messages) - start < 2 or messages[-1]["role"] != "assistant":
        last = len(messages) - 1
        return problem(
            f"messages[{last}].role",
            "the dialogue must end with an assistant reply",
            NO_FINAL_ANSWER,
        )
    return None


def validate_record(record: object, file: str | None = None, line: int | None = None) -> None:
    """Raise DataError for the first problem in `record`."""
    found = record_problem(record, file, line)
    if found:
        raise found


def repair_messages(messages: list[dict]) -> tuple[list[dict], list[str]]:
    """Fix the two quirks real corpora have: one speaker twice in a row, a last unanswered turn.

    Consecutive user (or assistant) turns are joined with a newline, and a trailing user turn is
    dropped, so the dialogue still trains on every answer it has. Returns the new messages and
    the repairs made. Messages that are not well-formed are returned unchanged for the checks
    to report.
    """
    if any(_message_problem(m, "") for m in messages):
        return messages, []
    repaired: list[dict] = []
    repairs: list[str] = []
    for message in messages:
        previous = repaired[-1] if repaired else None
        if previous and previous["role"] == message["role"] != "system":
            previous["content"] = previous["content"] + "\n" + message["content"]
            repairs.append(MERGED_TURNS)
        else:
            repaired.append({"role": message["role"], "content": message["content"]})
    if len(repaired) > 1 and repaired[-1]["role"] == "user":
        repaired.pop()
        repairs.append(DROPPED_LAST_USER)
    return repaired, repairs


def canonical_messages(messages: list[dict]) -> list[dict]:
    """Only role and content: extra keys on messages (annotations, names) are dropped."""
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def messages_key(messages: list[dict]) -> str:
    """A digest of the messages alone, used to find exact duplicates."""
    text = json.dumps(messages, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class CheckReport:
    """What happened to a stream of records: kept, dropped as duplicates, skipped by reason.

    Pass `add_problem` to a reader as its `on_error` so that records a reader cannot even build
    (bad JSON, unknown role tags) are counted with the rest.
    """

    skip_invalid: bool = False
    kept: int = 0
    duplicates: int = 0
    skipped: Counter = field(default_factory=Counter)
    repaired: Counter = field(default_factory=Counter)
    problems: list[DataError] = field(default_factory=list)

    @property
    def read(self) -> int:
        return self.kept + self.duplicates + sum(self.skipped.values())

    def add_problem(self, error: DataError) -> None:
        """Record a problem; raise it unless invalid records are being skipped."""
        if not self.skip_invalid:
            raise error
        self.problems.append(error)
        self.skipped[error.reason] += 1

    def summary(self) -> str:
        lines = [
            f"read {self.read}, kept {self.kept}, duplicates dropped {self.duplicates}, "
            f"skipped {sum(self.skipped.values())}"
        ]
        lines += [f"  skipped ({reason}): {n}" for reason, n in sorted(self.skipped.items())]
        lines += [f"  repaired ({kind}): {n}" for kind, n in sorted(self.repaired.items())]
        return "\n".join(lines)


def check_records(
    records: Iterable[object],
    *,
    skip_invalid: bool = False,
    repair: bool = False,
    report: CheckReport | None = None,
) -> tuple[list[dict], CheckReport]:
    """Validate, optionally repair, and de-duplicate a stream of records.

    With `skip_invalid` False the first problem raises DataError, so callers that write only
    after this returns write nothing. With it True, invalid records are skipped and counted by
    reason in the returned report. Exact duplicates (same messages) are always dropped and
    counted. Kept records have canonical messages (role and content only) and keep their
    metadata and source location.
    """
    report = report or CheckReport(skip_invalid=skip_invalid)
    seen: set[str] = set()
    kept: list[dict] = []
    for index, record in enumerate(records, start=1):
        file, line = location(record, default_line=None)
        if file is None:
            file = f"<record {index}>"
        if repair and isinstance(record, dict) and isinstance(record.get("messages"), list):
            messages, repairs = repair_messages(record["messages"])
            record = _with_messages(record, messages)
            report.repaired.update(repairs)
        found = record_problem(record, file, line)
        if found:
            report.add_problem(found)
            continue
        record = _with_messages(record, canonical_messages(record["messages"]))
        key = messages_key(record["messages"])
        if key in seen:
            report.duplicates += 1
            continue
        seen.add(key)
        kept.append(record)
    report.kept += len(kept)
    return kept, report


def _with_messages(record: dict, messages: list[dict]) -> dict:
    """A copy of `record` with new messages, keeping key order and the source location."""
    data = {key: (messages if key == "messages" else value) for key, value in record.items()}
    if isinstance(record, SourcedRecord):
        return SourcedRecord(data, record.file, record.line)
    return data
