"""The care layer's decision about one user message: rules, context, the learned stage, a guard.

    CrisisDetector().assess("我已经想好了，就在今晚", context=["我不想活了"])
    → Assessment(level="crisis", categories=[...], language="zh", reasons=[...], score=0.97)

1. The rules read the message alone (`detector.py`), and the context cues read it against the
   conversation (`context.py`): exact, explainable, and a crisis they find stands.
2. The learned stage (`classifier.py`) reads the message and the conversation before it, and
   gives P(crisis): at or above `crisis_at` the message is a crisis, at or above `concern_at`
   at least a concern (rules/classifier.yaml, thresholds chosen by cross-validation on the
   development data, never on the frozen held-out parts). Where the rules lowered every risk
   word in a message (`rules.lowered`: a negation, hyperbole, someone else's words, the past)
   it needs the higher `lowered_crisis_at` (English: it may not raise it), and it never
   raises a very short message said with no conversation before it (再见, goodbye). Its
   probability is in the reasons (`learned:0.93`) and in `Assessment.score`. Where its
   weights are missing the rules decide alone and the reasons say so (`learned:unavailable`).
3. In a conversation that told of violence or sexual abuse, a message stays at least a
   concern to the end (`context.kept_watch`), whatever the stages above made of it.
4. An optional guard model (`judge.py`) is asked about anything below crisis; it can only
   raise the level.

Levels: "crisis" (the Engine answers with the fixed crisis message), "concern" (the model
answers and the Engine appends a gentle line with a help line), "none".

Privacy: nothing here sends or stores text (the guard model, when configured, is sent the
conversation). The optional audit log holds levels, categories, reason names and timestamps.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from anxin.safety.classifier import Evidence, Prediction, sentences_of, shipped_classifier
from anxin.safety.context import (
    DENIED,
    EVIDENCE_TURNS,
    Conversation,
    kept_watch,
    with_context,
)
from anxin.safety.detector import LOWERED, RANK, Assessment, read_rules, unique
from anxin.safety.judge import JUDGE_FAILURES, SafetyJudge, Verdict
from anxin.safety.rules import rulebook
from anxin.safety.text import CJK, LATIN_WORD, matching_text

_GATE = rulebook().classifier
# Module globals, read at each call, so a test can move them.
CRISIS_AT = _GATE.crisis_at
CONCERN_AT = _GATE.concern_at
LOWERED_CRISIS_AT = _GATE.lowered_crisis_at  # where the rules lowered every risk word
# English has no real labelled text here, only written sets: its own, higher bars.
ENGLISH_CRISIS_AT = _GATE.english_crisis_at
ENGLISH_CONCERN_AT = _GATE.english_concern_at
MIN_UNITS = _GATE.min_units  # with no conversation before it, a message this short: not crisis
UNAVAILABLE = "learned:unavailable"


class CrisisDetector:
    """Assess a user message, in the light of the conversation before it.

    >>> CrisisDetector().assess("今天加班累死了").level
    'none'
    """

    def __init__(self, audit_log: str | Path | None = None, judge: SafetyJudge | None = None):
        self.audit_log = Path(audit_log) if audit_log else None
        self.judge = judge  # an optional guard model (judge.py): it can only raise the level

    def assess(self, text: str, context: Sequence[dict | str] = ()) -> Assessment:
        assessment = decide(text, context)
        if self.judge is not None and assessment.level != "crisis":
            assessment = _with_verdict(assessment, self.judge.judge(text, list(context)))
        if self.audit_log is not None and (
            assessment.level != "none" or JUDGE_FAILURES & set(assessment.reasons)
        ):
            self._audit(assessment)
        return assessment

    def _audit(self, assessment: Assessment) -> None:
        # One short line appended per event: an append of a single line is all-or-nothing in
        # practice, and rewriting the whole log atomically on each message would grow with it.
        record = {"ts": datetime.now(UTC).isoformat(timespec="seconds"), **assessment.to_dict()}
        self.audit_log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.audit_log, "a", encoding="utf-8") as log:
            log.write(json.dumps(record, ensure_ascii=False) + "\n")


def decide(text: str, context: Sequence[dict | str] = ()) -> Assessment:
    """The local decision: rules, context cues and the learned stage (no guard model)."""
    alone, normal, conversation, in_context = read_message(text, context)
    model = shipped_classifier()
    if model is None:
        found = replace(in_context, reasons=unique([*in_context.reasons, UNAVAILABLE]))
        return kept_watch(found, conversation)
    prediction = model.predict(evidence(text, normal, alone, in_context, conversation))
    return kept_watch(_weighed(in_context, normal, prediction, conversation), conversation)


def learned_probability(text: str, context: Sequence[dict | str] = ()) -> float:
    """The learned stage's P(crisis) for a message before any bar (1 where the rules and
    context cues already call it a crisis): what a labelling round ranks messages by."""
    alone, normal, conversation, in_context = read_message(text, context)
    if in_context.level == "crisis":
        return 1.0
    model = shipped_classifier()
    if model is None:
        raise RuntimeError("the care layer's shipped weights are missing")
    return model.predict(evidence(text, normal, alone, in_context, conversation)).probability


def read_message(
    text: str, context: Sequence[dict | str]
) -> tuple[Assessment, str, Conversation, Assessment]:
    """The rules' reading alone, the normalised text, the conversation, and the reading in it
    (the detector's first steps; training.py reads its messages through this too)."""
    alone = read_rules(text)
    normal = matching_text(text)
    conversation = Conversation.of(context)
    return alone, normal, conversation, with_context(alone, normal, conversation)


def rules_in_context(text: str, context: Sequence[dict | str] = ()) -> Assessment:
    """The rules and context cues alone: exact and explainable, without the learned stage's
    guesses (the data rubric holds written replies to this)."""
    conversation = Conversation.of(context)
    found = with_context(read_rules(text), matching_text(text), conversation)
    return kept_watch(found, conversation)


def evidence(
    text: str, normal: str, alone: Assessment, in_context: Assessment, conversation: Conversation
) -> Evidence:
    """What the learned stage reads about a message (`text`, `normal`: as written and
    normalised; training.py builds the same)."""
    earlier = conversation.earlier[-EVIDENCE_TURNS:]
    readings = conversation.readings[-EVIDENCE_TURNS:]
    return Evidence(
        text=normal,
        level=alone.level,
        categories=tuple(alone.categories),
        reasons=tuple(alone.reasons),
        context_level=in_context.level,
        context_reasons=tuple(
            r for r in in_context.reasons if r.startswith("context.") and r != DENIED
        ),
        earlier=tuple((r.level, tuple(r.categories)) for r in readings),
        earlier_text=matching_text(" \n".join(earlier)) if earlier else "",
        asked=conversation.asked,
        asked_about_safety=conversation.asked_about_safety,
        has_context=bool(conversation.messages),
        sentences=sentences_of(text),
        abuse_told=conversation.abuse_came_up,
        denied=DENIED in in_context.reasons,
    )


def _weighed(
    found: Assessment, normal: str, prediction: Prediction, conversation: Conversation
) -> Assessment:
    """The rules' and context cues' reading, raised by the learned stage where it is sure.

    `score` is the care layer's own crisis score: 1 for a crisis the rules found, else the
    learned probability, kept below `crisis_at` where the learned stage may not decide alone.
    A message is a crisis exactly when its score reaches `crisis_at`.
    """
    probability = prediction.probability
    reasons = unique([*found.reasons, f"learned:{probability:.2f}"])
    if found.level == "crisis":
        return replace(found, reasons=reasons, score=1.0)
    bar = crisis_bar(found.reasons, normal, bool(conversation.messages), found.language)
    score = probability if probability >= bar else min(probability, CRISIS_AT - 1e-4)
    level = weighed_level(found.level, probability, bar, concern_bar(found.language))
    if level == found.level:
        return replace(found, reasons=reasons, score=score)
    return replace(
        found, level=level, categories=[prediction.category], reasons=reasons, score=score
    )


def weighed_level(rules_level: str, probability: float, crisis_at: float, concern_at: float) -> str:
    """The level of a message: the rules' and context cues' level, raised to crisis where
    P(crisis) reaches the message's crisis bar, and from none to concern at the concern bar
    (cross-validation replays it with other bars)."""
    if rules_level == "crisis" or probability >= crisis_at:
        return "crisis"
    if rules_level == "concern" or probability >= concern_at:
        return "concern"
    return "none"


def crisis_bar(
    reasons: Sequence[str],
    normal: str,
    has_context: bool,
    language: str,
    crisis_at: float | None = None,
    lowered_crisis_at: float | None = None,
) -> float:
    """The P(crisis) at which the learned stage alone makes a message a crisis, never below
    `crisis_at`: `crisis_at` itself (English: `english_crisis_at`); the higher
    `lowered_crisis_at` where the rules lowered every risk word in it (a negation, hyperbole,
    someone else, the past: on the real development data one such message in ten was a crisis
    all the same); never for English so lowered (its only training text is written, and there
    it would overrule I would never hurt myself), nor for a very short message with no
    conversation before it (再见, goodbye), nor for a plain no to the assistant's safety
    question (context.DENIED: 没有 不想活 只是累 echoes the question's words). `crisis_at` and
    `lowered_crisis_at` stand in for the shipped thresholds (cross-validation tries others)."""
    crisis_at = CRISIS_AT if crisis_at is None else crisis_at
    if not has_context and content_units(normal) < MIN_UNITS:
        return float("inf")
    if DENIED in reasons:
        return float("inf")
    lowered = LOWERED in reasons
    if language == "en":
        return float("inf") if lowered else max(ENGLISH_CRISIS_AT, crisis_at)
    if lowered:
        return max(LOWERED_CRISIS_AT if lowered_crisis_at is None else lowered_crisis_at, crisis_at)
    return crisis_at


def concern_bar(language: str, concern_at: float | None = None) -> float:
    """The P(crisis) at which a message the rules saw no risk in gets the concern line
    (`concern_at` stands in for the shipped threshold)."""
    if language == "en":
        return ENGLISH_CONCERN_AT
    return CONCERN_AT if concern_at is None else concern_at


def _with_verdict(assessment: Assessment, verdict: Verdict) -> Assessment:
    """The guard's verdict raises the level or adds only its reason; it never lowers."""
    reasons = unique([*assessment.reasons, verdict.reason])
    if verdict.level is None or RANK[verdict.level] <= RANK[assessment.level]:
        return replace(assessment, reasons=reasons)
    return replace(assessment, level=verdict.level, categories=verdict.categories, reasons=reasons)


def content_units(normal: str) -> float:
    """How much a message says: Chinese characters, and an English word as one and a half."""
    return len(CJK.findall(normal)) + 1.5 * len(LATIN_WORD.findall(normal))
