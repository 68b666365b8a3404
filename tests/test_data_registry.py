"""dataset_info.json: register, load by name, merge "a,b", LLaMA-Factory keys."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from anxin.data.record import DataError
from anxin.data.registry import (
    canonical_entry,
    check_entry,
    load_dataset_info,
    load_datasets,
    register_dataset,
)

CORPORA = Path(__file__).parent / "fixtures" / "corpora"


@pytest.fixture
def dataset_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    shutil.copytree(CORPORA, folder)
    return folder


def first_user_turns(records: list[dict]) -> list[str]:
    return [next(m["content"] for m in r["messages"] if m["role"] == "user") for r in records]


def test_register_keeps_other_entries_and_rewrites_atomically(dataset_dir):
    info_file = dataset_dir / "dataset_info.json"
    info_file.write_text(json.dumps({"theirs": {"file_name": "x.json", "extra": 1}}), "utf-8")
    register_dataset(dataset_dir, "mine", canonical_entry("messages.jsonl"))
    register_dataset(dataset_dir, "alp", {"file_name": "alpaca.json"})
    info = load_dataset_info(dataset_dir)
    assert list(info) == ["theirs", "mine", "alp"]
    assert info["theirs"] == {"file_name": "x.json", "extra": 1}  # untouched, even if odd
    assert info["mine"]["tags"]["role_tag"] == "role"
    assert [p.name for p in dataset_dir.iterdir() if p.name.startswith(".")] == []


def test_canonical_entry_is_llamafactory_openai_style():
    assert canonical_entry("a.jsonl") == {
        "file_name": "a.jsonl",
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


def test_load_merges_names_in_order(dataset_dir):
    register_dataset(dataset_dir, "msg", canonical_entry("messages.jsonl"))
    register_dataset(dataset_dir, "alp", {"file_name": "alpaca.jsonl", "formatting": "alpaca"})
    merged = load_datasets("alp, msg", dataset_dir)
    assert first_user_turns(merged) == [
        "我今天很难过。",
        "我失恋了。\n在一起三年。",
        "加班太多，我快撑不住了。",
        "我很想家。",
    ]
    assert load_datasets(["msg", "alp"], dataset_dir)[0]["id"] == "m-1"


def test_unknown_name_lists_registered_names(dataset_dir):
    register_dataset(dataset_dir, "msg", canonical_entry("messages.jsonl"))
    register_dataset(dataset_dir, "alp", {"file_name": "alpaca.json"})
    with pytest.raises(DataError, match=r"unknown dataset 'mgs'; registered: msg, alp"):
        load_datasets("msg,mgs", dataset_dir)
    with pytest.raises(DataError, match=r"no datasets are registered \(it does not exist\)"):
        load_datasets("msg", dataset_dir / "empty")


def test_dataset_dir_may_be_relative(dataset_dir, monkeypatch):
    register_dataset(dataset_dir, "msg", canonical_entry("messages.jsonl"))
    monkeypatch.chdir(dataset_dir.parent)
    assert len(load_datasets("msg", "data")) == 2
    assert load_datasets("msg", "data")[0].file == str(Path("data") / "messages.jsonl")


def test_raw_corpora_register_directly(dataset_dir):
    register_dataset(dataset_dir, "smile", {"file_name": "smilechat", "formatting": "smilechat"})
    register_dataset(dataset_dir, "cpsy", {"file_name": "cpsycound", "formatting": "cpsycound"})
    register_dataset(dataset_dir, "emo", {"file_name": "emollm.json", "formatting": "emollm"})
    records = load_datasets("smile,cpsy,emo", dataset_dir)
    assert [r["id"] for r in records][:5] == ["1", "2", "10", "case_0", "case_1"]
    assert len(records) == 7
    assert records[1]["messages"][-1]["role"] == "assistant"  # smilechat repaired by default


def test_num_samples_sub_and_over_samples(dataset_dir):
    register_dataset(dataset_dir, "few", {**canonical_entry("messages.jsonl"), "num_samples": 1})
    register_dataset(dataset_dir, "many", {"file_name": "alpaca.json", "num_samples": 7})
    assert len(load_datasets("few", dataset_dir)) == 1
    assert load_datasets("few", dataset_dir) == load_datasets("few", dataset_dir)
    assert len(load_datasets("many", dataset_dir)) == 7


def test_invalid_data_raises_unless_skipped(dataset_dir):
    (dataset_dir / "bad.jsonl").write_text(
        (dataset_dir / "messages.jsonl").read_text("utf-8")
        + '{"messages": [{"role": "user", "content": "x"}]}\n',
        "utf-8",
    )
    register_dataset(dataset_dir, "bad", canonical_entry("bad.jsonl"))
    with pytest.raises(DataError, match=r"bad.jsonl:3: messages\[0\].role"):
        load_datasets("bad", dataset_dir)
    assert len(load_datasets("bad", dataset_dir, skip_invalid=True)) == 2


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"file_name": "a.json", "formating": "alpaca"}, r"'formating'; did you mean 'formatting'"),
        ({"hf_hub_url": "x/y"}, r"hf_hub_url: not supported: download hub datasets first"),
        (
            {"file_name": "a.json", "formatting": "smilechat", "ranking": True},
            r"ranking: preference pairs are read in the alpaca or sharegpt formatting",
        ),
        ({"file_name": "a.json", "ranking": "yes"}, r"ranking: must be true or false"),
        (
            {"file_name": "a.json", "ranking": True, "columns": {"response": "output"}},
            r"columns.response: unknown key",
        ),
        ({"formatting": "alpaca"}, r"d.file_name: is missing"),
        ({"file_name": "a.json", "formatting": "csv"}, r"unknown formatting 'csv'"),
        (
            {"file_name": "a.json", "columns": {"prompt": "q", "images": "i"}},
            r"columns.images: unknown key",
        ),
        (
            {"file_name": "a.json", "formatting": "smilechat", "columns": {"messages": "m"}},
            r"this formatting takes no columns",
        ),
        ({"file_name": "a.json", "num_samples": 0}, r"num_samples: must be a positive integer"),
    ],
)
def test_entry_errors_name_the_key(entry, message):
    with pytest.raises(DataError, match=message):
        check_entry("d", entry, Path("dataset_info.json"))


def test_split_train_and_file_sha1_are_accepted_and_other_splits_are_not(dataset_dir):
    # LLaMA-Factory writes these two keys; anxin reads the file as it is.
    entry = {**canonical_entry("messages.jsonl"), "split": "train", "file_sha1": "abc"}
    register_dataset(dataset_dir, "plain", canonical_entry("messages.jsonl"))
    register_dataset(dataset_dir, "with_split", entry)
    assert load_datasets("with_split", dataset_dir) == load_datasets("plain", dataset_dir)
    with pytest.raises(DataError, match="with_split.split: not supported"):
        check_entry("with_split", {**entry, "split": "validation"}, Path("x"))


def test_names_with_commas_are_refused(dataset_dir):
    with pytest.raises(DataError, match="not a usable name"):
        register_dataset(dataset_dir, "a,b", canonical_entry("messages.jsonl"))


def test_broken_dataset_info_names_the_line(dataset_dir):
    (dataset_dir / "dataset_info.json").write_text('{\n  "a": {,\n}', "utf-8")
    with pytest.raises(DataError, match=r"dataset_info.json:2: json: "):
        load_dataset_info(dataset_dir)
