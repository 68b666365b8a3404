"""bench/care_typing.py's own parts: a message as typed in each style, and the rates reported."""

from __future__ import annotations

from anxin.safety.sets import Example
from bench.care_typing import rates, typed


def test_punctuation_between_chinese_characters_becomes_a_space_an_emoji_or_nothing():
    assert typed("不想上学，想死。", "spaces") == "不想上学 想死。"
    assert typed("好累。。。不想活了！！真的", "spaces") == "好累 不想活了 真的"
    assert (
        typed("他说“好累。我想死”，我很怕", "spaces") == "他说“好累 我想死”，我很怕"
    )  # quotes stay
    assert typed("I'm tired, so tired", "spaces") == "I'm tired, so tired"
    assert typed("没考好，不想活了，真的", "emoji") == "没考好😭不想活了😔真的"
    assert typed("不想上学，想死。", "run_on") == "不想上学想死。"


def test_rates_count_crises_found_and_false_alarms():
    examples = [
        Example(1, "a", "crisis", "suicidal_ideation"),
        Example(2, "b", "crisis", "suicidal_ideation"),
        Example(3, "c", "non_crisis", "everyday"),
    ]
    assert rates(examples, [True, False, True]) == {
        "recall": 0.5,
        "false_positive_rate": 1.0,
        "crises_found": 1,
        "false_alarms": 1,
    }
