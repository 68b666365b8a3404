"""Sampling and the validation split are deterministic, across runs and processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from anxin.data.split import (
    dataset_fingerprint,
    oversample,
    select_samples,
    split_validation,
    validation_count,
)

REPO = Path(__file__).resolve().parents[1]


def make_records(n: int) -> list[dict]:
    return [
        {
            "id": i,
            "messages": [
                {"role": "user", "content": f"问题{i}"},
                {"role": "assistant", "content": f"回答{i}"},
            ],
        }
        for i in range(n)
    ]


def ids(records: list[dict]) -> list[int]:
    return [r["id"] for r in records]


def test_split_is_deterministic_disjoint_and_ordered():
    records = make_records(50)
    train, val = split_validation(records, 0.1, seed=42)
    again_train, again_val = split_validation(make_records(50), 0.1, seed=42)
    assert (ids(train), ids(val)) == (ids(again_train), ids(again_val))
    assert len(val) == 5 and len(train) == 45
    assert sorted(ids(train) + ids(val)) == list(range(50))
    assert ids(val) == sorted(ids(val)) and ids(train) == sorted(ids(train))
    assert ids(val) != ids(split_validation(records, 0.1, seed=7)[1])
    assert ids(val) != [0, 1, 2, 3, 4]  # chosen, not the first ones


def test_split_does_not_depend_on_input_order():
    records = make_records(30)
    _, val = split_validation(records, 0.2, seed=1)
    _, val_reversed = split_validation(records[::-1], 0.2, seed=1)
    assert sorted(ids(val)) == sorted(ids(val_reversed))


@pytest.mark.parametrize(
    ("total", "val_size", "expected"),
    [
        (100, 0.1, 10),
        (11, 0.1, 2),
        (5, 0.01, 1),
        (2, 0.5, 1),
        (10, 3, 3),
        (10, 3.0, 3),
        (10, 50, 9),
        (1, 0.5, 0),
        (0, 0.1, 0),
        (10, 0, 0),
    ],
)
def test_validation_count(total, val_size, expected):
    assert validation_count(total, val_size) == expected


@pytest.mark.parametrize("bad", [-0.1, 1.5, True])
def test_validation_count_rejects_bad_sizes(bad):
    with pytest.raises(ValueError, match="val_size"):
        validation_count(10, bad)


def test_max_samples_comes_before_the_split():
    records = make_records(40)
    chosen = select_samples(records, 20, seed=3)
    assert len(chosen) == 20 and ids(chosen) == sorted(ids(chosen))
    assert ids(chosen) == ids(select_samples(make_records(40), 20, seed=3))
    train, val = split_validation(chosen, 0.25, seed=3)
    assert set(ids(train + val)) == set(ids(chosen)) and len(val) == 5
    assert select_samples(records, None, seed=3) == records
    assert select_samples(records, 100, seed=3) == records
    assert ids(select_samples(records, 3, seed=None)) == [0, 1, 2]  # LLaMA-Factory's way
    with pytest.raises(ValueError):
        select_samples(records, -1)


def test_oversample_reaches_exactly_num_samples():
    records = make_records(4)
    assert len(oversample(records, 10, seed=0)) == 10
    assert ids(oversample(records, 10, seed=0))[:8] == [0, 1, 2, 3, 0, 1, 2, 3]
    assert len(oversample(records, 2, seed=0)) == 2
    assert oversample([], 5) == []


def test_fingerprint_covers_messages_and_order_only():
    records = make_records(5)
    base = dataset_fingerprint(records)
    assert len(base) == 64 and base == dataset_fingerprint(make_records(5))
    renamed = [dict(r, id=f"x{r['id']}", source="elsewhere") for r in records]
    assert dataset_fingerprint(renamed) == base
    assert dataset_fingerprint(records[::-1]) != base
    changed = make_records(5)
    changed[2]["messages"][1]["content"] += "。"
    assert dataset_fingerprint(changed) != base


def test_same_split_in_fresh_processes_with_different_hash_seeds():
    code = (
        "import json; from anxin.data.split import select_samples, split_validation, "
        "dataset_fingerprint\n"
        "rs = [{'id': i, 'messages': [{'role': 'user', 'content': f'问题{i}'}, "
        "{'role': 'assistant', 'content': f'回答{i}'}]} for i in range(60)]\n"
        "rs = select_samples(rs, 40, seed=5)\n"
        "train, val = split_validation(rs, 0.2, seed=5)\n"
        "print(json.dumps([[r['id'] for r in val], dataset_fingerprint(train)]))"
    )
    outputs = []
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(REPO)}
        result = subprocess.run(
            [sys.executable, "-c", code],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            cwd=REPO,
        )
        outputs.append(json.loads(result.stdout))
    assert outputs[0] == outputs[1]
    records = select_samples(make_records(60), 40, seed=5)
    train, val = split_validation(records, 0.2, seed=5)
    assert outputs[0] == [ids(val), dataset_fingerprint(train)]
