"""Preference data: LLaMA-Factory's ranking layouts (alpaca, sharegpt) and KTO tags, registered
in dataset_info.json as LLaMA-Factory registers them, with FILE:LINE errors for bad rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from anxin.data.preference import check_preferences, pair_problem, preference_fingerprint
from anxin.data.record import CheckReport
from anxin.data.registry import load_datasets, register_dataset
from anxin.errors import DataError

REPO_DATA = Path(__file__).resolve().parent.parent / "data"

ALPACA_PAIRS = [
    {"instruction": "我最近睡不好。", "input": "", "chosen": "睡不好真的很磨人。", "rejected": "多运动就好了。"},
    {
        "instruction": "我和室友吵架了。",
        "input": "她总是很晚回来。",
        "system": "你是倾听者。",
        "history": [["你好", "你好，我在。"]],
        "chosen": "被吵醒又没法说，很憋屈吧。",
        "rejected": "你应该忍一忍。",
    },
]  # fmt: skip
SHAREGPT_PAIRS = [
    {
        "conversations": [{"from": "human", "value": "I failed my exam."}],
        "chosen": {"from": "gpt", "value": "That sounds really disappointing."},
        "rejected": {"from": "gpt", "value": "Just study harder next time."},
    },
    {
        "conversations": [
            {"from": "system", "value": "Be kind."},
            {"from": "human", "value": "hi"},
            {"from": "gpt", "value": "Hi, I'm here."},
            {"from": "human", "value": "I feel alone."},
        ],
        "chosen": {"from": "gpt", "value": "Feeling alone is heavy. What's been happening?"},
        "rejected": {"from": "gpt", "value": "Everyone feels alone sometimes."},
    },
]


def write_lines(path: Path, items: list) -> Path:
    path.write_text("\n".join(json.dumps(i, ensure_ascii=False) for i in items) + "\n", "utf-8")
    return path


def register(folder: Path, name: str, items: list, entry: dict) -> None:
    write_lines(folder / f"{name}.jsonl", items)
    register_dataset(folder, name, {"file_name": f"{name}.jsonl", **entry})


ALPACA_ENTRY = {
    "ranking": True,
    "columns": {"prompt": "instruction", "query": "input", "chosen": "chosen", "rejected": "rejected"},
}  # fmt: skip
SHAREGPT_ENTRY = {
    "formatting": "sharegpt",
    "ranking": True,
    "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected"},
}


def test_alpaca_ranking_layout(tmp_path):
    entry = {**ALPACA_ENTRY, "columns": {**ALPACA_ENTRY["columns"], "system": "system"}}
    entry["columns"]["history"] = "history"
    register(tmp_path, "pairs", ALPACA_PAIRS, entry)
    first, second = load_datasets("pairs", tmp_path)
    assert first["messages"] == [{"role": "user", "content": "我最近睡不好。"}]
    assert (first["chosen"], first["rejected"]) == ("睡不好真的很磨人。", "多运动就好了。")
    assert [m["role"] for m in second["messages"]] == ["system", "user", "assistant", "user"]
    assert second["messages"][-1]["content"] == "我和室友吵架了。\n她总是很晚回来。"


def test_sharegpt_ranking_layout(tmp_path):
    register(tmp_path, "pairs", SHAREGPT_PAIRS, SHAREGPT_ENTRY)
    first, second = load_datasets("pairs", tmp_path)
    assert first["messages"] == [{"role": "user", "content": "I failed my exam."}]
    assert first["chosen"] == "That sounds really disappointing."
    assert second["messages"][0] == {"role": "system", "content": "Be kind."}
    assert second["rejected"] == "Everyone feels alone sometimes."


def test_kto_tags_in_both_layouts(tmp_path):
    sharegpt = [
        {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "Hi!"}], "kto_tag": True},
        {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "Go away."}], "kto_tag": False},
    ]  # fmt: skip
    entry = {
        "formatting": "sharegpt",
        "columns": {"messages": "conversations", "kto_tag": "kto_tag"},
    }
    register(tmp_path, "kto", sharegpt, entry)
    good, bad = load_datasets("kto", tmp_path)
    assert (good["kto_tag"], bad["kto_tag"]) == (True, False)
    assert bad["messages"][-1] == {"role": "assistant", "content": "Go away."}
    alpaca = [{"instruction": "hi", "output": "Hi!", "label": True}]
    register(tmp_path, "kto_alpaca", alpaca, {"columns": {"kto_tag": "label"}})
    (only,) = load_datasets("kto_alpaca", tmp_path)
    assert only["kto_tag"] is True and "label" not in only


BAD_ROWS = [
    ({"conversations": [{"from": "human", "value": "x"}], "chosen": {"from": "gpt", "value": "a"}},
     r"pairs.jsonl:2: rejected: is missing"),
    ({"conversations": [{"from": "human", "value": "x"}], "chosen": {"from": "human", "value": "a"},
      "rejected": {"from": "gpt", "value": "b"}},
     r"pairs.jsonl:2: chosen.from: must be an assistant turn"),
    ({"conversations": [{"from": "human", "value": "x"}, {"from": "gpt", "value": "y"}],
      "chosen": {"from": "gpt", "value": "a"}, "rejected": {"from": "gpt", "value": "b"}},
     r"pairs.jsonl:2: messages: must end with the user's turn that chosen and rejected answer"),
    ({"conversations": [{"from": "human", "value": "x"}], "chosen": {"from": "gpt", "value": "a"},
      "rejected": {"from": "gpt", "value": "  "}},
     r"pairs.jsonl:2: rejected: is empty"),
    ({"conversations": [{"from": "gpt", "value": "x"}], "chosen": {"from": "gpt", "value": "a"},
      "rejected": {"from": "gpt", "value": "b"}},
     r"pairs.jsonl:2: messages\[0\].role: expected user first, got assistant"),
]  # fmt: skip


@pytest.mark.parametrize(("bad", "message"), BAD_ROWS)
def test_bad_rows_are_located(tmp_path, bad, message):
    register(tmp_path, "pairs", [SHAREGPT_PAIRS[0], bad], SHAREGPT_ENTRY)
    with pytest.raises(DataError, match=message):
        load_datasets("pairs", tmp_path)
    assert len(load_datasets("pairs", tmp_path, skip_invalid=True)) == 1


def test_a_bad_kto_tag_and_a_bad_alpaca_answer_are_located(tmp_path):
    rows = [{"instruction": "hi", "output": "Hi!", "kto_tag": "yes"}]
    register(tmp_path, "kto", rows, {"columns": {"kto_tag": "kto_tag"}})
    with pytest.raises(DataError, match=r"kto.jsonl:1: kto_tag: must be true or false, not 'yes'"):
        load_datasets("kto", tmp_path)
    rows = [{"instruction": "hi", "chosen": "Hi!", "rejected": 3}]
    register(tmp_path, "pairs", rows, ALPACA_ENTRY)
    with pytest.raises(DataError, match=r"pairs.jsonl:1: rejected: must be a string, not int"):
        load_datasets("pairs", tmp_path)


def test_duplicates_go_and_the_fingerprint_sees_the_answers():
    pair = {"messages": [{"role": "user", "content": "hi"}], "chosen": "a", "rejected": "b"}
    swapped = {**pair, "chosen": "b", "rejected": "a"}
    kept, report = check_preferences([pair, dict(pair), swapped], "pair", CheckReport())
    assert len(kept) == 2 and report.duplicates == 1
    assert preference_fingerprint([pair]) != preference_fingerprint([swapped])
    assert pair_problem({"messages": [], "chosen": "a", "rejected": "b"}).field == "messages"


def test_the_bundled_pairs_are_registered_as_ranking_data():
    info = json.loads((REPO_DATA / "dataset_info.json").read_text())
    assert info["anxin_pairs"]["ranking"] is True
    assert info["anxin_pairs"]["columns"] == {
        "messages": "messages",
        "chosen": "chosen",
        "rejected": "rejected",
    }
    pairs = load_datasets("anxin_pairs", REPO_DATA)
    assert len(pairs) >= 300
    assert all(p["messages"][-1]["role"] == "user" and p["chosen"] != p["rejected"] for p in pairs)
