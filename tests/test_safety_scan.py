"""`Scanner` finds exactly the matches of the pattern it wraps, only faster on long texts."""

import random
import re
from re import _constants as sre  # type: ignore[attr-defined]
from re import _parser as parser  # type: ignore[attr-defined]

import pytest
from test_safety_rules import fuzzed_message

from anxin.safety.classifier import _WORD_CLASS_PATTERNS
from anxin.safety.rules import rulebook
from anxin.safety.scan import Scanner, scanner
from anxin.safety.text import matching_text


def every_shipped_pattern() -> list[Scanner]:
    book = rulebook()
    found = []
    for rule in (*book.crisis, *book.concern):
        found += [rule.pattern, rule.requires, rule.unless, rule.escalate_if]
    for reply_rule in book.reply:
        found += [reply_rule.pattern, reply_rule.requires, reply_rule.unless]
    cues = [*book.judgement.values(), *book.context.values(), *book.classifier.cues.values()]
    found += [cue.pattern for cue in (*cues, *book.signs)]
    found += [pattern for _, pattern in _WORD_CLASS_PATTERNS]
    return [pattern for pattern in found if pattern is not None]


def spans(matches) -> list[tuple[int, int]]:
    return [found.span() for found in matches]


def anchored(pattern: str) -> bool:
    """Whether every match must begin at the start of the text: each alternative opens with ^."""
    parsed = list(parser.parse(pattern))
    if parsed and parsed[0][0] == sre.AT and parsed[0][1] == sre.AT_BEGINNING:
        return True
    if len(parsed) == 1 and parsed[0][0] == sre.BRANCH:
        return all(anchored_items(list(branch)) for branch in parsed[0][1][1])
    return False


def anchored_items(items: list) -> bool:
    return bool(items) and items[0][0] == sre.AT and items[0][1] == sre.AT_BEGINNING


def test_most_shipped_patterns_get_a_list_of_beginnings():
    """A pattern anchored at the start in every alternative (a `requires` such as
    ^(?!.*(?:游戏|比赛)), an answer cue such as ^还没) is tried at one place by the engine itself,
    as quick as a list would make it; the others should mostly get their beginnings listed, and
    the anchored ones stay few."""
    patterns = every_shipped_pattern()
    unanchored = [p for p in patterns if not anchored(p.compiled.pattern)]
    listed = [pattern for pattern in unanchored if pattern.first is not None]
    assert len(unanchored) > 150 and len(listed) > 0.95 * len(unanchored)
    assert len(patterns) - len(unanchored) < 0.15 * len(patterns)
    assert anchored("^a|^b") and not anchored("^a|b") and not anchored("a^")


def test_every_shipped_pattern_finds_the_same_matches_as_the_engine():
    rng = random.Random(7)
    texts = [matching_text(fuzzed_message(rng, rng.randint(200, 3_000))) for _ in range(20)]
    for pattern in every_shipped_pattern():
        for text in texts:
            start = rng.randrange(len(text) + 1)
            end = rng.randrange(start, len(text) + 1)
            assert spans(pattern.finditer(text)) == spans(pattern.compiled.finditer(text))
            assert spans(pattern.finditer(text, start, end)) == spans(
                pattern.compiled.finditer(text, start, end)
            ), pattern.pattern
            expected = pattern.compiled.search(text, start)
            assert spans(filter(None, [pattern.search(text, start)])) == spans(
                filter(None, [expected])
            )


@pytest.mark.parametrize(
    "pattern, text",
    [
        (r"(?<!不)想死|\bkill\s+myself\b", "x" * 300 + "不想死 想死 i will kill myself"),
        (r"\bi\b|\bmy\b|\b\d+片", "this is my time, hi i am 30片 a30片 " * 20),
        (r"(?a:\bx)|y", "片x éx x y " * 10),  # an ASCII \b in a group: left to the engine
        (r"\d+\s*(?:片|粒)", "吃了 30 片 " * 40 + "12粒"),
        (r"(?:我的?|他)?(?:朋友|同学)说", "他朋友说，我同学说，" * 30),
        (r"a*b", "aaab" * 100),  # a repeat that may be empty before the one required character
        (r"^想死", "想死" * 200),  # anchored at the start: left to the engine
        (r"(?i)kill", "KILL kill " * 50),  # case-insensitive: left to the engine
        (r"\w+死", "累死 " * 100),  # may begin with any letter: left to the engine
        # a part every match holds, absent, present, or only in a lookaround or an option
        (r"他.{0,8}打了?我", "他想死" * 200),
        (r"他.{0,8}打了?我", "他想死" * 200 + "他昨天打了我"),
        (r"(?:他|她)想(?=.*打)", "他想死" * 100 + "打"),
        (r"(?:打)?我想死", "我想死" * 100),
        (r"[打揍]我|被(?:打|骂)", "他想死" * 100 + "被骂了" + "揍我"),
    ],
)
def test_a_pattern_finds_what_the_engine_finds(pattern, text):
    fast = scanner(pattern)
    assert spans(fast.finditer(text)) == spans(re.finditer(pattern, text))
    assert spans(fast.finditer(text, 7, len(text) - 5)) == spans(
        re.compile(pattern).finditer(text, 7, len(text) - 5)
    )


def test_patterns_that_may_begin_anywhere_are_left_to_the_engine():
    assert scanner(r"^想死").first is None
    assert scanner(r"(?i)kill").first is None
    assert scanner(r"\w+死").first is None
    assert scanner(r"x?").first is None  # may match empty
    assert scanner(r"(?<!不)想死|\bkill").first.pattern == r"(?:k(?<=\bk)il|想死)"


def test_a_beginning_that_opens_a_word_is_not_looked_for_inside_one():
    """\\bi: the i of 'this' or 'hi' is no candidate (1,026 of them in a 13 KB fuzzed message,
    each tried by the person cue: 25 ms), the i of 'i am' is, even where a search starts right
    after the letter before it."""
    first = scanner(r"\bi\b|\bmy\b").first
    text = "this is my time, hi i am"
    assert [found.start() for found in first.finditer(text)] == [5, 8, 20]
    assert first.search("hi", 1) is None and first.search(" i", 1).start() == 1


def test_a_scanner_is_the_compiled_pattern_for_everything_else():
    fast = scanner(r"想死")
    assert fast.pattern == "想死" and fast.sub("x", "我想死") == "我x"


def test_a_part_every_match_holds_is_the_most_telling_one_named():
    """Checked first on a long text: where it is missing, no beginning is tried."""
    assert scanner(r"他.{0,8}打了?我").required.pattern == "打"  # not 他 or 我: too common
    assert scanner(r"(?:打)?我想死").required.pattern == "我想死"  # 打 is optional
    assert scanner(r"想(?=自杀)").required.pattern == "想"  # what a lookahead sees is not held
    assert set(scanner(r"[打揍]我|被(?:打|骂)").required.pattern.split("|")) == {"打", "揍", "被"}
    assert scanner(r"想死|\d{3}").required is None  # digits: no string named
