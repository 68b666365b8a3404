"""The rubric checker: each rule catches a small bad example and lets a good one through."""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import pytest

from anxin.data.rubric import (
    FAILURE_RULES,
    FORBIDDEN_IN_ASSISTANT,
    check_pairs,
    check_rubric,
    main,
)

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
    "dismissal": (
        "一次考试而已，没什么大不了的，过几天就好了。",
        "一次考试没考好，心里难受很正常，这份失落值得被看见。",
    ),
    "dismissal_en": (
        "Honestly, it's not a big deal, you'll be fine.",
        "It makes sense that this feels like a big deal to you.",
    ),
    "means_talk": (
        "这种药吃多了也不一定会死，很多人都被及时发现救了回来。",
        "这个问题我不回答，因为我很在乎你的安全，你现在身边有人吗？",
    ),
    "means_talk_en": (
        "Honestly, plenty of people survive falls like that with serious injuries.",
        "I'm not going to answer that, because I care about your safety.",
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
    "第三次了，这不是你想多了，你的直觉在保护你。",
    "这不是矫情，你是真的累了，这没有什么好丢人的。",
    "惊恐发作真的很吓人，不过它本身不会致命，这一点医生也可以帮你确认。",
    "他离开这件事，对你来说像是一个致命的打击。",
    "你被救回来以后，醒来时最先想见的人是谁？",
    "You survived so much this year, and it shows.",
]


# Stock phrases beyond the one example per rule above, each from a different family.
@pytest.mark.parametrize(
    "text, rule",
    [
        ("天下没有不是的父母，你要多体谅她。", "moralising"),
        ("你怎么能有这种想法呢，这样想是不对的。", "moralising"),
        ("你都是成年人了，别这么矫情。", "moralising"),
        ("大家都是这么过来的，这点孤单不算什么。", "dismissal"),
        ("你就是想太多了，别往心里去。", "dismissal"),
        ("Everyone feels that way about their job, don't overthink it.", "dismissal_en"),
        ("不是越高就一定致命，也有人摔下来活了下来。", "means_talk"),
        (
            "That combination can be fatal, but whether anyone would find you in time...",
            "means_talk_en",
        ),
    ],
)
def test_stock_phrases_are_caught(text, rule):
    language = "zh" if any("\u4e00" <= ch <= "\u9fff" for ch in text) else "en"
    assert any(f"[{rule}:" in p for p in check_rubric(with_reply(text, language))), text


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


# ---------------------------------------------------------------------------------------------
# Preference pairs: a history, a chosen reply that follows the rubric, a rejected one that fails

GOOD_CHOSEN = (
    "一模掉了四十分，还是在高三，心里一下子慌起来太正常了。睡不着也是身体在替你紧张。"
    "这几天晚上，脑子里最常转的是哪些念头？"
)


def pair(pid: str = "pair-t-001", failure: str = "diagnosis", **changes) -> dict:
    record = {
        "id": pid,
        "language": "zh",
        "topic": "study_stress",
        "failure": failure,
        "messages": [{"role": "user", "content": "一模掉了四十分，我每天晚上都睡不着"}],
        "chosen": {"role": "assistant", "content": GOOD_CHOSEN},
        "rejected": {
            "role": "assistant",
            "content": "掉分又失眠，你这就是焦虑症，得赶紧去医院治疗，不然高考就完了。",
        },
    }
    return record | changes


def reply(text: str) -> dict:
    return {"role": "assistant", "content": text}


def test_a_good_pair_passes_and_is_verified():
    report = check_pairs([pair()])
    assert report.problems == []
    assert report.verified["diagnosis"] == 1
    assert "diagnosis" in report.summary() and "a rule: 1/1" in report.summary()


def test_a_chosen_reply_with_a_diagnosis_fails():
    bad = pair(chosen=reply("掉分又失眠，你这是典型的焦虑症，要重视，先好好休息几天。"))
    problems = check_pairs([bad]).problems
    assert any(p.startswith("pair-t-001: chosen: states a diagnosis") for p in problems), problems


def test_a_rejected_diagnosis_without_a_diagnosis_is_reported():
    vague = pair(rejected=reply("掉分确实让人难受，不过一次模考说明不了什么，调整一下就好。"))
    assert check_pairs([vague]).problems == [
        "pair-t-001: rejected: shows 'diagnosis', but none of its rules catches it"
        " (expected one of: diagnosis, diagnosis_en, guard:diagnosis_as_fact)"
    ]


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"chosen": "好的"}, "pair-t-001: chosen: must be an object {'role': 'assistant'"),
        ({"failure": "rudeness"}, "pair-t-001: failure: 'rudeness', expected one of ["),
        ({"topic": "study-stress"}, "pair-t-001: topic: 'study-stress', expected one of ["),
        ({"rejectd": reply("x")}, "pair-t-001: rejectd: unknown key (did you mean 'rejected'?)"),
        ({"messages": []}, "pair-t-001: messages: must be a non-empty list of messages"),
        (
            {
                "messages": [
                    {"role": "user", "content": "嗯"},
                    {"role": "assistant", "content": "嗯"},
                ]
            },
            "pair-t-001: messages: must end with the user turn being answered",
        ),
        (
            {"rejected": {"role": "user", "content": "你这就是焦虑症。"}},
            "pair-t-001: rejected: role 'user', expected 'assistant'",
        ),
    ],
)
def test_a_bad_shape_gets_a_clear_message(change, expected):
    problems = check_pairs([pair(**change)]).problems
    assert any(p.startswith(expected) for p in problems), problems


def test_a_missing_key_is_named():
    record = pair()
    del record["chosen"]
    assert check_pairs([record]).problems == ["pair-t-001: chosen: missing"]


def test_more_than_four_user_turns_is_too_long():
    turns = ["我睡不着", "睡不着一定很难受，这种情况多久了？"] * 4 + ["一个月了"]
    messages = [{"role": ("user", "assistant")[i % 2], "content": t} for i, t in enumerate(turns)]
    problems = check_pairs([pair(messages=messages)]).problems
    assert "pair-t-001: messages: 5 user turns, expected 1..4" in problems


def test_earlier_counsellor_turns_follow_the_rubric():
    messages = [
        {"role": "user", "content": "我最近压力好大"},
        {"role": "assistant", "content": "你要想开点，别想太多。"},
        {"role": "user", "content": "可是一模掉了四十分，我每天晚上都睡不着"},
    ]
    problems = check_pairs([pair(messages=messages)]).problems
    assert any(p.startswith("pair-t-001: messages[1]: moralises") for p in problems), problems


CRISIS_HISTORY = [{"role": "user", "content": "我不想活了，药我都攒好了，今晚就想结束这一切"}]
CRISIS_CHOSEN = (
    "谢谢你告诉我，我听到了你有多痛。你现在安全吗？请先把药交给家人保管，"
    "让一个信任的人陪着你，也可以马上拨打 12356 或 400-161-9995。"
)


def test_a_chosen_reply_to_a_crisis_must_give_a_help_line():
    without = CRISIS_CHOSEN.split("，也可以")[0] + "。"
    record = pair(messages=CRISIS_HISTORY, chosen=reply(without))
    problems = check_pairs([record]).problems
    assert "pair-t-001: chosen: the person is at risk, but the reply gives no help line" in problems
    assert check_pairs([pair(messages=CRISIS_HISTORY, chosen=reply(CRISIS_CHOSEN))]).problems == []


def test_ignoring_risk_is_verified_by_the_missing_help_line():
    surface = reply("睡不着的话，可以试试睡前泡个脚，把手机放远一点，早点上床休息。")
    ignoring = pair(
        failure="ignoring_risk",
        messages=CRISIS_HISTORY,
        chosen=reply(CRISIS_CHOSEN),
        rejected=surface,
    )
    report = check_pairs([ignoring])
    assert report.problems == [] and report.verified["ignoring_risk"] == 1
    answered = surface["content"] + "难受的话可以拨打 12356。"
    report = check_pairs([ignoring | {"rejected": reply(answered)}])
    assert [p.split(" (")[0] for p in report.problems] == [
        "pair-t-001: rejected: shows 'ignoring_risk', but none of its rules catches it"
    ]


def test_failures_a_program_cannot_tell_are_counted_not_checked():
    advice = reply("可以试试这几个方法：1. 每天固定时间起床；2. 睡前不看手机；3. 白天多运动。")
    report = check_pairs([pair(failure="premature_advice", rejected=advice)])
    assert report.problems == []
    assert report.pairs["premature_advice", "zh"] == 1 and report.verified["premature_advice"] == 0
    assert "needs a human reader" in report.summary()


def test_a_rejected_reply_must_still_be_well_formed():
    problems = check_pairs([pair(rejected=reply("你这是焦虑症。"))]).problems
    assert problems == ["pair-t-001: rejected: 7 characters, expected 20..400 (zh)"]


def test_ids_and_replies_are_not_reused():
    problems = check_pairs([pair("a"), pair("a")]).problems
    assert "a: id: same as in a" in problems
    assert "a: chosen: same as in a" in problems and "a: rejected: same as in a" in problems


def test_rubric_cli_checks_a_pair_file(tmp_path, capsys):
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps(pair(), ensure_ascii=False) + "\n", encoding="utf-8")
    assert main(argparse.Namespace(files=[path])) == 0
    assert "1 pairs, 0 problems" in capsys.readouterr().err


def test_anxin_data_check_rubric_checks_a_pair_file(tmp_path, capsys):
    from anxin.cli import main as anxin

    path = tmp_path / "pairs.jsonl"
    vague = reply("掉分确实让人难受，不过一次模考说明不了什么，调整一下就好。")
    lines = [pair("p1"), pair("p2", rejected=vague)]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in lines), "utf-8")
    assert anxin(["data", "check", str(path), "--rubric"]) == 1
    captured = capsys.readouterr()
    assert f"{path}: p2: rejected: shows 'diagnosis'" in captured.err
    assert "FAILED" in captured.out and "needs a human reader" in captured.out
    path.write_text(json.dumps(lines[0], ensure_ascii=False) + "\n", encoding="utf-8")
    assert anxin(["data", "check", str(path), "--rubric"]) == 0


def test_the_bundled_pairs_pass_every_check():
    path = REPO / "data" / "anxin_pairs.jsonl"
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    report = check_pairs(records)
    assert report.problems == []
    assert len(records) >= 300
    structural = [failure for failure, rules in FAILURE_RULES.items() if rules]
    for failure in FAILURE_RULES:
        count = report.pairs[failure, "zh"] + report.pairs[failure, "en"]
        assert count >= 30, failure
        if failure in structural:
            assert report.verified[failure] == count, failure
