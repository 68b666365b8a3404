"""Check the model's reply before anyone sees it, whole or while it streams.

A reply fails when it gives lethal-means detail (a dose or quantity tied to death, a height to
fall from, how a method is done), states a diagnosis as fact (你患有抑郁症, you have bipolar
disorder), or tells the user how to take, change or stop a medication (每天吃两片舍曲林, take
50mg of sertraline). Hedged or deferring sentences pass: 可能…建议找医生评估, talk to your
doctor before changing your dose.

Streaming: `StreamGuard` releases text clause by clause (not only at sentence ends, so a reply
without punctuation does not arrive all at once), each piece only after it passed the check
together with the rest of its sentence known so far, the characters that follow it, and the
sentence before it: no text that fails the check is ever shown.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

from anxin.safety.rules import ReplyRule, rulebook
from anxin.safety.text import SENTENCE_END, normalize, split_sentences

# What a reply may not say, with the hedges that excuse it: rules/reply.yaml, over the shared
# lexicon of medicines, diagnoses and amounts (rules/lexicon.yaml).
_RULES = rulebook().reply

_SOFT_BOUNDARY = re.compile(r"[，,；;：:、\s]")


@dataclass
class ReplyVerdict:
    ok: bool
    reasons: list[str] = field(default_factory=list)


# Sentences up to this long have their reading kept: a reply repeats its short sentences (好的。
# 好的。), and each costs a normalising and a scan whatever it holds (20 KB of one short sentence
# took 160 ms unkept). Longer ones are not kept: the stream guard reads a growing sentence again
# and again, and keeping each prefix of a long one held tens of megabytes.
_KEPT_UP_TO = 200


def _sentence_reasons(sentence: str, known: frozenset[str] = frozenset()) -> list[str]:
    """The rules `sentence` breaks, leaving out those in `known` (already found elsewhere)."""
    read = _kept_reading if len(sentence) <= _KEPT_UP_TO else _broken_rules
    return [name for name in read(sentence) if name not in known]


def _broken_rules(sentence: str) -> tuple[str, ...]:
    text = normalize(sentence)
    return tuple(rule.name for rule in _RULES if _breaks(rule, text))


_kept_reading = lru_cache(maxsize=4096)(_broken_rules)


def _breaks(rule: ReplyRule, text: str) -> bool:
    if rule.requires is not None and not rule.requires.search(text):
        return False  # first: a word the rule needs is cheaper to look for than its pattern
    if not rule.pattern.search(text):
        return False
    return rule.unless is None or not rule.unless.search(text)  # it hedges, or defers to a doctor


def _joined(previous: str, sentence: str) -> str:
    """Two sentences as one clause, so a rule can see 致死量是多少？大约20片 together."""
    if not previous:
        return sentence
    return previous.rstrip().rstrip("。！？!?.…\n") + "，" + sentence


def check_reply(text: str, language: str | None = None) -> ReplyVerdict:
    """Whether a model reply may be shown; `reasons` name the rules it broke.

    Both languages' rules run whatever `language` says, since replies mix them.
    """
    sentences = [s for s in split_sentences(text) if s.strip()]
    reasons: list[str] = []
    for i, sentence in enumerate(sentences):
        # a rule already broken is not listed again: each reason once, where it was first found
        reasons += _sentence_reasons(sentence, frozenset(reasons))
        if i:
            reasons += _sentence_reasons(_joined(sentences[i - 1], sentence), frozenset(reasons))
    return ReplyVerdict(ok=not reasons, reasons=reasons)


class StreamGuard:
    """Release streamed text clause by clause, and only what has passed the check.

    `feed(delta)` returns what may be shown now; `finish()` returns the rest. Text is released
    at a clause boundary (，、；： , ; : and the ends of sentences) once `window` more characters
    have arrived after it, or in pieces once `max_hold` characters wait with no boundary. Before
    anything is released, the check reads all that is known of its sentence (the part already
    shown, the piece, and the characters after it) and that sentence joined to the one before,
    so a rule whose words straddle a clause or sentence boundary is seen before either side is
    shown. Once the check fails, `blocked` is True, `reasons` says why, and feed/finish return
    "" from then on (including the call that saw it): the caller shows `safe_replacement`
    instead. What was shown before that point passed the check with what followed it.
    """

    def __init__(self, language: str | None = "zh", max_hold: int = 40, window: int = 16):
        self.language = language
        self.max_hold = max_hold
        self.window = window
        self.blocked = False
        self.reasons: list[str] = []
        self._pending = ""
        self._sentence = ""  # the part of the current sentence already released
        self._previous = ""  # the last whole sentence released, for rules that span two

    def feed(self, delta: str) -> str:
        if self.blocked:
            return ""
        self._pending += delta
        released = []
        while (end := self._confirmed_boundary()) is not None:
            sentence, self._pending = self._pending[:end], self._pending[end:]
            if not self._accept(self._sentence + sentence):
                return ""
            released.append(sentence)
            self._previous, self._sentence = self._sentence + sentence, ""
        if (cut := self._clause_cut()) and self._accept(self._sentence + self._pending):
            released.append(self._pending[:cut])
            self._sentence += self._pending[:cut]
            self._pending = self._pending[cut:]
        return "" if self.blocked else "".join(released)

    def finish(self) -> str:
        if self.blocked:
            return ""
        rest, self._pending = self._pending, ""
        if rest and not self._accept(self._sentence + rest):
            return ""
        return rest

    def _confirmed_boundary(self) -> int | None:
        """End of the first sentence, if no later character could still belong to it."""
        found = SENTENCE_END.search(self._pending)
        if found is None or found.end() >= len(self._pending):
            return None  # "。" at the very end may be followed by "」", "2." by "5mg"
        return found.end()

    def _clause_cut(self) -> int | None:
        """Where to release part of an unfinished sentence: the last clause boundary with at
        least `window` characters after it, else (past `max_hold`) all but the last `window`."""
        limit = len(self._pending) - self.window
        if limit <= 0:
            return None
        cuts = [m.end() for m in _SOFT_BOUNDARY.finditer(self._pending, 0, limit)]
        if cuts:
            return cuts[-1]
        return limit if len(self._pending) > self.max_hold else None

    def _accept(self, known: str) -> bool:
        """Whether everything known of the current sentence (alone and joined to the one
        before it) passes; a failure blocks the stream for good."""
        reasons = _sentence_reasons(known) + _sentence_reasons(_joined(self._previous, known))
        if reasons:
            self.blocked = True
            self.reasons = list(dict.fromkeys(reasons))
            self._pending = ""
            return False
        return True
