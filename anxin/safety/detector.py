"""Decide, locally and in well under a millisecond, whether a user's message signals a crisis.

A fine-tuned model of any size can say something harmful to a person at risk, so the decision
is not the model's: it is made here, by rules a reader can audit. The rules are data, in
`rules/*.yaml`; this module only interprets them. Each rule is a regular expression over
normalised text (`text.py`: half-width, simplified, lowercase), and each match is then judged
in its surroundings, by the judgements the rule's `lowered_by` names:

- negation before it in the same clause (我没有想自杀, I'm not suicidal) defuses it;
- a degree complement (累得想死, 尴尬到想死) is hyperbole, not a wish to die;
- a third person or a media frame as its subject (新闻里有人…, a man in the news) lowers it:
  to "concern" for someone the user knows, to "none" for a stranger or a story;
- a topic frame (关于自杀预防的论文, an article about suicide) is talk about the subject;
- a past event told as past (初中时自残过，现在好多了) is "concern", not "crisis";
- the conversation before the message can raise it (我已经想好了，就在今晚 after 我想死).

Each cue a judgement asks about is found once per message (`_Message`), so a 200 KB message
costs time in proportion to its length, not to its length times its matches.

Rules alone keep missing new phrasings, so a small trained classifier (`classifier.py`,
character n-grams and word classes, logistic regression) reads every message the rules did
not already call a crisis. It can raise the level, never lower it, and only when the rules
found no reason to lower it themselves (a negation, hyperbole, a story, the past, a joke):
its probability appears in `reasons` as `classifier:0.93`.

Levels: "crisis" (the Engine answers with the fixed crisis message), "concern" (the model
answers and the Engine appends a gentle line with a hotline), "none".

Privacy: nothing here sends or stores text. The optional audit log holds levels, categories,
rule names and timestamps only.
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

from anxin.safety import rules
from anxin.safety.classifier import shipped_classifier
from anxin.safety.judge import JUDGE_FAILURES, SafetyJudge, Verdict
from anxin.safety.rules import Rule, rulebook
from anxin.safety.scan import Scanner, scanner
from anxin.safety.text import CJK, LATIN_WORD, detect_language, matching_text, normalize

__all__ = [
    "CRISIS_CATEGORIES",
    "LEVELS",
    "Assessment",
    "CrisisDetector",
    "detect_language",
    "matching_text",
    "normalize",
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

_CLAUSE_BREAK = re.compile(r"[,，;；:：。!?！？\n…~]|\.(?=\s|$)|\s(?:but|and|so|because)\s")
_SENTENCE_BREAK = re.compile(r"[。!?！？\n]|\.(?=\s|$)")
_EVERYDAY_ADJECTIVES = set(_BOOK.lexicon.words["everyday_adjectives_zh"])

_CUES = {name: cue.pattern for name, cue in _BOOK.judgement.items()}
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
_PREFERENCE_THEN_NO = re.compile(r"[^,.;。!?\n]{0,3}也(?:不|要|没|绝不)")


class _Message:
    """A normalised message, and what every judgement of a match in it shares, found once.

    A judgement asks what lies in a span before a match (a negation in its clause, a person in
    its sentence). Scanning the span for each match made a long message cost its length times
    its matches (6 s for 15 KB of repeated risk words); each cue is found once here instead,
    and `within` answers for a span from that list, as a scan of the span alone would.
    """

    def __init__(self, text: str):
        self.text = text
        self._clause_ends = [found.end() for found in _CLAUSE_BREAK.finditer(text)]
        sentence_breaks = [found.span() for found in _SENTENCE_BREAK.finditer(text)]
        self._sentence_starts = [start for start, _ in sentence_breaks]
        self._sentence_ends = [end for _, end in sentence_breaks]
        self._found: dict[Scanner, bool] = {}
        self._matches: dict[str, tuple[list[re.Match[str]], list[int]]] = {}
        self.scripts = {"zh": bool(CJK.search(text)), "en": bool(LATIN_WORD.search(text))}

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

    def clause_start(self, position: int) -> int:
        return self._after_last(self._clause_ends, position)

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
    cue = message.last("negation", clause_start, match_start)
    if cue is None:
        return False
    between = message.text[cue.end() : match_start]
    too_far = len(between) > (24 if between.isascii() else 7)
    if too_far or _CUES["negation_blocker"].search(between):
        return False
    before = message.text[max(clause_start, cue.start() - _TAIL) : cue.start()]
    return not _CUES["double_negation"].search(before)


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
    if _CUES["relative_clause"].match(text[end : end + _AFTER]):
        return "stranger" if not _CUES["person"].search(text[end : end + 8]) else "close"
    if _CUES["reported_before"].search(
        text, max(sentence_start, start - 3), start
    ) and not message.last("person", sentence_start, start):
        # 有时甚至说想死 with no one named: the speaker is whoever the sentence before was about
        sentence_start = message.sentence_start(max(0, sentence_start - 1))
    people = (
        person
        for person in message.within("person", sentence_start, start)
        # 让他 / 把她: an object, not who acts; 让我 still makes me the one who feels it
        if person.group("self")
        or not _CUES["object_marker"].fullmatch(text[max(0, person.start() - 1) : person.start()])
    )
    last = next(people, None)
    if last is None or last.group("self"):
        return "self"
    if message.last("media_frame", sentence_start, end) or _CUES["stranger"].search(
        last.group("other")
    ):
        return "stranger"
    return "close"


def _preference_idiom(message: _Message, clause_start: int, start: int, end: int) -> bool:
    """宁愿去死也不…: 'I would rather die than …', a way of saying no."""
    return bool(message.last("preference", clause_start, end)) and bool(
        _PREFERENCE_THEN_NO.match(message.text[end : end + _AFTER])
    )


def _told_as_past(message: _Message, rule: Rule, sentence_start: int, start: int, end: int) -> bool:
    """初中时自残过，现在好多了: an experience told as past, not something happening now."""
    experienced = rule.act and message.text[end : end + 1] == "过"  # 自残过; 想过死 is ideation
    past = message.last("past", sentence_start, message.sentence_end(end))
    # 以前我很开心，现在我想死: a "now" between the past and the match turns the story to today
    told_then = past is not None and not message.last("now", past.end(), start)
    if not (experienced or told_then):
        return False
    return message.has(_CUES["recovery"]) or not message.has(_CUES["present"])


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
    if "negation" in lowered_by and _negated(message, clause_start, start):
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
        for count, match in enumerate(rule.pattern.finditer(message.text)):
            hits.append(_judge(rule, message, match))
            if count >= _JUDGED_IN_FULL and hits[-1].reason == rule.name:
                break
    return hits


def rule_hits(rule: Rule, text: str) -> list[Hit]:
    """Each match of one rule in a message, judged in its surroundings (for tests and review)."""
    return _hits(_Message(matching_text(text)), [rule])


# --- the detector ------------------------------------------------------------------------------


class CrisisDetector:
    """Assess a user message, in the light of the conversation before it.

    >>> CrisisDetector().assess("今天加班累死了").level
    'none'
    """

    def __init__(self, audit_log: str | Path | None = None, judge: SafetyJudge | None = None):
        self.audit_log = Path(audit_log) if audit_log else None
        self.judge = judge  # an optional guard model (judge.py): it can only raise the level

    def assess(self, text: str, context: Sequence[dict | str] = ()) -> Assessment:
        assessment = _assess_message(text)
        if context:  # a message is normalised again only to be read against what came before
            assessment = _with_context(assessment, normalize(text), list(context))
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


def _with_verdict(assessment: Assessment, verdict: Verdict) -> Assessment:
    """The guard's verdict raises the level or adds only its reason; it never lowers."""
    reasons = _unique([*assessment.reasons, verdict.reason])
    if verdict.level is None or RANK[verdict.level] <= RANK[assessment.level]:
        return replace(assessment, reasons=reasons)
    return replace(assessment, level=verdict.level, categories=verdict.categories, reasons=reasons)


def _assess_message(text: str) -> Assessment:
    level, categories, language, reasons = _assess_cached(text)
    return Assessment(level, list(categories), language, list(reasons))


@lru_cache(maxsize=4096)
def _assess_cached(text: str) -> tuple[str, tuple[str, ...], str, tuple[str, ...]]:
    message = _Message(matching_text(text))
    hits = _hits(message, RULES) + _hits(message, CONCERN_RULES)
    level = max((hit.level for hit in hits), key=RANK.__getitem__, default="none")
    reasons = [hit.reason for hit in hits]
    level, signs = _with_warning_signs(message, level, hits)
    reasons += [f"sign.{name}" for name in signs]
    categories = _unique(hit.category for hit in hits if hit.level == level and level != "none")
    if level != "crisis" and not _lowered_by_rules(message, reasons):
        level, categories, reasons = _with_classifier(message.text, level, categories, reasons)
    return level, tuple(categories), detect_language(message.text), tuple(_unique(reasons))


# --- warning signs that add up: one alone is concern, together they are a plan (signs.yaml) -----


def _with_warning_signs(message: _Message, level: str, hits: list[Hit]) -> tuple[str, list[str]]:
    """The level the signs give, and their names; `hits` gains the one that set the level."""
    signs = [sign.name for sign in _BOOK.signs if message.has(sign.pattern)]
    if not signs:
        return level, signs
    mood = any(hit.level == "concern" and hit.category in _BOOK.crisis_with_mood for hit in hits)
    if level != "crisis" and (len(signs) >= 2 or mood):
        hits.append(Hit("crisis", "plan_means", "warning_signs"))
        return "crisis", signs
    if level == "none":
        hits.append(Hit("concern", "warning_sign", "warning_signs"))
        return "concern", signs
    return level, signs


# --- the trained classifier: a second reader for phrasings no rule knows (classifier.yaml) ------

# Module globals, read at each call, so a test can switch the classifier off.
CLASSIFIER_CRISIS_AT = _BOOK.classifier.crisis_at
CLASSIFIER_CONCERN_AT = _BOOK.classifier.concern_at
CLASSIFIER_MIN_UNITS = _BOOK.classifier.min_units  # below: concern at most, never crisis
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


def _lowered_by_rules(message: _Message, reasons: list[str]) -> bool:
    """A rule lowered or weighed a match, or every risk word is lowered in its context."""
    if any(reason.endswith(_LOWERED) or reason in _SELF_ESCALATING for reason in reasons):
        return True
    gate = _BOOK.classifier
    idioms = [found.span() for found in gate.cues["idiom"].pattern.finditer(message.text)]
    idiom_starts = [start for start, _ in idioms]

    def in_idiom(position: int) -> bool:
        i = bisect.bisect_right(idiom_starts, position)
        return bool(i) and position < idioms[i - 1][1]

    anchors = [m for m in gate.anchor.pattern.finditer(message.text) if not in_idiom(m.start())]
    if not anchors:
        # no risk word outside an idiom: lowered if there was one inside, free if none at all
        return bool(idioms) and bool(gate.anchor.pattern.search(message.text))
    if message.has(gate.cues["accident"].pattern):
        return True  # 切菜的时候割到手: a cut, not self-harm
    return all(_judge(gate.anchor, message, anchor).level != "crisis" for anchor in anchors)


def _with_classifier(
    normal: str, level: str, categories: list[str], reasons: list[str]
) -> tuple[str, list[str], list[str]]:
    prediction = shipped_classifier().predict_normal(normal)
    reason = f"classifier:{prediction.probability:.2f}"
    # 再见, goodbye, 最后一次: too short to tell a farewell from a good night on their own;
    # after a risky message the context rules below read them, not the classifier
    enough = _content_units(normal) >= CLASSIFIER_MIN_UNITS
    concern_at = CLASSIFIER_CONCERN_AT if enough else CLASSIFIER_CRISIS_AT
    if enough and prediction.probability >= CLASSIFIER_CRISIS_AT:
        return "crisis", [prediction.category], [*reasons, reason]
    if prediction.probability >= concern_at and level == "none":
        return "concern", [prediction.category], [*reasons, reason]
    return level, categories, reasons


def _content_units(normal: str) -> float:
    """How much a message says: Chinese characters, and an English word as one and a half."""
    return len(CJK.findall(normal)) + 1.5 * len(LATIN_WORD.findall(normal))


# --- context: a vague message read in the light of what came before (context.yaml) ---------------

_CONTEXT = {name: cue.pattern for name, cue in _BOOK.context.items()}
_CONTEXT_TURNS = 6  # how many earlier user messages can colour this one


def _context_messages(context: list[dict | str]) -> list[dict]:
    messages = []
    for message in context:
        if isinstance(message, str):
            messages.append({"role": "user", "content": message})
        elif isinstance(message, dict) and isinstance(message.get("content"), str):
            messages.append({"role": message.get("role", "user"), "content": message["content"]})
    return messages


def _with_context(assessment: Assessment, normal: str, context: list[dict | str]) -> Assessment:
    if assessment.level == "crisis" or not context:
        return assessment
    messages = _context_messages(context)
    earlier = [m["content"] for m in messages if m["role"] == "user"][-_CONTEXT_TURNS:]
    prior = [_assess_message(text) for text in earlier]
    if messages and messages[-1]["role"] == "assistant":
        answered = _answer_to_risk_question(assessment, normal, messages[-1]["content"])
        if answered is not None:
            return answered
    prior_risk = [
        a for a in prior if a.level != "none" and SELF_RISK_CATEGORIES & set(a.categories)
    ]
    helping = _CONTEXT["help_seeking"].search(normal)  # a decision towards help, not to die
    if prior_risk and _CONTEXT["resolve"].search(normal) and not helping:
        categories = _unique(
            c for a in prior_risk for c in a.categories if c in SELF_RISK_CATEGORIES
        )
        categories = [c if c != "hopelessness" else "suicidal_ideation" for c in categories]
        return _raised(
            assessment, "crisis", [*_unique(categories), "context_escalation"], "context.resolve"
        )
    recent_crisis = any(a.level == "crisis" for a in prior[-3:])
    if (
        recent_crisis
        and len(normal) <= 12
        and _CONTEXT["time_named"].search(normal)
        and not helping
    ):
        return _raised(
            assessment, "crisis", ["plan_means", "context_escalation"], "context.time_named"
        )
    if recent_crisis and assessment.level == "none":
        return _raised(assessment, "concern", ["context_escalation"], "context.recent_crisis")
    return assessment


def _answer_to_risk_question(assessment: Assessment, normal: str, asked: str) -> Assessment | None:
    """有，想过很多次 after 你有没有想过结束自己的生命？ is a yes; 不知道 is a maybe."""
    question = normalize(asked)
    if not (_CONTEXT["risk_question"].search(question) and _CONTEXT["question"].search(question)):
        return None
    if _CONTEXT["affirmative"].match(normal) and not _CONTEXT["denial"].match(normal):
        return _raised(
            assessment, "crisis", ["suicidal_ideation"], "context.affirmed_risk_question"
        )
    if _CONTEXT["unsure"].match(normal):
        return _raised(assessment, "concern", ["suicidal_ideation"], "context.unsure_risk_answer")
    return None


def _raised(assessment: Assessment, level: str, categories: list[str], reason: str) -> Assessment:
    return Assessment(
        level,
        _unique(categories),
        assessment.language,
        _unique([*assessment.reasons, reason]),
    )


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))
