"""The rubric checker: each rule catches a small bad example and lets a good one through."""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import pytest

from anxin.data.rubric import FORBIDDEN_IN_ASSISTANT, check_rubric, main

REPO = Path(__file__).resolve().parents[1]

ZH_REPLY = "期末一门接一门，晚上还睡不好，会这么焦躁很正常。这几天里，哪个时刻让你最难熬？"
EN_REPLY = (
    "That sounds exhausting, and it makes sense you feel stretched thin. What has been hardest?"
)


def zh_record(rid: str = "zh-1", replies: list[str] | None = None, **extra) -> dict:
    replies = replies or [
        ZH_REPLY,
        "能想到先睡个整觉，就是在照顾自己。也许今晚可以试试早点放下手机。",
    ]
    messages = []
    for n, reply in enumerate(replies):
        messages += [
            {"role": "user", "content": f"我最近压力好大{n}"},
            {"role": "assistant", "content": reply},
        ]
    return {"id": rid, "topic": "study_stress", "language": "zh", "messages": messages} | extra


def en_record(rid: str = "en-1") -> dict:
    return {
        "id": rid,
        "topic": "sleep",
        "language": "en",
        "messages": [
            {"role": "user", "content": "I can't sleep."},
            {"role": "assistant", "content": EN_REPLY},
            {"role": "user", "content": "Work, mostly."},
            {
                "role": "assistant",
                "content": "Work pressure at night is hard. Maybe try a short wind-down.",
            },
        ],
    }


def with_reply(text: str, language: str = "zh") -> list[dict]:
    record = zh_record() if language == "zh" else en_record()
    record["messages"][1]["content"] = text
    return [record]


def test_good_records_pass():
    assert check_rubric([zh_record(), en_record()]) == []


def test_leading_system_turn_is_allowed():
    record = zh_record()
    record["messages"].insert(0, {"role": "system", "content": "你是安心。"})
    assert check_rubric([record]) == []


def test_roles_must_alternate():
    record = zh_record()
    record["messages"][2]["role"] = "assistant"
    problems = check_rubric([record])
    assert "zh-1: messages[2]: role 'assistant', expected 'user'" in problems


def test_dialogue_must_end_with_assistant():
    record = zh_record()
    record["messages"].append({"role": "user", "content": "嗯"})
    assert any("messages[4]: dialogue must end with assistant" in p for p in check_rubric([record]))


@pytest.mark.parametrize("exchanges, ok", [(1, False), (2, True), (8, True), (9, False)])
def test_exchange_count_bounds(exchanges, ok):
    replies = [f"{ZH_REPLY}（第{n}轮）" for n in range(exchanges)]
    problems = check_rubric([zh_record(replies=replies)])
    assert (not any("exchanges" in p for p in problems)) == ok


@pytest.mark.parametrize(
    "text, language, ok",
    [
        ("嗯，我在听。", "zh", False),
        ("好" * 20, "zh", True),
        ("好" * 400, "zh", True),
        ("好" * 401, "zh", False),
        ("Okay.", "en", False),
        ("a" * 1200, "en", True),
        ("a" * 1201, "en", False),
    ],
)
def test_assistant_turn_length(text, language, ok):
    problems = check_rubric(with_reply(text, language))
    assert (not any("characters, expected" in p for p in problems)) == ok


def test_language_is_detected_when_missing():
    record = en_record()
    del record["language"]
    record["messages"][1]["content"] = "Okay, I see."  # 12 characters: fine in English, short in zh
    assert check_rubric([record]) == []
    record = zh_record()
    del record["language"]
    record["messages"][1]["content"] = "嗯嗯，我在听你说。"
    assert any("(zh)" in p for p in check_rubric([record]))


def test_at_most_two_question_marks():
    assert check_rubric(with_reply("这样难受很正常吧？你最近睡得怎么样？哪件事最让你放不下？")) == [
        "zh-1: messages[1]: 3 question marks, at most 2 (one open question at a time)"
    ]
    assert check_rubric(with_reply("这样难受很正常吧？这几天里，哪件事最让你放不下呢？")) == []


def test_duplicate_dialogue_is_reported_once():
    problems = check_rubric([zh_record("a"), zh_record("b")])
    assert problems == ["b: messages: duplicate of dialogue a"]


def test_duplicate_assistant_turn_across_file():
    other = zh_record("b", replies=[ZH_REPLY, "也许可以先和室友说一说，今晚早点放下书休息。"])
    problems = check_rubric([zh_record("a"), other])
    assert problems == ["b: messages[1]: same assistant text as a messages[1]"]


def test_crisis_dialogue_needs_a_help_line():
    record = zh_record(topic="crisis")
    assert check_rubric([record]) == [
        "zh-1: messages: crisis dialogue gives no help line or emergency number"
    ]
    record["messages"][3]["content"] += "需要时可以拨打 12356。"
    assert check_rubric([record]) == []


@pytest.mark.parametrize("number", ["12356", "400-161-9995", "010-82951332", "988", "911", "110"])
def test_each_help_number_counts(number):
    record = en_record()
    record["topic"] = "crisis"
    record["messages"][3]["content"] += f" You can call {number}."
    assert check_rubric([record]) == []


def test_a_number_inside_a_longer_one_is_not_a_help_line():
    record = en_record()
    record["topic"] = "crisis"
    record["messages"][3]["content"] += " Call 1101234 later."
    assert any("no help line" in p for p in check_rubric([record]))


# One bad and one good example per forbidden-content rule, keyed by the rule's name.
FORBIDDEN_EXAMPLES = {
    "dose": (
        "睡不着的话，睡前吃 2 片应该会好一些，先试一周看看。",
        "睡不着的时候，也许可以试试一片安静的音乐。",
    ),
    "dose_en": (
        "Taking 2 pills before bed might help you rest.",
        "Two slow breaths before bed might help.",
    ),
    "drug_with_amount": (
        "舍曲林你可以先吃半颗，慢慢再加上去，应该会好。",
        "药物的事最好交给医生，跟他说说你的顾虑。",
    ),
    "drug_suggested": (
        "睡不着的话，可以先吃点褪黑素，会舒服一些的。",
        "睡不着的时候，可以把安眠药交给家人保管。",
    ),
    "drug_suggested_en": (
        "You could try some melatonin tonight.",
        "A doctor can talk with you about options.",
    ),
    "diagnosis": (
        "你说的这些，你这就是抑郁症，要重视起来。",
        "这并不代表你有抑郁症，只是你最近实在太累了。",
    ),
    "diagnosis_en": (
        "From what you describe, you have depression.",
        "This doesn't mean you have depression.",
    ),
    "moralising": (
        "这些事情都过去了，你要想开点，日子还长着呢。",
        "这些事压在心里这么久，难怪你会觉得这么累。",
    ),
    "moralising_en": (
        "Try to look on the bright side of things.",
        "It makes sense that this feels heavy.",
    ),
}


def test_every_forbidden_rule_has_examples():
    assert {name for name, _, _ in FORBIDDEN_IN_ASSISTANT} == set(FORBIDDEN_EXAMPLES)


@pytest.mark.parametrize("rule", sorted(FORBIDDEN_EXAMPLES))
def test_forbidden_rule_catches_bad_and_passes_good(rule):
    bad, good = FORBIDDEN_EXAMPLES[rule]
    language = "zh" if any("\u4e00" <= ch <= "\u9fff" for ch in bad) else "en"
    assert any(f"[{rule}:" in p for p in check_rubric(with_reply(bad, language))), bad
    assert check_rubric(with_reply(good, language)) == [], good


# Ordinary counselling sentences that sit close to a rule without breaking it.
NEAR_MISSES = [
    "先吃点东西，安眠药的事留给医生来判断，今晚先好好休息。",
    "如果身边有安眠药，请先把它交给家人保管，今晚别一个人待着。",
    "并不是说你有焦虑症，只是这阵子压力实在太大了。",
    "你说的这些症状，值得找医生好好看一看，不用一个人猜。",
    "这一片心意你妈妈一定收到了，也许可以找个机会告诉她。",
    "A doctor can help you figure out whether you have depression or something else.",
    "Some people find that a warm shower before bed helps them cheer themselves on.",
    "他想安慰你，可“别想太多”这样的话，有时反而让人觉得没被理解。",
    'When your dad said "just get over it", it sounds like it stung.',
]


def test_a_dose_is_forbidden_even_in_quotes():
    problems = check_rubric(with_reply("医生说的“每次吃 2 片”，最好还是当面跟医生再确认一下。"))
    assert any("[dose:" in p for p in problems)


@pytest.mark.parametrize("text", NEAR_MISSES)
def test_near_misses_pass(text):
    language = "zh" if any("\u4e00" <= ch <= "\u9fff" for ch in text) else "en"
    assert check_rubric(with_reply(text, language)) == []


def test_forbidden_content_in_user_turns_is_fine():
    record = zh_record()
    record["messages"][0]["content"] = "安眠药吃 30 片会怎样，我是不是得了抑郁症"
    assert check_rubric([record]) == []


def test_main_prints_problems_and_exits_one(tmp_path, capsys):
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps(zh_record(), ensure_ascii=False) + "\n", encoding="utf-8")
    bad = tmp_path / "bad.jsonl"
    bad_record = copy.deepcopy(zh_record())
    bad_record["messages"].pop()
    bad.write_text(json.dumps(bad_record, ensure_ascii=False) + "\n{oops\n", encoding="utf-8")

    assert main(argparse.Namespace(files=[good])) == 0
    assert main(argparse.Namespace(files=[bad])) == 1
    out = capsys.readouterr().out
    assert f"{bad}:2: json:" in out
    assert f"{bad}: zh-1: messages[2]: dialogue must end with assistant" in out


def bundled_files() -> list[Path]:
    return [REPO / "data" / "anxin_sample.jsonl"]


@pytest.mark.parametrize("path", bundled_files(), ids=lambda p: p.name)
def test_bundled_data_follows_the_rubric(path):
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    assert check_rubric(records) == []
