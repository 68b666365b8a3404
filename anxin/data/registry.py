"""dataset_info.json: named datasets, in LLaMA-Factory's layout, so existing registries work.

An entry names a local file or folder (``file_name``, relative to the dataset folder) and how
to read it (``formatting`` with ``columns`` and ``tags``), plus ``num_samples`` to sub- or
over-sample it. Our canonical JSONL registers exactly as LLaMA-Factory registers OpenAI-style
data (see CANONICAL_ENTRY). Besides LLaMA-Factory's ``alpaca`` and ``sharegpt``, ``formatting``
may name any of our readers (``messages``, ``smilechat``, ``cpsycound``, ``emollm``), so a raw
corpus can be registered as it is.

Preference data registers as in LLaMA-Factory: ``"ranking": true`` with ``chosen`` and
``rejected`` columns (pairs for stage dpo), or a ``kto_tag`` column (answers marked good or bad
for stage kto); see anxin.data.preference for the records they become.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
from pathlib import Path
from typing import Any

from anxin.atomic import write_json
from anxin.data.preference import check_preferences
from anxin.data.readers import READERS, REPAIR_BY_DEFAULT
from anxin.data.record import CheckReport, check_records
from anxin.data.split import oversample
from anxin.errors import DataError

log = logging.getLogger(__name__)

DATASET_INFO = "dataset_info.json"

CANONICAL_ENTRY_TEMPLATE: dict[str, Any] = {
    "formatting": "sharegpt",
    "columns": {"messages": "messages"},
    "tags": {
        "role_tag": "role",
        "content_tag": "content",
        "user_tag": "user",
        "assistant_tag": "assistant",
        "system_tag": "system",
    },
}

# LLaMA-Factory keys we honour, keys we can ignore safely, and keys that need what we do not do
# (hub downloads, multimodal columns).
_USED_KEYS = {"file_name", "formatting", "columns", "tags", "num_samples", "ranking"}
_IGNORED_KEYS = {"file_sha1"}
_UNSUPPORTED_KEYS = {
    "hf_hub_url": "download hub datasets first (anxin data download) and name the local file",
    "ms_hub_url": "download hub datasets first (anxin data download) and name the local file",
    "om_hub_url": "download hub datasets first (anxin data download) and name the local file",
    "script_url": "loading scripts are not run; convert the data to a file",
    "cloud_file_name": "copy the file locally and use file_name",
    "subset": "subsets apply to hub datasets only",
    "folder": "folders apply to hub datasets only; point file_name at the folder",
    "split": "local files have a single split",
}
_COLUMNS = {
    "alpaca": {"prompt", "query", "response", "system", "history", "kto_tag"},
    "sharegpt": {"messages", "system", "kto_tag"},
}
# A `"ranking": true` entry (preference pairs) names two answers instead of one.
_RANKING_COLUMNS = {
    "alpaca": {"prompt", "query", "chosen", "rejected", "system", "history"},
    "sharegpt": {"messages", "chosen", "rejected", "system"},
}
_TAGS = {
    "role_tag",
    "content_tag",
    "user_tag",
    "assistant_tag",
    "system_tag",
    "observation_tag",  # LLaMA-Factory's tool-use tags: allowed, but such turns are rejected
    "function_tag",
}


def canonical_entry(file_name: str) -> dict[str, Any]:
    """The dataset_info entry for a canonical messages JSONL file."""
    return {"file_name": file_name, **json.loads(json.dumps(CANONICAL_ENTRY_TEMPLATE))}


def info_path(dataset_dir: str | os.PathLike) -> Path:
    return Path(dataset_dir) / DATASET_INFO


def load_dataset_info(dataset_dir: str | os.PathLike) -> dict[str, dict]:
    """The entries of DATASET_DIR/dataset_info.json; empty when the file does not exist yet."""
    path = info_path(dataset_dir)
    if not path.exists():
        return {}
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        problem = f"{error.msg} (column {error.colno})"
        raise DataError(path, error.lineno, "json", problem) from None
    if not isinstance(info, dict):
        raise DataError(path, 1, "json", "must be an object of dataset entries")
    return info


def check_entry(name: str, entry: Any, where: Path) -> None:
    """Raise DataError naming the key when `entry` is not one anxin can read."""
    if not isinstance(entry, dict):
        raise DataError(where, None, name, "entry must be an object")
    for key, value in entry.items():
        if key in _UNSUPPORTED_KEYS and not (key == "split" and value == "train"):
            raise DataError(
                where, None, f"{name}.{key}", f"not supported: {_UNSUPPORTED_KEYS[key]}"
            )
        if key not in _USED_KEYS | _IGNORED_KEYS | _UNSUPPORTED_KEYS.keys():
            raise DataError(where, None, f"{name}.{key}", _unknown(key, _USED_KEYS))
    if not isinstance(entry.get("file_name"), str) or not entry["file_name"]:
        raise DataError(where, None, f"{name}.file_name", "is missing")
    formatting = entry.get("formatting", "alpaca")
    if formatting not in READERS:
        problem = f"unknown formatting {formatting!r}; use one of {', '.join(READERS)}"
        raise DataError(where, None, f"{name}.formatting", problem)
    ranking = entry.get("ranking", False)
    if not isinstance(ranking, bool):
        raise DataError(where, None, f"{name}.ranking", "must be true or false")
    if ranking and formatting not in _RANKING_COLUMNS:
        problem = "preference pairs are read in the alpaca or sharegpt formatting"
        raise DataError(where, None, f"{name}.ranking", problem)
    columns = (_RANKING_COLUMNS if ranking else _COLUMNS).get(formatting, set())
    _check_mapping(name, "columns", entry.get("columns"), columns, where)
    tags_allowed = _TAGS if formatting == "sharegpt" else set()
    _check_mapping(name, "tags", entry.get("tags"), tags_allowed, where)
    samples = entry.get("num_samples")
    if samples is not None and not (isinstance(samples, int) and samples > 0):
        raise DataError(where, None, f"{name}.num_samples", "must be a positive integer")


def _check_mapping(name: str, key: str, value: Any, allowed: set[str], where: Path) -> None:
    if value is None:
        return
    if not isinstance(value, dict):
        raise DataError(where, None, f"{name}.{key}", "must be an object")
    for inner, target in value.items():
        field = f"{name}.{key}.{inner}"
        if inner not in allowed:
            raise DataError(
                where,
                None,
                field,
                _unknown(inner, allowed) if allowed else (f"this formatting takes no {key}"),
            )
        if not isinstance(target, str):
            raise DataError(where, None, field, "must be a string")


def _unknown(key: str, valid: set[str]) -> str:
    close = difflib.get_close_matches(key, sorted(valid), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; valid: {', '.join(sorted(valid))}"
    return f"unknown key {key!r}{hint}"


def dataset_kind(entry: dict) -> str:
    """What an entry holds: "pair" (ranking), "kto" (answers tagged good or bad) or
    "conversation" (supervised fine-tuning)."""
    if entry.get("ranking"):
        return "pair"
    if "kto_tag" in (entry.get("columns") or {}):
        return "kto"
    return "conversation"


def register_dataset(dataset_dir: str | os.PathLike, name: str, entry: dict) -> Path:
    """Add or replace `name` in DATASET_DIR/dataset_info.json, keeping the other entries.

    The file is rewritten atomically. Returns its path.
    """
    path = info_path(dataset_dir)
    if not name or "," in name or name != name.strip():
        raise DataError(path, None, "name", f"{name!r} is not a usable name (no commas or spaces)")
    check_entry(name, entry, path)
    info = load_dataset_info(dataset_dir)
    info[name] = entry
    write_json(path, info)
    return path


def dataset_names(names: str | list[str]) -> list[str]:
    """Split "a,b" (or a list of such strings) into names, in order."""
    parts = [names] if isinstance(names, str) else list(names)
    return [name.strip() for part in parts for name in part.split(",") if name.strip()]


def load_datasets(
    names: str | list[str],
    dataset_dir: str | os.PathLike = "data",
    *,
    skip_invalid: bool = False,
    seed: int = 42,
) -> list[dict]:
    """Read, check and merge the named datasets, in the order given.

    Each dataset is checked on its own (duplicates inside it are dropped; with `skip_invalid`
    False its first invalid record raises), then sampled to its ``num_samples``.
    """
    path = info_path(dataset_dir)
    info = load_dataset_info(dataset_dir)
    wanted = dataset_names(names)
    if not wanted:
        raise DataError(path, None, "dataset", "no dataset named")
    for name in wanted:
        if name not in info:
            raise DataError(path, None, "dataset", _unknown_dataset(name, info, path))
    records: list[dict] = []
    for name in wanted:
        records += read_dataset(name, info[name], dataset_dir, skip_invalid=skip_invalid, seed=seed)
    return records


def _unknown_dataset(name: str, info: dict, path: Path) -> str:
    if not info:
        where = "it does not exist" if not path.exists() else "it is empty"
        return f"unknown dataset {name!r}: no datasets are registered ({where})"
    return f"unknown dataset {name!r}; registered: {', '.join(info)}"


def read_dataset(
    name: str,
    entry: dict,
    dataset_dir: str | os.PathLike,
    *,
    skip_invalid: bool = False,
    seed: int = 42,
) -> list[dict]:
    """Read one registered dataset: its reader, the checks, then num_samples."""
    check_entry(name, entry, info_path(dataset_dir))
    formatting = entry.get("formatting", "alpaca")
    options = {key: entry[key] for key in ("columns", "tags", "ranking") if entry.get(key)}
    report = CheckReport(skip_invalid=skip_invalid)
    source = Path(dataset_dir) / entry["file_name"]
    stream = READERS[formatting](source, on_error=report.add_problem, **options)
    kind = dataset_kind(entry)
    if kind == "conversation":
        repair = formatting in REPAIR_BY_DEFAULT
        records, report = check_records(
            stream, skip_invalid=skip_invalid, repair=repair, report=report
        )
    else:
        records, report = check_preferences(stream, kind, report)
    log.info("dataset %s: %s", name, report.summary().replace("\n", ";"))
    if entry.get("num_samples"):
        records = oversample(records, entry["num_samples"], seed)
    return records
