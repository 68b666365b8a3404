"""Sampling, the validation split and the dataset fingerprint, reproducible anywhere.

Choices are made by ranking records on sha256(seed, record messages), never Python's hash()
(randomised per process) nor a random generator's stream (which may change between Python
versions). So the same records and seed give the same subset and split in every run, process
and machine, and a record keeps its side of the split when others are added or reordered.
Selected records keep their original order.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence


def _canonical_json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _rank(records: Sequence[dict], seed: int) -> list[int]:
    """Indices of `records` in a seeded pseudo-random order that depends only on content."""

    def key(index: int) -> tuple[str, int]:
        text = f"{seed}\n{_canonical_json(records[index].get('messages'))}"
        return hashlib.sha256(text.encode("utf-8")).hexdigest(), index

    return sorted(range(len(records)), key=key)


def select_samples(
    records: Sequence[dict], max_samples: int | None, seed: int | None = 42
) -> list[dict]:
    """At most `max_samples` records, chosen by seed and kept in their original order.

    `max_samples` None keeps everything. `seed` None takes the first `max_samples`, as
    LLaMA-Factory's max_samples does.
    """
    if max_samples is not None and max_samples < 0:
        raise ValueError(f"max_samples must be ≥ 0, got {max_samples}")
    if max_samples is None or max_samples >= len(records):
        return list(records)
    if seed is None:
        return list(records[:max_samples])
    chosen = sorted(_rank(records, seed)[:max_samples])
    return [records[index] for index in chosen]


def oversample(records: Sequence[dict], num_samples: int, seed: int = 42) -> list[dict]:
    """Exactly `num_samples` records: a subset when fewer, whole copies plus a subset when more.

    This is LLaMA-Factory's ``num_samples`` in dataset_info.json.
    """
    if not records:
        return []
    copies, remainder = divmod(num_samples, len(records))
    return list(records) * copies + select_samples(records, remainder, seed)


def validation_count(total: int, val_size: float | int) -> int:
    """How many of `total` records go to validation for `val_size` (fraction or count)."""
    if isinstance(val_size, bool) or val_size < 0:
        raise ValueError(f"val_size must be a fraction in (0, 1) or a count ≥ 1, got {val_size}")
    if val_size == 0 or total < 2:
        return 0
    if val_size < 1:
        wanted = math.ceil(total * val_size)
    elif float(val_size).is_integer():
        wanted = int(val_size)
    else:
        raise ValueError(f"val_size above 1 must be a whole count, got {val_size}")
    return min(max(wanted, 1), total - 1)  # keep at least one training record


def split_validation(
    records: Sequence[dict], val_size: float | int = 0.1, seed: int = 42
) -> tuple[list[dict], list[dict]]:
    """Split `records` into (train, validation), deterministically for a given seed.

    `val_size` is a fraction in (0, 1) (rounded up) or a count ≥ 1. With `val_size` > 0 and at
    least two records, validation gets at least one and training keeps at least one. Apply
    max_samples (select_samples) before splitting.
    """
    count = validation_count(len(records), val_size)
    held_out = set(_rank(records, seed)[:count])
    train = [r for i, r in enumerate(records) if i not in held_out]
    validation = [r for i, r in enumerate(records) if i in held_out]
    return train, validation


def dataset_fingerprint(records: Sequence[dict]) -> str:
    """sha256 of the records' messages, in order, as canonical JSON.

    Only messages count: metadata (ids, source paths) is ignored by training, so changing it
    must not change the fingerprint that training records in run.json and caches by.
    """
    digest = hashlib.sha256()
    for record in records:
        digest.update(_canonical_json(record["messages"]).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()
