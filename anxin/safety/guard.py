"""Check the model's reply before anyone sees it, whole or while it streams.

A reply fails when it gives lethal-means detail (a dose or quantity tied to death, a height to
fall from, how a method is done), states a diagnosis as fact (你患有抑郁症, you have bipolar
disorder), or tells the user how to take, change or stop a medication (每天吃两片舍曲林, take
50mg of sertraline). Hedged or deferring sentences pass: 可能…建议找医生评估, talk to your
doctor before changing your dose.

Streaming: `StreamGuard` releases text one sentence at a time, only after the sentence (and
the pair it forms with the one before) passed the check, so no part of an unsafe sentence is
ever shown. A sentence longer than `max_hold` characters is released in pieces, keeping the
last `window` characters back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from anxin.safety.rules import ReplyRule, rulebook
from anxin.safety.text import normalize

# What a reply may not say, with the hedges that excuse it: rules/reply.yaml, over the shared
# lexicon of medicines, diagnoses and amounts (rules/lexicon.yaml).
_RULES = rulebook().reply

_BOUNDARY = re.compile(r"[。！？!?\n…]+[”’」』）)\"']*|\.(?=\s)[”’」』）)\"']*")
_SOFT_BOUNDARY = re.compile(r"[，,；;：:、\s]")


@dataclass
class ReplyVerdict:
    ok: bool
    reasons: list[str] = field(default_factory=list)


def _sentence_reasons(sentence: str) -> list[str]:
    text = normalize(sentence)
    return [rule.name for rule in _RULES if _breaks(rule, text)]


def _breaks(rule: ReplyRule, text: str) -> bool:
    if not rule.pattern.search(text):
        return False
    if rule.unless is not None and rule.unless.search(text):
        return False  # it hedges, or defers to a doctor
    return rule.requires is None or bool(rule.requires.search(text))


def _joined(previous: str, sentence: str) -> str:
    """Two sentences as one clause, so a rule can see 致死量是多少？大约20片 together."""
    if not previous:
        return sentence
    return previous.rstrip().rstrip("。！？!?.…\n") + "，" + sentence


def split_sentences(text: str) -> list[str]:
    """Sentences with their end punctuation, in order; joined they give back `text`."""
    pieces, start = [], 0
    for boundary in _BOUNDARY.finditer(text):
        pieces.append(text[start : boundary.end()])
        start = boundary.end()
    if start < len(text):
        pieces.append(text[start:])
    return pieces


def check_reply(text: str, language: str | None = None) -> ReplyVerdict:
    """Whether a model reply may be shown; `reasons` name the rules it broke.

    Both languages' rules run whatever `language` says, since replies mix them.
    """
    sentences = [s for s in split_sentences(text) if s.strip()]
    reasons: list[str] = []
    for i, sentence in enumerate(sentences):
        reasons += _sentence_reasons(sentence)
        if i:
            reasons += _sentence_reasons(_joined(sentences[i - 1], sentence))
    unique = list(dict.fromkeys(reasons))
    return ReplyVerdict(ok=not unique, reasons=unique)


class StreamGuard:
    """Release streamed text sentence by sentence, and only once each sentence is safe.

    `feed(delta)` returns what may be shown now; `finish()` returns the rest. Once a sentence
    fails, `blocked` is True, `reasons` says why, and feed/finish return "" from then on
    (including the call that saw it): the caller shows `safe_replacement` instead.
    """

    def __init__(self, language: str | None = "zh", max_hold: int = 400, window: int = 60):
        self.language = language
        self.max_hold = max_hold
        self.window = window
        self.blocked = False
        self.reasons: list[str] = []
        self._pending = ""
        self._previous = ""  # the last piece released, for rules that span two sentences

    def feed(self, delta: str) -> str:
        if self.blocked:
            return ""
        self._pending += delta
        released = []
        while (end := self._confirmed_boundary()) is not None:
            sentence, self._pending = self._pending[:end], self._pending[end:]
            if not self._accept(sentence):
                return ""
            released.append(sentence)
        if len(self._pending) > self.max_hold:
            piece = self._long_piece()
            if not self._accept(piece, whole=self._pending):
                return ""
            self._pending = self._pending[len(piece) :]
            released.append(piece)
        return "".join(released)

    def finish(self) -> str:
        if self.blocked:
            return ""
        rest, self._pending = self._pending, ""
        if rest and not self._accept(rest):
            return ""
        return rest

    def _confirmed_boundary(self) -> int | None:
        """End of the first sentence, if no later character could still belong to it."""
        found = _BOUNDARY.search(self._pending)
        if found is None or found.end() >= len(self._pending):
            return None  # "。" at the very end may be followed by "」", "2." by "5mg"
        return found.end()

    def _long_piece(self) -> str:
        """For a sentence with no end in sight: all but the last `window` chars, cut softly."""
        limit = len(self._pending) - self.window
        cuts = [m.end() for m in _SOFT_BOUNDARY.finditer(self._pending, 0, limit)]
        return self._pending[: cuts[-1] if cuts else limit]

    def _accept(self, piece: str, whole: str | None = None) -> bool:
        checked = whole or piece
        reasons = _sentence_reasons(checked) + _sentence_reasons(_joined(self._previous, checked))
        if reasons:
            self.blocked = True
            self.reasons = list(dict.fromkeys(reasons))
            self._pending = ""
            return False
        self._previous = piece
        return True
