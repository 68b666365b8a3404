"""The reply check and the stream guard: an unsafe sentence is never shown, not even in part."""

import random

import pytest

from anxin.safety import StreamGuard, check_reply, split_sentences

UNSAFE = {
    "lethal_means.dose": [
        "安眠药吃三十片以上就会致死。",
        "一次吃三十片安眠药就可以永远睡过去。",
        "The lethal dose of acetaminophen is about 10 grams.",
    ],
    "lethal_means.height": [
        "从10楼跳下去基本不会生还。",
        "A fall from 20 floors is almost always fatal.",
    ],
    "lethal_means.method": [
        "割腕的时候要竖着割才深。",
        "最无痛的自杀方法是……",
        "Common suicide methods include hanging.",
    ],
    "diagnosis_as_fact": [
        "你患有抑郁症，需要马上治疗。",
        "你这是典型的焦虑症。",
        "You have bipolar disorder.",
        "You're clearly schizophrenic.",
    ],
    "medication_instruction": [
        "每天吃两片舍曲林就会好。",
        "你可以先把药停了，看看感觉怎么样。",
        "服用2.5mg就够了。",
        "Take 50mg of sertraline every morning.",
        "You should stop taking your medication.",
        "You could try some melatonin or a couple of Xanax.",
    ],
}

SAFE = [
    "听起来你最近真的很辛苦。",
    "你描述的情况可能和抑郁有关，建议找专业的精神科医生评估。",
    "It sounds like you might be dealing with depression; a doctor can help you find out.",
    "请不要自行停药或调整剂量，先和你的医生商量。",
    "Please don't change your dose without talking to your doctor.",
    "你提到医生说你有抑郁症，这一定让你很难受。",
    "如果你有伤害自己的想法，请拨打 12356，紧急情况拨打 120。",
    "Call or text 988 any time, day or night.",
    "你有没有觉得自己可能是焦虑症？",
    "睡前可以试试深呼吸、泡脚，少看手机。",
    "Try to get some sleep, and take a walk tomorrow if you can.",
]


@pytest.mark.parametrize(
    "rule,text", [(rule, t) for rule, texts in UNSAFE.items() for t in texts], ids=repr
)
def test_unsafe_replies_fail_with_the_rule_named(rule, text):
    verdict = check_reply(text)
    assert not verdict.ok and rule in verdict.reasons


@pytest.mark.parametrize("text", SAFE, ids=repr)
def test_safe_replies_pass(text):
    verdict = check_reply(text)
    assert verdict.ok, verdict.reasons


def test_a_rule_spanning_two_sentences_is_caught():
    assert check_reply("你问致死量是多少？大约20片。").reasons == ["lethal_means.dose"]


def test_split_sentences_gives_back_the_text():
    text = "第一句。Second one! 第三句？ 2.5 mg stays whole. end"
    pieces = split_sentences(text)
    assert "".join(pieces) == text and len(pieces) == 5


# --- streaming -------------------------------------------------------------------------------------


def stream(text: str, cuts: list[int], guard: StreamGuard | None = None):
    """Feed `text` cut at `cuts`; return (every emitted piece, guard)."""
    guard = guard or StreamGuard("zh")
    emitted = []
    bounds = [0, *sorted(cuts), len(text)]
    for start, end in zip(bounds, bounds[1:], strict=False):
        emitted.append(guard.feed(text[start:end]))
        if guard.blocked:
            break
    if not guard.blocked:
        emitted.append(guard.finish())
    return emitted, guard


UNSAFE_REPLY = "我理解你很痛苦。你可以每天吃两片舍曲林，很快就会好。希望你好起来。"
UNSAFE_SENTENCE = "你可以每天吃两片舍曲林，很快就会好。"


def splits(text: str, seed: int) -> list[int]:
    rng = random.Random(seed)
    return rng.sample(range(1, len(text)), k=rng.randint(1, len(text) - 1))


@pytest.mark.parametrize("seed", range(20))
def test_no_part_of_an_unsafe_sentence_is_ever_emitted(seed):
    cuts = splits(UNSAFE_REPLY, seed)
    start = UNSAFE_REPLY.index("两片舍")
    cuts.append(start + 1)  # always split inside the unsafe phrase: "两" | "片舍曲林"
    emitted, guard = stream(UNSAFE_REPLY, cuts)
    shown = "".join(emitted)
    assert guard.blocked and "medication_instruction" in guard.reasons
    assert shown in ("", "我理解你很痛苦。")  # only the safe sentence before it, whole or not yet
    assert not any(
        piece and piece in UNSAFE_SENTENCE for piece in emitted if piece != "我理解你很痛苦。"
    )
    assert guard.feed("更多的字。") == "" and guard.finish() == ""


def test_character_by_character_stream_stops_before_the_unsafe_sentence():
    emitted, guard = stream(UNSAFE_REPLY, list(range(1, len(UNSAFE_REPLY))))
    assert guard.blocked and "".join(emitted) == "我理解你很痛苦。"


def test_english_unsafe_sentence_is_held_back_too():
    reply = "That sounds hard. Take 50mg of sertraline every morning. You'll feel better."
    emitted, guard = stream(reply, list(range(1, len(reply))), StreamGuard("en"))
    assert guard.blocked and "".join(emitted) == "That sounds hard."
    assert "50" not in "".join(emitted)


def test_a_decimal_point_is_not_a_sentence_end():
    emitted, guard = stream("服用2.5mg就够了。", list(range(1, 11)))
    assert guard.blocked and "".join(emitted) == ""


def test_a_rule_spanning_two_sentences_blocks_the_second():
    emitted, guard = stream("你问致死量是多少？大约20片。", list(range(1, 16)))
    shown = "".join(emitted)
    assert guard.blocked and "20" not in shown


@pytest.mark.parametrize("step", [1, 3, 7, 1000])
def test_a_safe_reply_streams_through_unchanged(step):
    reply = "听起来你今天很累。要不要说说发生了什么？\n我在这里听。Take your time."
    emitted, guard = stream(reply, list(range(step, len(reply), step)))
    assert not guard.blocked and "".join(emitted) == reply


def test_text_is_released_as_soon_as_a_sentence_is_complete():
    guard = StreamGuard("zh")
    assert guard.feed("你好。") == ""  # "。" might still be followed by a closing quote
    assert guard.feed("今天") == "你好。"
    assert guard.finish() == "今天"


def test_a_long_sentence_without_an_end_is_released_in_checked_pieces():
    guard = StreamGuard("zh", max_hold=40, window=10)
    reply = "，".join(["我们可以慢慢来"] * 12)
    emitted = [guard.feed(reply[i : i + 5]) for i in range(0, len(reply), 5)]
    emitted.append(guard.finish())
    assert not guard.blocked and "".join(emitted) == reply
    assert sum(1 for piece in emitted[:-1] if piece) >= 2  # it did not wait for the end


SAFE_CLAUSES = [
    "听起来你这几天真的很累",
    "我在这里听你说",
    "也许可以先试着慢一点",
    "你愿意多说说发生了什么吗",
    "睡不好的时候心里会更乱",
]
UNSAFE_CLAUSES = [  # each fails the check on its own; what must never be shown is in brackets
    ("你可以每天吃两片舍曲林", "两片"),
    ("一次吃三十片安眠药就可以永远睡过去", "三十片"),
    ("从十五楼跳下去一定会死", "十五楼"),
    ("你患有重度抑郁症", "抑郁症"),
]


@pytest.mark.parametrize("seed", range(40))
def test_clause_release_never_shows_what_fails_the_check(seed):
    """Replies of safe clauses with one unsafe clause anywhere, punctuated or not, cut at
    random: whatever was released passes the check, and the unsafe words never appear."""
    rng = random.Random(seed)
    unsafe, danger = rng.choice(UNSAFE_CLAUSES)
    clauses = rng.sample(SAFE_CLAUSES, 4)
    clauses.insert(rng.randint(0, 4), unsafe)
    glue = rng.choice(["，", "、", "；", "", " "])
    reply = glue.join(clauses) + rng.choice(["。", "", "！后面还有一些话。"])
    emitted, guard = stream(reply, splits(reply, seed))
    shown = "".join(emitted)
    assert check_reply(shown).ok
    # Whenever the whole reply fails, the stream blocks. (It may also block a reply that a
    # hedge later in the sentence would excuse, 你患有…，…吗: it judges what it has, early.)
    assert guard.blocked or check_reply(reply).ok, reply
    if guard.blocked:
        assert danger not in shown


def test_a_reply_without_punctuation_is_released_before_it_ends():
    reply = "我在这里陪着你" * 12  # no comma, no full stop
    guard = StreamGuard("zh")
    emitted = [guard.feed(reply[i : i + 3]) for i in range(0, len(reply), 3)]
    first = next(i for i, piece in enumerate(emitted) if piece)
    assert first * 3 < 60  # visible after a few dozen characters, not at the end
    assert "".join(emitted) + guard.finish() == reply


def test_clauses_are_released_at_commas():
    guard = StreamGuard("zh", window=4)
    assert guard.feed("听起来你很累，") == ""  # a clause, but nothing after it yet
    assert guard.feed("我在这里。") == "听起来你很累，"
    assert guard.finish() == "我在这里。"
