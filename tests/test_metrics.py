"""Metric functions against values worked out by hand on tiny strings."""

import math

import pytest

from anxin import metrics


def test_bleu4_partial_match_by_hand():
    # Characters a b c d vs a b c e: precisions 3/4, 2/3, 1/2 and 0/1; method3 turns the zero
    # into 1/(2·1). No brevity penalty (equal lengths).
    expected = (3 / 4 * 2 / 3 * 1 / 2 * 1 / 2) ** 0.25 * 100
    assert metrics.bleu4("abcd", "abce") == pytest.approx(expected)
    assert expected == pytest.approx(59.4604, abs=1e-4)


def test_bleu4_short_reply_pays_the_brevity_penalty():
    # "ab" against "abcd": p1 = p2 = 1, no 3- or 4-grams: 1/2 and 1/4; BP = exp(1 - 4/2).
    expected = math.exp(-1) * (1 * 1 * 0.5 * 0.25) ** 0.25 * 100
    assert metrics.bleu4("ab", "abcd") == pytest.approx(expected)


def test_bleu4_is_on_characters_and_bounded():
    assert metrics.bleu4("我今天很难过", "我今天很难过") == pytest.approx(100)
    assert metrics.bleu4("", "我今天很难过") == 0.0
    assert metrics.bleu4("xyz", "我今天很难过") < 1


def test_rouge_on_words_by_hand():
    # the cat sat / the cat ran: 2 of 3 unigrams, 1 of 2 bigrams, LCS of 2 words.
    scores = metrics.rouge("the cat sat", "the cat ran")
    assert scores["rouge-1"] == pytest.approx(200 / 3, abs=1e-4)
    assert scores["rouge-2"] == pytest.approx(50, abs=1e-4)
    assert scores["rouge-l"] == pytest.approx(200 / 3, abs=1e-4)


def test_rouge_segments_chinese_with_jieba():
    assert metrics.words("我很难过") == ["我", "很", "难过"]
    # 我 很 难过 / 我 很 开心: same shape as the English case.
    assert metrics.rouge("我很难过", "我很开心")["rouge-1"] == pytest.approx(200 / 3, abs=1e-4)
    assert metrics.rouge("", "我很开心") == {"rouge-1": 0.0, "rouge-2": 0.0, "rouge-l": 0.0}


def test_similarity_averages_over_replies():
    scores = metrics.similarity(["abcd", "abcd"], ["abcd", "wxyz"])
    assert scores["bleu-4"] == pytest.approx(50)
    with pytest.raises(ValueError):
        metrics.similarity(["a"], [])


def test_distinct_pools_replies_but_not_across_them():
    # words a a b | a c: unigrams a,a,b,a,c (3 unique of 5); bigrams aa, ab | ac (3 of 3).
    assert metrics.distinct(["a a b", "a c"], 1) == pytest.approx(3 / 5)
    assert metrics.distinct(["a a b", "a c"], 2) == pytest.approx(1.0)
    assert metrics.distinct(["a a a a"], 2) == pytest.approx(1 / 3)
    assert metrics.distinct(["", ""], 1) == 0.0


@pytest.mark.parametrize(
    ("text", "looping"),
    [
        ("我明白。我明白。我明白。", True),
        ("I am here. I am here. I am here.", True),
        ("好的好的好的好的好的好的好的好的好的好的好的好的", True),
        ("哈哈哈", False),
        ("我明白。我明白。你愿意多说说吗？", False),
        ("That sounds hard. What happened today?", False),
    ],
)
def test_is_repetitive(text, looping):
    assert metrics.is_repetitive(text) is looping


def test_scripts_and_wrong_language():
    assert metrics.dominant_script("你好 hi") == "cjk"
    assert metrics.dominant_script("hello 你") == "latin"
    assert metrics.dominant_script("Привет") == "other"
    assert metrics.dominant_script("…!? 123") is None
    assert metrics.is_wrong_language("I hear you.", "我听见了。")
    assert not metrics.is_wrong_language("我听见了 OK", "我听见了。")
    assert not metrics.is_wrong_language("", "我听见了。")


def test_reply_quality_shares():
    quality = metrics.reply_quality(
        ["", "I see. I see. I see.", "我懂你的感受。", "Sure."],
        ["我在。", "我明白。", "我明白你。", "好的。"],
    )
    assert quality["empty"] == 0.25
    assert quality["repetitive"] == 0.25
    assert quality["wrong_language"] == 0.5  # the two English replies to Chinese references
    assert quality["reply_chars"] == pytest.approx((0 + 20 + 7 + 5) / 4)
    assert quality["reference_chars"] == pytest.approx((3 + 4 + 5 + 3) / 4)


def test_perplexity_is_exp_of_loss_and_never_overflows():
    assert metrics.perplexity(math.log(7)) == pytest.approx(7)
    assert math.isfinite(metrics.perplexity(1e6))
