"""Read a user message by the care layer's rules: a level, categories and reasons a reader can
audit, in well under a millisecond.

The rules are data, in `rules/*.yaml`; this module only interprets them. Each rule is a
regular expression over normalised text (`text.py`: half-width, simplified, lowercase), tried
only where a match can begin (`scan.py`), and each match is then judged in its surroundings,
by the judgements the rule's `lowered_by` names:

- negation before it in the same clause (我没有想自杀, I'm not suicidal) defuses it;
- a degree complement (累得想死, 尴尬到想死) is hyperbole, not a wish to die;
- a third person or a media frame as its subject (新闻里有人…, a man in the news) lowers it:
  to "concern" for someone the user knows, to "none" for a stranger or a story; the user as
  the one told (她跟我说不想活了) and someone else's words in quotation marks (他念叨"我活着有
  什么用") are that person's;
- a topic frame (关于自杀预防的论文, an article about suicide) is talk about the subject;
- a past event told as past (初中时自残过，现在好多了) is "concern", not "crisis".

Warning signs add up (signs.yaml); a reading whose every risk word was lowered says so
(`rules.lowered`). Each cue a judgement asks about is found once per message (`_Message`), so a
200 KB message costs time in proportion to its length, not to its length times its matches.

This is the first stage of the care layer; `context.py` reads the message against the
conversation, and `care.py` weighs both with the learned stage and decides (CrisisDetector).
Privacy: nothing here sends or stores text.
"""

from __future__ import annotations

import bisect
import itertools
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from anxin.safety import rules
from anxin.safety.rules import Rule, rulebook
from anxin.safety.scan import Scanner, scanner
from anxin.safety.text import (
    CJK,
    LATIN_WORD,
    detect_language,
    matching_text,
    matching_text_and_word_gaps,
    normalize,
)

__all__ = [
    "CRISIS_CATEGORIES",
    "LEVELS",
    "LOWERED",
    "RANK",
    "RISK_WORD",
    "Assessment",
    "detect_language",
    "matching_text",
    "normalize",
    "read_rules",
    "rule_hits",
]

_BOOK = rulebook()
LEVELS = rules.LEVELS
CRISIS_CATEGORIES = rules.CRISIS_CATEGORIES
RANK = {level: rank for rank, level in enumerate(LEVELS)}
# Categories that suggest risk to the user themself: a later vague message ("就在今晚") after
# one of these is read in that light.
SELF_RISK_CATEGORIES = {"suicidal_ideation", "plan_means", "self_harm", "hopelessness"}

RULES: tuple[Rule, ...] = _BOOK.crisis
CONCERN_RULES: tuple[Rule, ...] = _BOOK.concern


@dataclass
class Assessment:
    """What the detector concluded; `reasons` name rules, never the user's words."""

    level: str = "none"
    categories: list[str] = field(default_factory=list)
    language: str = "zh"
    reasons: list[str] = field(default_factory=list)
    # the learned stage's probability of a crisis (None where it did not run): for PR curves
    score: float | None = None

    @property
    def is_crisis(self) -> bool:
        return self.level == "crisis"

    def to_dict(self) -> dict:
        return {
            "level": self.level,
            "categories": list(self.categories),
            "language": self.language,
            "reasons": list(self.reasons),
        }


# --- judging a match in its surroundings (rules/judgement.yaml) ----------------------------------

# Punctuation, an English conjunction, and what stands for a comma on a phone: a WeChat-style
# code ([流泪]) or a run of dots (a space or an emoji between words is a word gap, `_Message`).
_CLAUSE_BREAK = re.compile(
    r"[,，;；:：。!?！？\n…~]|\.(?=\s|$)|\s(?:but|and|so|because)\s"
    r"|\[[\u4e00-\u9fff]{1,4}\]|\.{2,}"
)
_SENTENCE_BREAK = re.compile(r"[。!?！？\n]|\.(?=\s|$)")
_QUOTE_MARK = re.compile('"')
_EVERYDAY_ADJECTIVES = set(_BOOK.lexicon.words["everyday_adjectives_zh"])

_CUES = {name: cue.pattern for name, cue in _BOOK.judgement.items()}
# A risk word (the learned stage's anchors: 死, 自杀, 伤害, 割, 跳…), for `_goes_on_now` and for
# context.py, which asks whether a no to the safety question goes on to tell of a risk.
RISK_WORD = _BOOK.classifier.anchor.pattern
_CUES["person"] = scanner(
    f"(?P<other>{_CUES['person_other'].pattern})|(?P<self>{_CUES['person_self'].pattern})"
)
# A cue that ends in $ is read in the last _TAIL characters before a match: the longest trigger
# and the words it allows after it fit ("asking me whether" + 24 for asked_about, "writing a
# script" + 14 for topic_frame). What follows a match is read in the next _AFTER characters.
_TAIL = 48
_AFTER = 32
# Matches of one rule in one message judged one by one; past this many, a rule's matches are
# judged only until one stands (a message of 5,000 "想死" needs no 5,000 judgements to be a
# crisis). That never lowers a level: only later lowered matches of the rule go unlisted.
_JUDGED_IN_FULL = 20
# Past this many matches of one rule, none of them standing, the rule stands all the same: a
# message that repeats a lowered phrase hundreds of times (他想死，×5,000) cost 20 µs a
# judgement, 150 ms for 20 KB, and such a message is better checked on than read as calm. No
# message in the labelled data comes near it (the most is 9).
_JUDGED_AT_MOST = 200
# What may stand between a negation and a word gap it still reaches across: 没想过 | 自杀. Not
# 说: 所以没说 | 其实我每天都想死 goes on in a new clause.
_OPEN_VERB = re.compile(r"(?:想过?|过)?")
# What may stand between a typed gap and the match a negation before the gap still reaches:
# 我没有 打算自杀, 我不会 真的去自杀的, 我没 想要伤害自己, 没有😅 没有想过死 (typed twice).
# Not 昨天 (没有 昨天吃了半瓶安眠药).
_INTENT_AFTER_GAP = re.compile(r"(?:真的?|要|想要?|打算|会|敢|去|想过|过|没有?|从来){0,3}")
_PREFERENCE_THEN_NO = re.compile(r"[^,.;。!?\n]{0,3}也(?:不|要|没|绝不)")


class _Message:
    """A normalised message, and what every judgement of a match in it shares, found once.

    A judgement asks what lies in a span before a match (a negation in its clause, a person in
    its sentence). Scanning the span for each match made a long message cost its length times
    its matches (6 s for 15 KB of repeated risk words); each cue is found once here instead,
    and `within` answers for a span from that list, as a scan of the span alone would.
    """

    def __init__(self, text: str, word_gaps: Sequence[int] = ()):
        self.text = text
        self._found: dict[Scanner, bool] = {}
        self._matches: dict[str, tuple[list[re.Match[str]], list[int]]] = {}
        # a space or emoji between two Chinese words (不想上学 想死) ends a clause as a comma
        # would, unless a negation ends right before it (我没有 想死, 我从来没想过😊自杀)
        self.word_gaps = tuple(word_gaps)
        gaps = [gap for gap in word_gaps if not self._negation_ends_at(gap)]
        breaks = [found.end() for found in _CLAUSE_BREAK.finditer(text)]
        self._clause_ends = sorted({*breaks, *gaps})
        sentence_breaks = [found.span() for found in _SENTENCE_BREAK.finditer(text)]
        self._sentence_starts = [start for start, _ in sentence_breaks]
        self._sentence_ends = [end for _, end in sentence_breaks]
        self._quotes = [found.start() for found in _QUOTE_MARK.finditer(text)]
        self.scripts = {"zh": bool(CJK.search(text)), "en": bool(LATIN_WORD.search(text))}

    def _negation_ends_at(self, position: int) -> bool:
        """Whether a negation, with at most a verb it leaves open (想过), ends at `position`."""
        cue = self.last("negation", max(0, position - 8), position)
        return cue is not None and bool(_OPEN_VERB.fullmatch(self.text, cue.end(), position))

    # the gaps are in order: a bisection, as a scan of them all for each match of a message
    # with thousands of gaps was quadratic (2 s for 20 KB of 我没有想死 with spaces)
    def first_gap(self, start: int, end: int) -> int | None:
        """The first word gap at a place in [start, end], if any."""
        i = bisect.bisect_left(self.word_gaps, start)
        return self.word_gaps[i] if i < len(self.word_gaps) and self.word_gaps[i] <= end else None

    def last_gap(self, start: int, end: int) -> int | None:
        """The last word gap at a place in [start, end], if any."""
        i = bisect.bisect_right(self.word_gaps, end)
        return self.word_gaps[i - 1] if i and self.word_gaps[i - 1] >= start else None

    def has(self, pattern: Scanner) -> bool:
        """Whether the whole message matches `pattern` (asked once per message)."""
        if pattern not in self._found:
            self._found[pattern] = bool(pattern.search(self.text))
        return self._found[pattern]

    def _cue(self, cue: str) -> tuple[list[re.Match[str]], list[int]]:
        if cue not in self._matches:
            matches = list(_CUES[cue].finditer(self.text))
            self._matches[cue] = (matches, [found.start() for found in matches])
        return self._matches[cue]

    def within(self, cue: str, start: int, end: int) -> Iterator[re.Match[str]]:
        """The matches of a judgement cue in text[start:end], last first."""
        matches, starts = self._cue(cue)
        i = bisect.bisect_left(starts, end)
        if i and matches[i - 1].end() > end:
            # the last one runs past `end`: the span alone may hold a shorter match there
            i -= 1
            yield from reversed(list(_CUES[cue].finditer(self.text, max(start, starts[i]), end)))
        while i and starts[i - 1] >= start:
            i -= 1
            yield matches[i]

    def last(self, cue: str, start: int, end: int) -> re.Match[str] | None:
        """What `within` yields first, without a generator: judging a match asks this often."""
        matches, starts = self._cue(cue)
        i = bisect.bisect_left(starts, end)
        if i and matches[i - 1].end() > end:
            i -= 1
            found = None
            for found in _CUES[cue].finditer(self.text, max(start, starts[i]), end):  # noqa: B007
                pass
            if found is not None:
                return found
        return matches[i - 1] if i and starts[i - 1] >= start else None

    def quotation_opening(self, position: int) -> int | None:
        """Where the quotation holding `position` opens; None outside a closed quotation
        (normalising made “ and ” a plain ", so an even count of marks before it means outside)."""
        i = bisect.bisect_left(self._quotes, position)
        return self._quotes[i - 1] if i % 2 == 1 and i < len(self._quotes) else None

    def clause_start(self, position: int) -> int:
        return self._after_last(self._clause_ends, position)

    def clause_end(self, position: int) -> int:
        """Where the clause holding `position` ends (after its break, or the end of the text)."""
        i = bisect.bisect_right(self._clause_ends, position)
        return self._clause_ends[i] if i < len(self._clause_ends) else len(self.text)

    def sentence_start(self, position: int) -> int:
        return self._after_last(self._sentence_ends, position)

    def sentence_end(self, position: int) -> int:
        """Where the sentence holding `position` ends (its break, or the end of the text)."""
        i = bisect.bisect_left(self._sentence_starts, position)
        return self._sentence_starts[i] if i < len(self._sentence_starts) else len(self.text)

    def _after_last(self, break_ends: list[int], position: int) -> int:
        # As if the text stopped at `position`: a "." right before it ends a clause (tried.I want)
        if position and self.text[position - 1] == ".":
            return position
        i = bisect.bisect_right(break_ends, position)
        return break_ends[i - 1] if i else 0


def _negated(message: _Message, clause_start: int, match_start: int) -> bool:
    # 不想去死: a negation may hold the match's first character (the match begins at 想)
    cue = message.last("negation", clause_start, match_start + 1)
    if cue is not None and (
        cue.start() >= match_start  # the match's own 不想 (不想活)
        or message.text[match_start] in "不没"  # its own 不, made stronger: 再也不想醒来, 并不想活
    ):
        cue = message.last("negation", clause_start, match_start)
    if cue is None:
        return False
    between = message.text[cue.end() : match_start]
    if between and cue.group().endswith("想") and message.text.startswith("想", match_start):
        return False  # 不想上学想死: the match's own 想 is a second wish, not the one negated
    gap = message.last_gap(cue.end(), match_start)
    if gap is not None and not _INTENT_AFTER_GAP.fullmatch(message.text, gap, match_start):
        # 我没有 想死 and 我没有 打算自杀 are denied across the typed gap; 没有 昨天吃了半瓶安眠药
        # is a no, then a new clause that tells what happened
        return False
    too_far = len(between) > (24 if between.isascii() else 7)
    if too_far or _CUES["negation_blocker"].search(between):
        return False
    before = message.text[max(clause_start, cue.start() - _TAIL) : cue.start()]
    return not _CUES["double_negation"].search(before)


def _denied_after(message: _Message, end: int) -> bool:
    """想死倒不至于 / 自杀不会 / 伤害自己？没有: the risk named and said no to right after. A
    typed gap ends the denial's clause as a comma would (自杀不会 我还有我妈)."""
    text = message.text
    gap = message.first_gap(end + 1, end + _AFTER)
    if gap is not None:
        text = f"{text[:gap]},{text[gap:]}"
    return bool(_CUES["denied_after"].match(text, end))


def _degree_complement(text: str, clause_start: int, match_start: int) -> str | None:
    """'none' for 累得想死 (everyday hyperbole), 'concern' for 痛苦得想死, None otherwise."""
    prefix = text[max(clause_start, match_start - _TAIL) : match_start]
    found = None if _CUES["not_degree"].search(prefix) else _CUES["degree"].search(prefix)
    if not found:
        # 累死了算了: the match itself begins right after the adjective
        before = text[max(clause_start, match_start - 2) : match_start]
        if (
            text[match_start : match_start + 1] == "死"
            and before
            and (before[-1] in _EVERYDAY_ADJECTIVES or before in _EVERYDAY_ADJECTIVES)
        ):
            return "none"
        return None
    adjective = found.group("adjective")
    if adjective in _EVERYDAY_ADJECTIVES or adjective[-1] in _EVERYDAY_ADJECTIVES:
        return "none"
    return "concern"


def _subject(message: _Message, sentence_start: int, start: int, end: int) -> str:
    """'self', or 'close' (someone the user knows), or 'stranger' (news, fiction, people)."""
    text = message.text
    match_clause = message.clause_start(start)
    quoted_from = _quoted_speech(message, start)
    if quoted_from is not None:  # 他念叨"我活着有什么用": whoever said it, in the clause before it
        match_clause, start = message.clause_start(quoted_from), quoted_from
        sentence_start = match_clause
        named = list(message.within("person", match_clause, start))
        if named and not any(_may_act(message, person, match_clause) for person in named):
            # 我爸……前几天打电话跟我说"我也活够了": the clause names only me, who was told; the
            # one who said it is named earlier in the sentence (哭着说"我不想活了" names no one:
            # the user said it)
            sentence_start = message.sentence_start(quoted_from)
    if _CUES["relative_clause"].match(text[end : end + _AFTER]):
        if _CUES["kind_of_me"].search(text, max(match_clause, start - 8), start):
            return "self"  # 我这种想死的人: people like me, and I am one
        return "stranger" if not _CUES["person"].search(text[end : end + 8]) else "close"
    if (
        quoted_from is None  # a quotation's speaker is named in its clause, or is the user
        and _CUES["reported_before"].search(text, max(sentence_start, start - 3), start)
        and not message.last("person", sentence_start, start)
    ):
        # 有时甚至说想死 with no one named: the speaker is whoever the sentence before was about
        sentence_start = message.sentence_start(max(0, sentence_start - 1))
    people = (
        person
        for person in message.within("person", sentence_start, start)
        if _may_act(message, person, match_clause)
    )
    last = next(people, None)
    if last is not None and _reflexive(message, last):
        # 她觉得自己不配当妈妈，想死: 自己 after a verb of saying or thinking is its subject
        subject = next(people, None)
        if subject is not None and subject.start() >= message.clause_start(last.start()):
            last = subject
    if last is None or last.group("self"):
        return "self"
    if message.last("media_frame", sentence_start, end) or _CUES["stranger"].search(
        last.group("other")
    ):
        return "stranger"
    return "close"


def _may_act(message: _Message, person: re.Match[str], match_clause: int) -> bool:
    """Whether `person` can be who the match is about. 让他 / 把她 name an object, not who
    acts; 让我 still makes me the one who feels it, unless I am only the one told, in the
    clause of the match (她跟我说不想活了; not 老公对我吼，不想活了, where the wish is mine)."""
    if person.group("self"):
        return not (person.start() >= match_clause and _told_me(message, person))
    if _addressed(message, person):
        return False
    text, start = message.text, person.start()
    if _CUES["object_marker"].search(text, max(0, start - 3), start):
        return False
    return not (  # a role the speaker holds: 我不配当妈妈, 朋友都做不成
        _CUES["role_before"].search(text, max(0, start - 8), start)
        or _CUES["role_after"].match(text[person.end() : person.end() + 6])
    )


def _reflexive(message: _Message, person: re.Match[str]) -> bool:
    """自己 right after a verb of saying or thinking (她说自己, 他觉得自己): the self of whoever
    says or thinks it, named earlier in the clause, not necessarily the user."""
    start = person.start()
    return person.group("self") == "自己" and bool(
        _CUES["reflexive_after"].search(message.text, max(0, start - 2), start)
    )


def _addressed(message: _Message, person: re.Match[str]) -> bool:
    """姐妹们，安眠药一次吃多少…; 有没有姐妹知道…: whom a post asks, not whom it is about."""
    start, text = person.start(), message.text
    word = _CUES["address_word"].match(text[start : start + 6])
    if word is None:
        return False
    if _CUES["addressed_before"].search(text, max(0, start - 4), start):
        return True
    after = start + word.end()  # a vocative: it opens a clause, and a break follows it
    breaks = (
        after == len(text)
        or text[after] in ",!:~ "
        or message.first_gap(after, after) is not None  # a typed space or emoji
    )
    return start == message.clause_start(start) and breaks


def _quoted_speech(message: _Message, start: int) -> int | None:
    """Where a closed quotation holding `start` opens, when a verb of saying comes right before
    it (quote_said reads the four characters before the mark); None otherwise."""
    opening = message.quotation_opening(start)
    if opening is None or not _CUES["quote_said"].search(
        message.text, max(0, opening - 4), opening
    ):
        return None
    return opening


def _told_me(message: _Message, person: re.Match[str]) -> bool:
    """跟我说 / 给我打电话: the user is who is told; the one telling is who the words are about.
    The span reaches 2 characters before 我 (告诉) and 4 after it, the longest verb told_me
    looks ahead for (打电话, 发消息)."""
    told = message.last("told_me", max(0, person.start() - 2), person.end() + 4)
    return told is not None and told.start() <= person.start() < told.end()


def _preference_idiom(message: _Message, clause_start: int, start: int, end: int) -> bool:
    """宁愿去死也不…: 'I would rather die than …', a way of saying no."""
    return bool(message.last("preference", clause_start, end)) and bool(
        _PREFERENCE_THEN_NO.match(message.text[end : end + _AFTER])
    )


def _told_as_past(message: _Message, rule: Rule, sentence_start: int, start: int, end: int) -> bool:
    """初中时自残过，现在好多了: an experience told as past, not something happening now."""
    experienced = rule.act and message.text[end : end + 1] == "过"  # 自残过; 想过死 is ideation
    past = message.last("past", sentence_start, message.sentence_end(end))
    if past is None:
        past = _period_over(message, sentence_start, start)
    # 以前我很开心，现在我想死: a "now" between the past and the match turns the story to today
    told_then = past is not None and not message.last("now", past.end(), start)
    return (experienced or told_then) and not _goes_on_now(message, start)


def _period_over(message: _Message, sentence_start: int, start: int) -> re.Match[str] | None:
    """三年前 / 那两年 / 之前 before the match, in a message that says after it that the risk is
    over (之前想过死，现在没有了; not 之前的检查都正常，但我想死) and brings nothing back: a
    present cue after that word counts only when its clause turns against it (可是这两天又睡不着,
    那会儿好起来了，可是这半年又复发了; not 就是最近工作很累, 最近还养了一只猫)."""
    period = message.last("past_period", sentence_start, start)
    over = _said_over(message, start) if period else None
    if over is None:
        return None
    for found in _present_cues(message, over):
        clause = message.text[
            message.clause_start(found.start()) : message.clause_end(found.start())
        ]
        if found.start() < over.start() or _CUES["contrast"].search(clause):
            return None
    return period


def _said_over(message: _Message, after: int) -> re.Match[str] | None:
    """The last word after `after` that the risk is over (现在好多了) which the user stands by:
    not one doubted before it (我以为已经过去了, 大家都说) or taken back after it (现在不想了……
    才怪, 现在没有了？怎么可能, 骗你们的)."""
    text = message.text
    for over in message.within("recovery", after, len(text)):
        start, end = over.span()
        if not (
            message.last("recovery_doubted", max(0, start - _DOUBTED_BEFORE), start)
            or message.last("recovery_questioned", end, end + _DENIED_AFTER)
            or message.last("recovery_taken_back", end, len(text))
        ):
            return over
    return None


def _present_cues(message: _Message, over: re.Match[str]) -> Iterator[re.Match[str]]:
    """The message's present cues, less the past's habit told before the word of recovery
    `over` (那两年天天想死，现在好了)."""
    for found in message.within("present", 0, len(message.text)):
        if not (found.start() < over.end() and _CUES["habit"].compiled.fullmatch(found.group())):
            yield found


_DOUBTED_BEFORE = 6  # characters read before a word of recovery (家里人都以为很久没有这样了)
_DENIED_AFTER = 12  # and after it (现在不想了……才怪)
# A clause this short (its break counted) that holds a present cue sets the time of the next.
_TIME_PHRASE = 7


def _goes_on_now(message: _Message, start: int) -> bool:
    """Whether a risk told as past goes on now, by the present cues (又, 最近, 一直).

    Where the message does not say the risk is over, any present cue makes it now (以前想过割腕。
    昨晚又没忍住 speaks of the risk without its words). Where it says so (现在好多了), the risk is
    past unless a present cue brings it back in a clause that speaks of it (a clause as short
    as 直到今天下午 is read with the next): a risk word in its own sense, or `relapse` (复发,
    又不对劲了, 又回到那种状态, 阳台, 没控制住); after that word, or before it when the cue is
    recent rather than the past's habit (最近又想死了，好几年没这样了; not 那时候天天想死).
    This reads only more as now than the earlier rule, which called any message with a word of
    recovery past (以前想过死，现在好多了，可最近又想死了 was a concern)."""
    text = message.text
    over = _said_over(message, 0)
    if over is None:
        return message.has(_CUES["present"])
    for found in _present_cues(message, over):
        begins, ends = message.clause_start(found.start()), message.clause_end(found.start())
        if ends - begins <= _TIME_PHRASE:  # 直到今天下午，没控制住
            ends = message.clause_end(ends)
        clause = text[begins:ends]
        risk_words = _CUES["everyday_risk_word"].compiled.sub("", clause)  # not 忙得要死, 学跳舞
        if RISK_WORD.search(risk_words) or _CUES["relapse"].search(clause):
            return True
    return False


@dataclass(frozen=True)
class Hit:
    level: str
    category: str
    reason: str


def _judge(rule: Rule, message: _Message, match: re.Match[str]) -> Hit:
    """The rule's level, or a lower one with the reason why, in the order LOWERINGS lists."""
    text, (start, end) = message.text, match.span()
    clause_start, sentence_start = message.clause_start(start), message.sentence_start(start)
    clause = text[max(clause_start, start - _TAIL) : start]  # for the cues that end in $
    lowered_by, name = rule.lowered_by, rule.name
    if "negation" in lowered_by and (
        _negated(message, clause_start, start) or _denied_after(message, end)
    ):
        return Hit("none", rule.category, f"{name}:negated")
    if "hyperbole" in lowered_by and (degree := _degree_complement(text, clause_start, start)):
        return Hit(degree, "hopelessness", f"{name}:hyperbole")
    if "topic" in lowered_by and _CUES["topic_frame"].search(clause):
        return Hit("none", rule.category, f"{name}:topic")
    asked = "asked_about" in lowered_by and _CUES["asked_about"].search(clause)
    if asked and not message.has(_CUES["said_yes"]):  # asked, and the answer was not yes
        return Hit("none", rule.category, f"{name}:asked_about")
    if "preference_idiom" in lowered_by and _preference_idiom(message, clause_start, start, end):
        return Hit("none", rule.category, f"{name}:preference_idiom")
    if "fear" in lowered_by and message.last("fear", sentence_start, start):
        return Hit("none", rule.category, f"{name}:fear_of_death")
    if lowered_by & {"someone_else", "stranger"}:
        who = _subject(message, sentence_start, start, end)
        if who == "stranger":
            return Hit("none", "third_party", f"{name}:reported")
        # `stranger` only: someone close in danger of abuse is an emergency the user can act on
        if who == "close" and "someone_else" in lowered_by:
            return Hit("concern", "third_party", f"{name}:third_party")
    if "past" in lowered_by and _told_as_past(message, rule, sentence_start, start, end):
        return Hit("concern", "past_history", f"{name}:past")
    level = rule.level
    if rule.escalate_if is not None and message.has(rule.escalate_if):
        level = "crisis"
    if "joke" in lowered_by and level == "crisis" and message.has(_CUES["joke"]):
        return Hit("concern", rule.category, f"{name}:joking")
    return Hit(level, rule.category, name)


def _hits(message: _Message, rules: Iterable[Rule]) -> list[Hit]:
    hits = []
    for rule in rules:
        # Chinese rules need Chinese characters, English rules Latin letters: skipping the
        # other script's rules halves the work on most messages.
        if not message.scripts.get(rule.script, True):
            continue
        if rule.requires is not None and not message.has(rule.requires):
            continue
        if rule.unless is not None and message.has(rule.unless):
            continue
        for count, match in enumerate(rule.pattern.finditer(message.text)):
            if count == _JUDGED_AT_MOST:
                hits.append(Hit(rule.level, rule.category, rule.name))
                break
            hits.append(_judge(rule, message, match))
            if count >= _JUDGED_IN_FULL and hits[-1].reason == rule.name:
                break
    return hits


def rule_hits(rule: Rule, text: str) -> list[Hit]:
    """Each match of one rule in a message, judged in its surroundings (for tests and review)."""
    return _hits(_Message(*matching_text_and_word_gaps(text)), [rule])


# --- the rules' reading of one message -------------------------------------------------------------


def read_rules(text: str) -> Assessment:
    """What the rules and the warning signs make of one message on its own."""
    level, categories, language, reasons = _read_cached(text)
    return Assessment(level, list(categories), language, list(reasons))


@lru_cache(maxsize=4096)
def _read_cached(text: str) -> tuple[str, tuple[str, ...], str, tuple[str, ...]]:
    message = _Message(*matching_text_and_word_gaps(text))
    hits = _hits(message, RULES) + _hits(message, CONCERN_RULES)
    level = max((hit.level for hit in hits), key=RANK.__getitem__, default="none")
    reasons = [hit.reason for hit in hits]
    level, signs = _with_warning_signs(message, level, hits)
    reasons += [f"sign.{name}" for name in signs]
    categories = unique(hit.category for hit in hits if hit.level == level and level != "none")
    if level != "crisis" and _every_risk_word_lowered(message, reasons):
        reasons.append(LOWERED)
    return level, tuple(categories), detect_language(message.text), tuple(unique(reasons))


# --- warning signs that add up: one alone is concern, together they are a plan (signs.yaml) -----
def _with_warning_signs(message: _Message, level: str, hits: list[Hit]) -> tuple[str, list[str]]:
    """The level the signs give, and their names; `hits` gains the one that set the level."""
    signs = [sign.name for sign in _BOOK.signs if sign.finds(message.text)]
    if not signs:
        return level, signs
    one_is_enough = any(
        hit.level == "concern" and hit.category in _BOOK.crisis_with_mood for hit in hits
    )
    if _BOOK.crisis_after_past & set(signs):  # 以前想过死……可这周我把猫送人了
        # past_history: the category `_judge` gives a risk it lowered as told in the past
        one_is_enough |= any(h.level == "concern" and h.category == "past_history" for h in hits)
    if level != "crisis" and (len(signs) >= 2 or one_is_enough):
        hits.append(Hit("crisis", "plan_means", "warning_signs"))
        return "crisis", signs
    if level == "none":
        hits.append(Hit("concern", "warning_sign", "warning_signs"))
        return "concern", signs
    return level, signs


# --- risk words all lowered by the rules (classifier.yaml: anchor and cues) --------------------

# The reason a reading carries when every risk word in it was lowered by its context (a negation,
# hyperbole, someone else, the past, an idiom, an accident), or a rule weighed a threat itself.
LOWERED = "rules.lowered"
# Reasons the rules give for lowering a match: the classifier may not overrule them.
_LOWERED = tuple(
    f":{reason}"
    for reason in (
        "negated",
        "hyperbole",
        "topic",
        "asked_about",
        "preference_idiom",
        "fear_of_death",
        "reported",
        "third_party",
        "past",
        "joking",
    )
)
# Rules that weigh a threat themselves and chose "concern" unless a weapon, a plan or a
# grievance makes it serious: the classifier does not second-guess them.
_SELF_ESCALATING = {rule.name for rule in (*RULES, *CONCERN_RULES) if rule.escalate_if is not None}


def _every_risk_word_lowered(message: _Message, reasons: list[str]) -> bool:
    """A rule lowered or weighed a match, or every risk word is lowered in its context: then
    the learned stage may raise the message to concern, not to crisis (care.py)."""
    if any(reason.endswith(_LOWERED) or reason in _SELF_ESCALATING for reason in reasons):
        return True
    gate = _BOOK.classifier
    idioms = [found.span() for found in gate.cues["idiom"].pattern.finditer(message.text)]
    idiom_starts = [start for start, _ in idioms]

    def in_idiom(position: int) -> bool:
        i = bisect.bisect_right(idiom_starts, position)
        return bool(i) and position < idioms[i - 1][1]

    outside = (m for m in gate.anchor.pattern.finditer(message.text) if not in_idiom(m.start()))
    anchors = list(itertools.islice(outside, _JUDGED_AT_MOST + 1))  # past that, not judged
    if not anchors:
        # no risk word outside an idiom: lowered if there was one inside, free if none at all
        return bool(idioms) and bool(gate.anchor.pattern.search(message.text))
    if message.has(gate.cues["accident"].pattern):
        return True  # 切菜的时候割到手: a cut, not self-harm
    if len(anchors) > _JUDGED_AT_MOST:
        return False  # too many to judge one by one: not read as calm (_JUDGED_AT_MOST)
    return all(_judge(gate.anchor, message, anchor).level != "crisis" for anchor in anchors)


def unique(items: Iterable[str]) -> list[str]:
    """`items` in first-seen order, each once."""
    return list(dict.fromkeys(items))
