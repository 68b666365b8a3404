"""Each reader on small fixtures in its corpus's real layout, and its error locations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from anxin.data.readers import READERS, detect_format, read_records
from anxin.data.record import BAD_JSON, CheckReport, DataError, SourcedRecord, check_records

CORPORA = Path(__file__).parent / "fixtures" / "corpora"


def roles(record: dict) -> list[str]:
    return [m["role"] for m in record["messages"]]


def test_alpaca_joins_instruction_and_input_and_expands_history():
    records = list(READERS["alpaca"](CORPORA / "alpaca.json"))
    assert len(records) == 3
    first, second, third = records
    assert first["messages"][0] == {"role": "user", "content": "我最近压力很大，怎么办？"}
    assert first["topic"] == "stress"  # unknown keys are kept as metadata
    assert second["messages"][0]["content"] == "请回应来访者的话。\n我觉得没有人理解我。"
    assert roles(third) == ["system", "user", "assistant", "user", "assistant"]
    assert third["messages"][1]["content"].startswith("我想和朋友聊聊心事")
    assert third["messages"][3]["content"] == "那我该怎么开口呢？"
    assert "history" not in third and "instruction" not in third


def test_alpaca_jsonl_and_custom_columns(tmp_path):
    records = list(READERS["alpaca"](CORPORA / "alpaca.jsonl"))
    assert [r["messages"][0]["content"] for r in records] == [
        "我今天很难过。",
        "我失恋了。\n在一起三年。",
    ]
    renamed = tmp_path / "q.json"
    renamed.write_text(json.dumps([{"q": "你好", "a": "你好呀"}]), encoding="utf-8")
    [record] = READERS["alpaca"](renamed, columns={"prompt": "q", "response": "a"})
    assert record["messages"] == [
        {"role": "user", "content": "你好"},
        {"role": "assistant", "content": "你好呀"},
    ]


def test_sharegpt_default_tags_and_system_column():
    first, second = READERS["sharegpt"](CORPORA / "sharegpt.json")
    assert roles(first) == ["system", "user", "assistant", "user", "assistant"]
    assert first["messages"][0]["content"] == "你是一位耐心的倾听者。"
    assert first["id"] == "sg-1"
    assert roles(second) == ["system", "user", "assistant"]
    assert second["messages"][0]["content"] == "请用温暖的语气回答。"


def test_sharegpt_with_openai_tags_reads_canonical_jsonl():
    tags = {
        "role_tag": "role",
        "content_tag": "content",
        "user_tag": "user",
        "assistant_tag": "assistant",
        "system_tag": "system",
    }
    via_sharegpt = list(
        READERS["sharegpt"](CORPORA / "messages.jsonl", columns={"messages": "messages"}, tags=tags)
    )
    via_messages = list(READERS["messages"](CORPORA / "messages.jsonl"))
    assert [r["messages"] for r in via_sharegpt] == [r["messages"] for r in via_messages]


def test_messages_keeps_metadata_and_location():
    first, second = READERS["messages"](CORPORA / "messages.jsonl")
    assert first["id"] == "m-1" and first["topic"] == "work"
    assert roles(first) == ["system", "user", "assistant"]
    assert isinstance(second, SourcedRecord) and second.line == 2
    assert second.file == str(CORPORA / "messages.jsonl")
    assert list(second)[-1] == "messages"


def test_smilechat_folder_in_numeric_order_with_repairs():
    records = list(READERS["smilechat"](CORPORA / "smilechat"))
    assert [r["id"] for r in records] == ["1", "2", "10"]
    assert all("annotation" not in m for r in records for m in r["messages"])
    assert roles(records[0]) == ["user", "assistant", "user", "assistant"]
    # 2.json has two client turns in a row and ends with the client: repaired on request.
    kept, report = check_records(records, repair=True)
    assert kept[1]["messages"][0]["content"] == "我和室友吵架了。\n现在回宿舍都觉得很尴尬。"
    assert roles(kept[1]) == ["user", "assistant"]
    assert sum(report.repaired.values()) == 2


def test_smilechat_unknown_role_names_the_turn_line(tmp_path):
    bad = tmp_path / "7.json"
    bad.write_text(
        '[\n  {"role": "client", "content": "a"},\n  {"role": "bot", "content": "b"}\n]\n',
        encoding="utf-8",
    )
    with pytest.raises(DataError) as caught:
        list(READERS["smilechat"](tmp_path))
    assert str(caught.value).startswith(f"{bad}:3: [1].role: unknown role 'bot'")


def test_cpsycound_labels_colons_and_continuation_lines():
    first, second = READERS["cpsycound"](CORPORA / "cpsycound")
    assert first["id"] == "case_0"
    assert roles(first) == ["user", "assistant", "user", "assistant"]
    assert first["messages"][0]["content"] == "我最近总觉得很累，什么都不想做。"
    assert roles(second) == ["user", "assistant", "user", "assistant"]
    assert (
        second["messages"][0]["content"]
        == "我和妈妈的关系很紧张。\n她总是替我做决定，\n我觉得自己没有空间。"
    )
    assert second["messages"][1]["content"].endswith("\n你希望和妈妈之间是什么样的？")


def test_cpsycound_single_file_and_text_before_label(tmp_path):
    [record] = READERS["cpsycound"](CORPORA / "cpsycound" / "case_0.txt")
    assert record["source"].endswith("case_0.txt")
    bad = tmp_path / "case_9.txt"
    bad.write_text("\n前言\n来访者：你好\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"case_9.txt:2: speaker: text before the first"):
        list(READERS["cpsycound"](bad))


def test_emollm_system_on_first_exchange_only():
    first, second = READERS["emollm"](CORPORA / "emollm.json")
    assert roles(first) == ["system", "user", "assistant", "user", "assistant"]
    assert first["messages"][0]["content"].startswith("你是心理健康助手")
    assert roles(second) == ["user", "assistant"]  # empty system: no system turn


def test_emollm_rejects_a_changed_system_prompt(tmp_path):
    bad = tmp_path / "e.json"
    exchanges = [
        {"system": "A", "input": "x", "output": "y"},
        {"system": "B", "input": "x", "output": "y"},
    ]
    bad.write_text(json.dumps([{"conversation": exchanges}]), encoding="utf-8")
    with pytest.raises(DataError) as caught:
        list(READERS["emollm"](bad))
    assert (caught.value.line, caught.value.field) == (1, "conversation[1].system")


def test_json_list_errors_name_the_item_line(tmp_path):
    bad = tmp_path / "a.json"
    bad.write_text(
        '[\n  {"instruction": "a", "output": "b"},\n\n  {"instruction": "c",\n   "output": 3}\n]',
        encoding="utf-8",
    )
    with pytest.raises(DataError) as caught:
        list(READERS["alpaca"](bad))
    assert str(caught.value) == f"{bad}:4: output: must be a string, not int"


def test_broken_json_list_reports_the_parser_line(tmp_path):
    bad = tmp_path / "a.json"
    bad.write_text(
        '[\n  {"instruction": "a", "output": "b"},\n  {"instruction": }\n]', encoding="utf-8"
    )
    with pytest.raises(DataError) as caught:
        list(READERS["alpaca"](bad))
    assert (caught.value.line, caught.value.field, caught.value.reason) == (3, "json", BAD_JSON)


def test_bad_jsonl_line_is_skipped_with_on_error(tmp_path):
    bad = tmp_path / "m.jsonl"
    good = {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}
    bad.write_text(f"{json.dumps(good)}\n{{oops\n\n{json.dumps(good)}\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"m.jsonl:2: json: "):
        list(READERS["messages"](bad))
    report = CheckReport(skip_invalid=True)
    records = list(READERS["messages"](bad, on_error=report.add_problem))
    assert [r.line for r in records] == [1, 4]
    assert report.skipped == {BAD_JSON: 1}


def test_sharegpt_unknown_role_tag(tmp_path):
    bad = tmp_path / "s.jsonl"
    turns = [{"from": "human", "value": "a"}, {"from": "bot", "value": "b"}]
    bad.write_text(json.dumps({"conversations": turns}) + "\n", encoding="utf-8")
    with pytest.raises(DataError) as caught:
        list(READERS["sharegpt"](bad))
    assert caught.value.field == "conversations[1].from"
    assert "expected one of human, gpt, system" in caught.value.problem


def test_missing_path_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="no such file or folder"):
        list(READERS["alpaca"](tmp_path / "nope.json"))


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("alpaca.json", "alpaca"),
        ("alpaca.jsonl", "alpaca"),
        ("sharegpt.json", "sharegpt"),
        ("messages.jsonl", "messages"),
        ("emollm.json", "emollm"),
        ("smilechat", "smilechat"),
        ("smilechat/10.json", "smilechat"),
        ("cpsycound", "cpsycound"),
        ("cpsycound/case_1.txt", "cpsycound"),
    ],
)
def test_detect_format(name, expected):
    assert detect_format(CORPORA / name) == expected


def test_detect_format_explains_unknown_keys(tmp_path):
    odd = tmp_path / "odd.jsonl"
    odd.write_text('{"question": "a", "answer": "b"}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"answer, question.*pass one of alpaca"):
        detect_format(odd)


def test_every_fixture_reads_into_valid_records():
    for name in (
        "alpaca.json",
        "alpaca.jsonl",
        "sharegpt.json",
        "messages.jsonl",
        "emollm.json",
        "cpsycound",
    ):
        kept, report = check_records(read_records(CORPORA / name))
        assert kept and report.kept == report.read, name
