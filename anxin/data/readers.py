"""One reader per source format, each turning a file or folder into canonical records.

Every reader is ``read_<format>(path, *, on_error=None, **options) -> Iterator[dict]``. It
yields records ``{"id": ..., "source": ..., **other metadata, "messages": [...]}`` that remember
the file and line they came from (see record.SourcedRecord). A record the reader cannot build
(bad JSON, a missing field, an unknown role tag) raises DataError naming file, line and field,
unless `on_error` is given: then it is handed the error and reading goes on with the next one.
Roles, empty turns and turn order are checked afterwards by record.check_records, so every
format is judged by the same rules.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from anxin.data.record import (
    BAD_JSON,
    BAD_STRUCTURE,
    NOT_TEXT,
    UNKNOWN_ROLE,
    DataError,
    OnError,
    SourcedRecord,
    short_repr,
)

JSON_PATTERNS = ("*.json", "*.jsonl")

# LLaMA-Factory's column and tag defaults, plus the `system` and `history` columns that
# alpaca files commonly carry (LLaMA-Factory reads those only when dataset_info names them).
ALPACA_COLUMNS = {
    "prompt": "instruction",
    "query": "input",
    "response": "output",
    "system": "system",
    "history": "history",
}
SHAREGPT_COLUMNS = {"messages": "conversations", "system": "system"}
SHAREGPT_TAGS = {
    "role_tag": "from",
    "content_tag": "value",
    "user_tag": "human",
    "assistant_tag": "gpt",
    "system_tag": "system",
}
# Preference data (LLaMA-Factory's `"ranking": true` entries): two answers to one prompt.
PAIR_FIELDS = ("chosen", "rejected")
RANKING_COLUMNS = {"chosen": "chosen", "rejected": "rejected"}
# KTO data: one answer marked good (true) or bad (false), in the record under this key.
KTO_TAG = "kto_tag"
SMILECHAT_ROLES = {"client": "user", "counselor": "assistant"}
CPSYCOUND_USER_LABELS = ("来访者",)
CPSYCOUND_ASSISTANT_LABELS = ("心理咨询师",)

_JSON_SEPARATORS = re.compile(r"[ \t\n\r,]*")


def _report(error: DataError, on_error: OnError | None) -> None:
    if on_error is None:
        raise error
    on_error(error)


# ---------------------------------------------------------------------------------------------
# Files and JSON with line numbers


def _natural_key(path: Path) -> list:
    """Sort `2.json` before `10.json`, as the corpora number their files."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def list_files(path: str | Path, patterns: tuple[str, ...]) -> list[Path]:
    """`path` itself when it is a file; else the matching files in the folder, naturally sorted."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DataError(path, None, "path", "no such file or folder", BAD_STRUCTURE)
    files = [
        p
        for p in path.iterdir()
        if p.is_file() and not p.name.startswith(".") and any(fnmatch(p.name, g) for g in patterns)
    ]
    if not files:
        raise DataError(path, None, "path", f"no {' or '.join(patterns)} files in this folder")
    return sorted(files, key=_natural_key)


def _read_text(file: Path) -> str:
    data = file.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = 1 + data.count(b"\n", 0, error.start)
        raise DataError(file, line, "encoding", _not_utf8(data, error)) from None


def _not_utf8(data: bytes, error: UnicodeDecodeError) -> str:
    """Why the bytes are not UTF-8, with the fix when they are Chinese in GBK (common on Windows)."""
    try:
        data.decode("gb18030")
    except UnicodeDecodeError:
        return f"not UTF-8 text ({error.reason} at byte {error.start})"
    return (
        "not UTF-8 text: it looks like GBK (Chinese Windows); convert it with "
        "iconv -f gbk -t utf-8 FILE > FILE.utf8.jsonl"
    )


def _json_error(file: Path, error: json.JSONDecodeError) -> DataError:
    return DataError(file, error.lineno, "json", f"{error.msg} (column {error.colno})", BAD_JSON)


def iter_json_items(file: Path, on_error: OnError | None = None) -> Iterator[tuple[int, Any]]:
    """Yield (line, item) for each item of a JSON list, or each line of a JSON-lines file.

    A file holding one JSON object (even spread over several lines) counts as one item. A bad
    line in JSON lines goes to `on_error` and reading goes on; a broken JSON list raises, since
    nothing after the break can be located.
    """
    text = _read_text(file)
    head = text.lstrip()[:1]
    if not head:
        raise DataError(file, None, "file", "the file is empty (no JSON in it)", BAD_STRUCTURE)
    if head not in ("[", "{"):
        raise DataError(file, 1, "json", "expected a JSON list or JSON lines of objects", BAD_JSON)
    try:
        whole = json.loads(text)
    except json.JSONDecodeError as error:
        # "Extra data" means one value parsed and more follow: JSON lines.
        if head == "[" and not error.msg.startswith("Extra data"):
            raise _json_error(file, error) from None
        yield from _json_lines_items(file, text, on_error)
        return
    if isinstance(whole, list):
        yield from _json_array_items(text)
    else:
        yield 1 + text.count("\n", 0, text.index("{")), whole


def _json_lines_items(file: Path, text: str, on_error: OnError | None):
    for number, raw in enumerate(text.split("\n"), start=1):
        if not raw.strip():
            continue
        try:
            yield number, json.loads(raw)
        except json.JSONDecodeError as error:
            problem = f"{error.msg} (column {error.colno})"
            _report(DataError(file, number, "json", problem, BAD_JSON), on_error)


def _json_array_items(text: str) -> Iterator[tuple[int, Any]]:
    """The items of a well-formed JSON list, each with the line it starts on."""
    decoder = json.JSONDecoder()
    position = text.index("[") + 1
    line = 1 + text.count("\n", 0, position)
    while True:
        start = _JSON_SEPARATORS.match(text, position).end()
        if text[start] == "]":
            return
        line += text.count("\n", position, start)
        item, position = decoder.raw_decode(text, start)
        yield line, item
        line += text.count("\n", start, position)


# ---------------------------------------------------------------------------------------------
# Shared pieces of the JSON readers


Convert = Callable[[Any, Path, int], dict]


def _read_json_items(path: str | Path, convert: Convert, on_error: OnError | None):
    """Run `convert(item, file, line)` over every item of every JSON file under `path`."""
    for file in list_files(path, JSON_PATTERNS):
        try:
            items = list(iter_json_items(file, on_error))
        except DataError as error:
            _report(error, on_error)
            continue
        for number, (line, item) in enumerate(items, start=1):
            try:
                record = convert(item, file, line)
            except DataError as error:
                _report(error, on_error)
                continue
            yield _sourced(record, file, line, default_id=f"{file.stem}-{number}")


def _sourced(record: dict, file: Path, line: int, default_id: str) -> SourcedRecord:
    """Put `id` and `source` first (keeping the record's own if it has them), messages last."""
    metadata = {key: value for key, value in record.items() if key != "messages"}
    data = {
        "id": metadata.pop("id", default_id),
        "source": metadata.pop("source", str(file)),
        **metadata,
        "messages": record["messages"],
    }
    return SourcedRecord(data, str(file), line)


def _require_object(item: Any, file: Path, line: int, name: str = "record") -> dict:
    if not isinstance(item, dict):
        found = type(item).__name__
        raise DataError(file, line, name, f"must be a JSON object, not {found}", BAD_STRUCTURE)
    return item


def _text(obj: dict, key: str, file: Path, line: int, name: str, required: bool) -> str | None:
    """obj[key] as a string; None when absent and not required."""
    value = obj.get(key)
    if value is None and not required:
        return None
    if value is None:
        raise DataError(file, line, name, "is missing", BAD_STRUCTURE)
    if not isinstance(value, str):
        raise DataError(file, line, name, f"must be a string, not {type(value).__name__}", NOT_TEXT)
    return value


def _metadata(obj: dict, consumed: set[str | None]) -> dict:
    return {key: value for key, value in obj.items() if key not in consumed}


# ---------------------------------------------------------------------------------------------
# The readers


def read_alpaca(
    path: str | Path,
    *,
    columns: dict | None = None,
    ranking: bool = False,
    on_error: OnError | None = None,
) -> Iterator[dict]:
    """Alpaca: ``{"instruction", "input", "output", "system"?, "history"?}`` per item.

    As in LLaMA-Factory the user turn is instruction and input joined by a newline (input only
    when non-empty), and history is a list of [user, assistant] pairs that come before it.
    `columns` renames the keys, with LLaMA-Factory's names: prompt, query, response, system,
    history; and for preference data chosen and rejected (with `ranking`: two answers instead
    of response, see PAIR_FIELDS) or kto_tag (the response marked good or bad, see KTO_TAG).
    """
    names = {**ALPACA_COLUMNS, **(RANKING_COLUMNS if ranking else {}), **(columns or {})}

    def convert(item: Any, file: Path, line: int) -> dict:
        obj = _require_object(item, file, line)
        parts = [
            _text(obj, names[key], file, line, names[key], required=False)
            for key in ("prompt", "query")
        ]
        system = _text(obj, names["system"], file, line, names["system"], required=False)
        messages = [{"role": "system", "content": system}] if system else []
        messages += _alpaca_history(obj.get(names["history"]), names["history"], file, line)
        messages.append({"role": "user", "content": "\n".join(p for p in parts if p)})
        if ranking:
            answers = {
                side: _text(obj, names[side], file, line, names[side], required=True)
                for side in PAIR_FIELDS
            }
            return {**_metadata(obj, set(names.values())), "messages": messages, **answers}
        response = _text(obj, names["response"], file, line, names["response"], required=True)
        messages.append({"role": "assistant", "content": response})
        record = {**_metadata(obj, set(names.values())), "messages": messages}
        return _with_kto_tag(record, obj, names.get("kto_tag"), file, line)

    return _read_json_items(path, convert, on_error)


def _with_kto_tag(record: dict, obj: dict, column: str | None, file: Path, line: int) -> dict:
    """Add KTO's good/bad mark from `column` (only when dataset_info names one)."""
    if column is None:
        return record
    tag = obj.get(column)
    if not isinstance(tag, bool):
        problem = f"must be true or false, not {short_repr(tag)}"
        raise DataError(file, line, column, problem, BAD_STRUCTURE)
    return {**record, KTO_TAG: tag}


def _alpaca_history(history: Any, name: str, file: Path, line: int) -> list[dict]:
    if history is None:
        return []
    if not isinstance(history, list):
        raise DataError(
            file, line, name, "must be a list of [user, assistant] pairs", BAD_STRUCTURE
        )
    messages = []
    for index, pair in enumerate(history):
        if not (isinstance(pair, list) and len(pair) == 2):
            problem = "must be a [user, assistant] pair"
            raise DataError(file, line, f"{name}[{index}]", problem, BAD_STRUCTURE)
        for role, value in zip(("user", "assistant"), pair, strict=True):
            if not isinstance(value, str):
                problem = f"must be strings, not {type(value).__name__}"
                raise DataError(file, line, f"{name}[{index}]", problem, NOT_TEXT)
            messages.append({"role": role, "content": value})
    return messages


def read_sharegpt(
    path: str | Path,
    *,
    columns: dict | None = None,
    tags: dict | None = None,
    ranking: bool = False,
    on_error: OnError | None = None,
) -> Iterator[dict]:
    """ShareGPT: ``{"conversations": [{"from": "human"|"gpt"|"system", "value": ...}], "system"?}``.

    `columns` (messages, system; chosen and rejected with `ranking`; kto_tag) and `tags`
    (role_tag, content_tag, user_tag, assistant_tag, system_tag) take LLaMA-Factory's
    dataset_info names and defaults. As there, a leading system turn wins over the system
    column. With `ranking` the conversation ends with the user's turn and chosen and rejected
    are one assistant turn each (LLaMA-Factory's layout), read into plain texts.
    """
    names = {**SHAREGPT_COLUMNS, **(RANKING_COLUMNS if ranking else {}), **(columns or {})}
    tag = {**SHAREGPT_TAGS, **(tags or {})}
    roles = {tag["user_tag"]: "user", tag["assistant_tag"]: "assistant"}
    roles[tag["system_tag"]] = "system"

    def convert(item: Any, file: Path, line: int) -> dict:
        obj = _require_object(item, file, line)
        turns = obj.get(names["messages"])
        if not isinstance(turns, list):
            problem = "must be a list of turns" if turns is not None else "is missing"
            raise DataError(file, line, names["messages"], problem, BAD_STRUCTURE)
        messages = [
            _sharegpt_turn(turn, f"{names['messages']}[{i}]", tag, roles, file, line)
            for i, turn in enumerate(turns)
        ]
        system_column = names["system"]
        system = _text(obj, system_column, file, line, system_column, required=False)
        if system and not (messages and messages[0]["role"] == "system"):
            messages.insert(0, {"role": "system", "content": system})
        consumed = {names["messages"], system_column}
        if ranking:
            answers = {
                side: _ranked_answer(obj, names[side], tag, roles, file, line)
                for side in PAIR_FIELDS
            }
            consumed |= {names[side] for side in PAIR_FIELDS}
            return {**_metadata(obj, consumed), "messages": messages, **answers}
        record = {**_metadata(obj, consumed | {names.get("kto_tag")}), "messages": messages}
        return _with_kto_tag(record, obj, names.get("kto_tag"), file, line)

    return _read_json_items(path, convert, on_error)


def _ranked_answer(obj: dict, column: str, tag: dict, roles: dict, file: Path, line: int) -> str:
    """A ranking answer: one assistant turn in the file's tags, returned as its text."""
    if column not in obj:
        raise DataError(file, line, column, "is missing", BAD_STRUCTURE)
    turn = _sharegpt_turn(obj[column], column, tag, roles, file, line)
    if turn["role"] != "assistant":
        problem = f"must be an assistant turn ({tag['role_tag']}: {tag['assistant_tag']})"
        raise DataError(file, line, f"{column}.{tag['role_tag']}", problem, UNKNOWN_ROLE)
    return turn["content"]


def _sharegpt_turn(
    turn: Any, name: str, tag: dict, roles: dict, file: Path, line: int
) -> dict[str, str]:
    obj = _require_object(turn, file, line, name)
    role_tag, content_tag = tag["role_tag"], tag["content_tag"]
    role = roles.get(obj.get(role_tag)) if isinstance(obj.get(role_tag), str) else None
    if role is None:
        known = ", ".join(roles)
        problem = f"unknown role {short_repr(obj.get(role_tag))}; expected one of {known}"
        raise DataError(file, line, f"{name}.{role_tag}", problem, UNKNOWN_ROLE)
    content = _text(obj, content_tag, file, line, f"{name}.{content_tag}", required=True)
    return {"role": role, "content": content}


def read_messages(path: str | Path, *, on_error: OnError | None = None) -> Iterator[dict]:
    """OpenAI messages: ``{"messages": [{"role", "content"}, ...], ...metadata}`` per item.

    Items may also be bare lists of messages. Messages pass through as they are; the checks
    judge them.
    """

    def convert(item: Any, file: Path, line: int) -> dict:
        if isinstance(item, list):
            return {"messages": list(item)}
        obj = _require_object(item, file, line)
        messages = obj.get("messages")
        if not isinstance(messages, list):
            problem = "must be a list of messages" if messages is not None else "is missing"
            raise DataError(file, line, "messages", problem, BAD_STRUCTURE)
        return {**obj, "messages": list(messages)}

    return _read_json_items(path, convert, on_error)


def read_smilechat(
    path: str | Path, *, roles: dict | None = None, on_error: OnError | None = None
) -> Iterator[dict]:
    """SMILECHAT: a folder of ``<n>.json``, each a JSON list of turns of one dialogue.

    A turn is ``{"role": "client"|"counselor", "content": ..., ...}``; client is the user and
    counselor the assistant; other keys (annotations) are dropped. The record's id is the file
    name without ``.json``.
    """
    role_of = roles or SMILECHAT_ROLES
    for file in list_files(path, ("*.json",)):
        try:
            messages = [
                _smilechat_turn(turn, f"[{i}]", role_of, file, line)
                for i, (line, turn) in enumerate(_turn_items(file))
            ]
        except DataError as error:
            _report(error, on_error)
            continue
        yield SourcedRecord(
            {"id": file.stem, "source": str(file), "messages": messages}, str(file), 1
        )


def _turn_items(file: Path) -> Iterator[tuple[int, Any]]:
    if _read_text(file).lstrip()[:1] != "[":
        raise DataError(file, 1, "json", "expected a JSON list of turns", BAD_STRUCTURE)
    return iter_json_items(file)


def _smilechat_turn(turn: Any, name: str, role_of: dict, file: Path, line: int) -> dict:
    obj = _require_object(turn, file, line, name)
    role = role_of.get(obj.get("role")) if isinstance(obj.get("role"), str) else None
    if role is None:
        problem = (
            f"unknown role {short_repr(obj.get('role'))}; expected one of {', '.join(role_of)}"
        )
        raise DataError(file, line, f"{name}.role", problem, UNKNOWN_ROLE)
    content = _text(obj, "content", file, line, f"{name}.content", required=True)
    return {"role": role, "content": content}


def read_cpsycound(
    path: str | Path,
    *,
    user_labels: tuple[str, ...] = CPSYCOUND_USER_LABELS,
    assistant_labels: tuple[str, ...] = CPSYCOUND_ASSISTANT_LABELS,
    on_error: OnError | None = None,
) -> Iterator[dict]:
    """CPsyCounD: a folder of ``case_<n>.txt`` (or one such file) of labelled paragraphs.

    A line starting ``来访者：`` opens a user turn and ``心理咨询师：`` an assistant turn (full-width
    or ASCII colon); lines without a label continue the previous turn; blank lines only
    separate paragraphs. The record's id is the file name without ``.txt``.
    """
    role_of = {label: "user" for label in user_labels}
    role_of.update({label: "assistant" for label in assistant_labels})
    alternatives = "|".join(re.escape(label) for label in role_of)
    speaker = re.compile(rf"^({alternatives})\s*[：:]\s*(.*)$")
    for file in list_files(path, ("*.txt",)):
        try:
            messages = _parse_labelled_text(file, speaker, role_of)
        except DataError as error:
            _report(error, on_error)
            continue
        yield SourcedRecord(
            {"id": file.stem, "source": str(file), "messages": messages}, str(file), 1
        )


def _parse_labelled_text(file: Path, speaker: re.Pattern, role_of: dict) -> list[dict]:
    messages: list[dict] = []
    for number, raw in enumerate(_read_text(file).split("\n"), start=1):
        text = raw.strip()
        if not text:
            continue
        match = speaker.match(text)
        if match:
            messages.append({"role": role_of[match[1]], "content": match[2].strip()})
        elif messages:
            previous = messages[-1]
            previous["content"] = f"{previous['content']}\n{text}" if previous["content"] else text
        else:
            labels = "/".join(f"{label}：" for label in role_of)
            problem = f"text before the first speaker label ({labels})"
            raise DataError(file, number, "speaker", problem, BAD_STRUCTURE)
    if not messages:
        raise DataError(file, None, "speaker", "no labelled turns in this file", BAD_STRUCTURE)
    return messages


def read_emollm(path: str | Path, *, on_error: OnError | None = None) -> Iterator[dict]:
    """EmoLLM / XTuner: ``{"conversation": [{"system"?, "input", "output"}, ...]}`` per item.

    The system prompt sits on the first exchange; a later exchange may repeat it but not change
    it, since a canonical dialogue has one leading system turn.
    """

    def convert(item: Any, file: Path, line: int) -> dict:
        obj = _require_object(item, file, line)
        exchanges = obj.get("conversation")
        if not isinstance(exchanges, list):
            problem = "must be a list of exchanges" if exchanges is not None else "is missing"
            raise DataError(file, line, "conversation", problem, BAD_STRUCTURE)
        messages: list[dict] = []
        first_system = None
        for index, exchange in enumerate(exchanges):
            name = f"conversation[{index}]"
            exchange = _require_object(exchange, file, line, name)
            system = _text(exchange, "system", file, line, f"{name}.system", required=False)
            if index == 0 and system:
                first_system = system
                messages.append({"role": "system", "content": system})
            elif system and system != first_system:
                problem = "a different system prompt after the first exchange is not supported"
                raise DataError(file, line, f"{name}.system", problem, BAD_STRUCTURE)
            for key, role in (("input", "user"), ("output", "assistant")):
                content = _text(exchange, key, file, line, f"{name}.{key}", required=True)
                messages.append({"role": role, "content": content})
        return {**_metadata(obj, {"conversation"}), "messages": messages}

    return _read_json_items(path, convert, on_error)


READERS: dict[str, Callable[..., Iterator[dict]]] = {
    "alpaca": read_alpaca,
    "sharegpt": read_sharegpt,
    "messages": read_messages,
    "smilechat": read_smilechat,
    "cpsycound": read_cpsycound,
    "emollm": read_emollm,
}

# Corpora whose known quirks (one speaker twice in a row, a last unanswered client turn)
# check_records repairs by default; for other formats such records are reported instead.
REPAIR_BY_DEFAULT = frozenset({"smilechat", "cpsycound"})


# ---------------------------------------------------------------------------------------------
# Format detection


def detect_format(path: str | Path) -> str:
    """Guess the format of a file or folder from its layout and the keys of its first item."""
    path = Path(path)
    if path.is_dir() and any(path.glob("*.txt")) and not any(path.glob("*.json*")):
        return "cpsycound"
    if path.is_file() and path.suffix == ".txt":
        return "cpsycound"
    first = list_files(path, JSON_PATTERNS)[0]
    for line, item in iter_json_items(first):
        return _format_of_item(item, first, line)
    raise DataError(first, None, "format", "the file holds no records")


def _format_of_item(item: Any, file: Path, line: int) -> str:
    if isinstance(item, list):
        return "messages"
    if not isinstance(item, dict):
        raise DataError(file, line, "format", "the first item is not a JSON object")
    if item.get("role") in SMILECHAT_ROLES:
        return "smilechat"
    for key, fmt in (
        ("messages", "messages"),
        ("conversations", "sharegpt"),
        ("conversation", "emollm"),
        ("instruction", "alpaca"),
        ("output", "alpaca"),
    ):
        if key in item:
            return fmt
    keys = ", ".join(sorted(map(str, item))[:8])
    problem = f"cannot tell the format from the keys ({keys}); pass one of {', '.join(READERS)}"
    raise DataError(file, line, "format", problem)


def read_records(path: str | Path, fmt: str = "auto", **options: Any) -> Iterator[dict]:
    """Read `path` with the reader for `fmt` ("auto" detects it)."""
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt not in READERS:
        raise DataError(path, None, "format", f"unknown format {fmt!r}; use {', '.join(READERS)}")
    return READERS[fmt](path, **options)
