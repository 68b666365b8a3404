"""Decide, locally and in well under a millisecond, whether a user's message signals a crisis.

A fine-tuned model of any size can say something harmful to a person at risk, so the decision
is not the model's: it is made here, by rules a reader can audit, kept as data in
`rules/*.yaml` (this module only interprets them). Each rule is a regular expression over
normalised text (full-width → half-width, traditional → simplified for the characters that
matter, lowercase), and each match is then judged in its surroundings (the rule's `lowered_by`
says which of these apply):

- negation before it in the same clause (我没有想自杀, I'm not suicidal) defuses it;
- a degree complement (累得想死, 尴尬到想死) is hyperbole, not a wish to die;
- a third person or a media frame as its subject (新闻里有人…, a man in the news) lowers it:
  to "concern" for someone the user knows, to "none" for a stranger or a story;
- a topic frame (关于自杀预防的论文, an article about suicide) is talk about the subject;
- a past event told as past (初中时自残过，现在好多了) is "concern", not "crisis";
- the conversation before the message can raise it (我已经想好了，就在今晚 after 我想死).

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

import json
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

from anxin.safety import rules
from anxin.safety.rules import Rule, rulebook

_BOOK = rulebook()

LEVELS = rules.LEVELS
CRISIS_CATEGORIES = rules.CRISIS_CATEGORIES
RANK = {level: rank for rank, level in enumerate(LEVELS)}

# Categories that suggest risk to the user themself: a later vague message ("就在今晚") after
# one of these is read in that light.
SELF_RISK_CATEGORIES = {"suicidal_ideation", "plan_means", "self_harm", "hopelessness"}


@dataclass
class Assessment:
    """What the detector concluded; `reasons` name rules, never the user's words."""

    level: str = "none"
    categories: list[str] = field(default_factory=list)
    language: str = "zh"
    reasons: list[str] = field(default_factory=list)

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


# --- normalisation ------------------------------------------------------------------------------

# Traditional characters that appear in the patterns, so 想自殺 reads like 想自杀.
_TRADITIONAL = str.maketrans(
    {pair[0]: pair[1] for pair in _BOOK.traditional.split() if pair[0] != pair[1]}
)
_QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"'})
_ZERO_WIDTH = re.compile(r"[\u200b-\u200f\u2060\ufeff]")
_CJK_GAP = re.compile(r"(?<=[\u4e00-\u9fff])\s+(?=[\u4e00-\u9fff])")
_SPACES = re.compile(r"\s+")
_SCRIPT_SEAM = re.compile(r"(?<=[\u4e00-\u9fff])(?=[a-z])|(?<=[a-z])(?=[\u4e00-\u9fff])")
_CJK = re.compile(r"[\u4e00-\u9fff]")
_LATIN_WORD = re.compile(r"[a-z]+", re.IGNORECASE)
_TITLE = re.compile(r"《[^》]{0,40}》")


def normalize(text: str) -> str:
    """One spelling for matching: half-width, simplified, lowercase, no spaces inside Chinese."""
    text = unicodedata.normalize("NFKC", text).translate(_QUOTES).translate(_TRADITIONAL)
    text = _ZERO_WIDTH.sub("", text.lower())
    text = _CJK_GAP.sub("", text)
    # 我真的want to die: \b needs a break between Chinese and Latin letters
    text = _SCRIPT_SEAM.sub(" ", text)
    return _SPACES.sub(" ", text).strip()


def matching_text(text: str) -> str:
    """What the rules and the classifier read: `normalize`, and 《title》 emptied."""
    return _TITLE.sub("《》", normalize(text))  # 《自杀小队》 names a work, not a wish


def detect_language(text: str) -> str:
    """Return "zh" when Chinese characters hold their own against Latin words, else "en"."""
    cjk = len(_CJK.findall(text))
    latin_words = len(_LATIN_WORD.findall(text))
    return "en" if latin_words > cjk else "zh"


# --- the rules ----------------------------------------------------------------------------------

RULES: tuple[Rule, ...] = _BOOK.crisis
# Concern-level signals: no wish to die stated, but a person who may need a gentle hand.
CONCERN_RULES: tuple[Rule, ...] = _BOOK.concern

# --- judging a match in its surroundings --------------------------------------------------------

_CLAUSE_BREAK = re.compile(r"[,，;；:：。!?！？\n…~]|\.(?=\s|$)|\s(?:but|and|so|because)\s")
_SENTENCE_BREAK = re.compile(r"[。!?！？\n]|\.(?=\s|$)")

_CUES = {name: cue.pattern for name, cue in _BOOK.judgement.items()}
_NEGATION = _CUES["negation"]
_NEGATION_BLOCKER = _CUES["negation_blocker"]
_DOUBLE_NEGATION = _CUES["double_negation"]
_EVERYDAY_ADJECTIVES = set(_BOOK.lexicon.words["everyday_adjectives_zh"])
_DEGREE = _CUES["degree"]
_NOT_DEGREE = _CUES["not_degree"]
_PERSON = re.compile(
    f"(?P<other>{_CUES['person_other'].pattern})|(?P<self>{_CUES['person_self'].pattern})"
)
_OBJECT_MARKER = _CUES["object_marker"]
_REPORTED_BEFORE = _CUES["reported_before"]
_STRANGER = _CUES["stranger"]
_MEDIA_FRAME = _CUES["media_frame"]
_TOPIC_FRAME = _CUES["topic_frame"]
_PREFERENCE = _CUES["preference"]
_FEAR = _CUES["fear"]
_ASKED_ABOUT = _CUES["asked_about"]
_SAID_YES = _CUES["said_yes"]
_RELATIVE_CLAUSE = _CUES["relative_clause"]
_PAST = _CUES["past"]
_PRESENT = _CUES["present"]
_NOW = _CUES["now"]
_RECOVERY = _CUES["recovery"]
_JOKE = _CUES["joke"]


def _start_of(breaks: re.Pattern[str], text: str, position: int) -> int:
    start = 0
    for found in breaks.finditer(text, 0, position):
        start = found.end()
    return start


def _negated(text: str, clause_start: int, match_start: int) -> bool:
    prefix = text[clause_start:match_start]
    cues = list(_NEGATION.finditer(prefix))
    if not cues:
        return False
    cue = cues[-1]
    between = prefix[cue.end() :]
    too_far = len(between) > (24 if between.isascii() else 7)
    if too_far or _NEGATION_BLOCKER.search(between):
        return False
    return not _DOUBLE_NEGATION.search(prefix[: cue.start()])


def _degree_complement(text: str, clause_start: int, match_start: int) -> str | None:
    """'none' for 累得想死 (everyday hyperbole), 'concern' for 痛苦得想死, None otherwise."""
    prefix = text[clause_start:match_start]
    found = None if _NOT_DEGREE.search(prefix) else _DEGREE.search(prefix)
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
    adjective = found.group(1)
    if adjective in _EVERYDAY_ADJECTIVES or adjective[-1] in _EVERYDAY_ADJECTIVES:
        return "none"
    return "concern"


def _subject(text: str, sentence_start: int, match_start: int, match_end: int) -> str:
    """'self', or 'close' (someone the user knows), or 'stranger' (news, fiction, people)."""
    if _RELATIVE_CLAUSE.match(text[match_end:]):
        return "stranger" if not _PERSON.search(text[match_end : match_end + 8]) else "close"
    if _REPORTED_BEFORE.search(
        text, max(sentence_start, match_start - 3), match_start
    ) and not _PERSON.search(text, sentence_start, match_start):
        # 有时甚至说想死 with no one named: the speaker is whoever the sentence before was about
        sentence_start = _start_of(_SENTENCE_BREAK, text, max(0, sentence_start - 1))
    people = [
        person
        for person in _PERSON.finditer(text, sentence_start, match_start)
        # 让他 / 把她: an object, not who acts; 让我 still makes me the one who feels it
        if person.group("self")
        or not _OBJECT_MARKER.fullmatch(text[max(0, person.start() - 1) : person.start()])
    ]
    if not people or people[-1].group("self"):
        return "self"
    who = people[-1].group("other")
    sentence = text[sentence_start:match_end]
    if _MEDIA_FRAME.search(sentence) or _STRANGER.search(who):
        return "stranger"
    return "close"


def _preference_idiom(text: str, clause_start: int, start: int, end: int) -> bool:
    """宁愿去死也不…: 'I would rather die than …', a way of saying no."""
    return bool(_PREFERENCE.search(text[clause_start:end])) and bool(
        re.match(r"[^,.;。!?\n]{0,3}也(?:不|要|没|绝不)", text[end:])
    )


def _told_as_past(text: str, rule: Rule, sentence_start: int, start: int, end: int) -> bool:
    """初中时自残过，现在好多了: an experience told as past, not something happening now."""
    experienced = rule.act and text[end : end + 1] == "过"  # 自残过, but 想过死 is ideation
    sentence_end = _SENTENCE_BREAK.search(text, end)
    sentence = text[sentence_start : sentence_end.start() if sentence_end else len(text)]
    pasts = list(_PAST.finditer(sentence))
    # 以前我很开心，现在我想死: a "now" between the past and the match turns the story to today
    told_then = bool(pasts) and not _NOW.search(text, sentence_start + pasts[-1].end(), start)
    if not (experienced or told_then):
        return False
    return bool(_RECOVERY.search(text)) or not _PRESENT.search(text)


@dataclass(frozen=True)
class Hit:
    level: str
    category: str
    reason: str


def _judge(rule: Rule, text: str, match: re.Match[str]) -> Hit:
    start, end = match.span()
    clause_start = _start_of(_CLAUSE_BREAK, text, start)
    sentence_start = _start_of(_SENTENCE_BREAK, text, start)
    lowered_by = rule.lowered_by
    if "negation" in lowered_by and _negated(text, clause_start, start):
        return Hit("none", rule.category, f"{rule.name}:negated")
    if "hyperbole" in lowered_by and (degree := _degree_complement(text, clause_start, start)):
        return Hit(degree, "hopelessness", f"{rule.name}:hyperbole")
    if "topic" in lowered_by and _TOPIC_FRAME.search(text[clause_start:start]):
        return Hit("none", rule.category, f"{rule.name}:topic")
    if (
        "asked_about" in lowered_by
        and _ASKED_ABOUT.search(text[clause_start:start])
        and not _SAID_YES.search(text)
    ):
        return Hit("none", rule.category, f"{rule.name}:asked_about")
    if "preference_idiom" in lowered_by and _preference_idiom(text, clause_start, start, end):
        return Hit("none", rule.category, f"{rule.name}:preference_idiom")
    if "fear" in lowered_by and _FEAR.search(text[sentence_start:start]):
        return Hit("none", rule.category, f"{rule.name}:fear_of_death")
    if lowered_by & {"someone_else", "stranger"}:
        who = _subject(text, sentence_start, start, end)
        if who == "stranger":
            return Hit("none", "third_party", f"{rule.name}:reported")
        # `stranger` only: someone close in danger of abuse is an emergency the user can act on
        if who == "close" and "someone_else" in lowered_by:
            return Hit("concern", "third_party", f"{rule.name}:third_party")
    if "past" in lowered_by and _told_as_past(text, rule, sentence_start, start, end):
        return Hit("concern", "past_history", f"{rule.name}:past")
    level = rule.level
    if rule.escalate_if is not None and rule.escalate_if.search(text):
        level = "crisis"
    if "joke" in lowered_by and _JOKE.search(text) and level == "crisis":
        return Hit("concern", rule.category, f"{rule.name}:joking")
    return Hit(level, rule.category, rule.name)


def _hits(text: str, rules: Iterable[Rule]) -> list[Hit]:
    # Chinese rules need Chinese characters, English rules Latin letters: skipping the other
    # script's rules halves the work on most messages.
    scripts = {"zh": bool(_CJK.search(text)), "en": bool(_LATIN_WORD.search(text))}
    hits = []
    for rule in rules:
        if not scripts.get(rule.script, True):
            continue
        if rule.requires is not None and not rule.requires.search(text):
            continue
        hits.extend(_judge(rule, text, match) for match in rule.pattern.finditer(text))
    return hits


def rule_hits(rule: Rule, text: str) -> list[Hit]:
    """Each match of one rule in a message, judged in its surroundings (for tests and review)."""
    return _hits(matching_text(text), [rule])


# --- warning signs that add up: one alone is concern, together they are a plan -----------------

_PREPARATION_SIGNS = {sign.name: sign.pattern for sign in _BOOK.signs}
_MOOD_SIGNS = _BOOK.crisis_with_mood


def _warning_signs(text: str) -> list[str]:
    return [name for name, pattern in _PREPARATION_SIGNS.items() if pattern.search(text)]


# --- context: a vague message read in the light of what came before ------------------------------

_CONTEXT = {name: cue.pattern for name, cue in _BOOK.context.items()}
_RESOLVE_CUES = _CONTEXT["resolve"]
_HELP_SEEKING = _CONTEXT["help_seeking"]  # a decision towards help is not a decision to die
_RISK_QUESTION = _CONTEXT["risk_question"]
_QUESTION = _CONTEXT["question"]
_AFFIRMATIVE = _CONTEXT["affirmative"]
_DENIAL = _CONTEXT["denial"]
_UNSURE = _CONTEXT["unsure"]
_WHEN = _CONTEXT["time_named"]
_CONTEXT_TURNS = 6  # how many earlier user messages can colour this one


# --- the detector -----------------------------------------------------------------------------


class CrisisDetector:
    """Assess a user message, in the light of the conversation before it.

    >>> CrisisDetector().assess("今天加班累死了").level
    'none'
    """

    def __init__(self, audit_log: str | Path | None = None):
        self.audit_log = Path(audit_log) if audit_log else None

    def assess(self, text: str, context: Sequence[dict | str] = ()) -> Assessment:
        assessment = _assess_message(text)
        assessment = _with_context(assessment, normalize(text), list(context))
        if self.audit_log is not None and assessment.level != "none":
            self._audit(assessment)
        return assessment

    def _audit(self, assessment: Assessment) -> None:
        # One short line appended per event: an append of a single line is all-or-nothing in
        # practice, and rewriting the whole log atomically on each message would grow with it.
        record = {"ts": datetime.now(UTC).isoformat(timespec="seconds"), **assessment.to_dict()}
        self.audit_log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.audit_log, "a", encoding="utf-8") as log:
            log.write(json.dumps(record, ensure_ascii=False) + "\n")


@lru_cache(maxsize=4096)
def _assess_cached(text: str) -> tuple[str, tuple[str, ...], str, tuple[str, ...]]:
    normal = matching_text(text)
    language = detect_language(normal)
    hits = _hits(normal, RULES) + _hits(normal, CONCERN_RULES)
    signs = _warning_signs(normal)
    level = max((hit.level for hit in hits), key=RANK.__getitem__, default="none")
    reasons = [hit.reason for hit in hits]
    has_mood = any(hit.level == "concern" and hit.category in _MOOD_SIGNS for hit in hits)
    if signs:
        reasons += [f"sign.{name}" for name in signs]
        if level != "crisis" and (len(signs) >= 2 or has_mood):
            level = "crisis"
            hits.append(Hit("crisis", "plan_means", "warning_signs"))
        elif level == "none":
            level = "concern"
            hits.append(Hit("concern", "warning_sign", "warning_signs"))
    categories = _unique(hit.category for hit in hits if hit.level == level and level != "none")
    if level != "crisis" and not _lowered_by_rules(normal, reasons):
        level, categories, reasons = _with_classifier(normal, level, categories, reasons)
    return level, tuple(categories), language, tuple(_unique(reasons))


# --- the trained classifier: a second reader for phrasings no rule knows --------------------------

# When the classifier may speak: rules/classifier.yaml (thresholds, with the measurements
# behind them). Module globals, read at each call, so a test can switch the classifier off.
CLASSIFIER_CRISIS_AT = _BOOK.classifier.crisis_at
CLASSIFIER_CONCERN_AT = _BOOK.classifier.concern_at
CLASSIFIER_MIN_UNITS = _BOOK.classifier.min_units  # below: concern at most, never crisis
# Reasons the rules give for lowering a match: the classifier may not overrule them.
_LOWERED = (
    ":negated",
    ":hyperbole",
    ":topic",
    ":asked_about",
    ":preference_idiom",
    ":fear_of_death",
    ":reported",
    ":third_party",
    ":past",
    ":joking",
)


# Risk words whose surroundings decide their sense (我从来没想过死, 累得要死), idioms that hold a
# risk word but no risk (死机, 跳槽), injuries told as mishaps (切菜的时候割到手).
_ANCHOR = _BOOK.classifier.anchor
_IDIOM_ZH = _BOOK.classifier.cues["idiom"].pattern
_ACCIDENT = _BOOK.classifier.cues["accident"].pattern
# Rules that weigh a threat themselves and chose "concern" unless a weapon, a plan or a
# grievance makes it serious: the classifier does not second-guess them.
_SELF_ESCALATING = {rule.name for rule in (*RULES, *CONCERN_RULES) if rule.escalate_if is not None}


def _lowered_by_rules(normal: str, reasons: list[str]) -> bool:
    """A rule lowered or weighed a match, or every risk word is lowered in its context."""
    if any(reason.endswith(_LOWERED) or reason in _SELF_ESCALATING for reason in reasons):
        return True
    idioms = [found.span() for found in _IDIOM_ZH.finditer(normal)]
    anchors = [
        _judge(_ANCHOR, normal, match)
        for match in _ANCHOR.pattern.finditer(normal)
        if not any(start <= match.start() < end for start, end in idioms)
    ]
    if not anchors:
        # no risk word outside an idiom: lowered if there was one inside, free if none at all
        return bool(idioms) and bool(_ANCHOR.pattern.search(normal))
    if _ACCIDENT.search(normal):
        return True  # 切菜的时候割到手: a cut, not self-harm
    return all(hit.level != "crisis" for hit in anchors)


def _with_classifier(
    normal: str, level: str, categories: list[str], reasons: list[str]
) -> tuple[str, list[str], list[str]]:
    # imported here: the classifier module imports this one (for `matching_text`)
    from anxin.safety.classifier import shipped_classifier

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
    return len(_CJK.findall(normal)) + 1.5 * len(_LATIN_WORD.findall(normal))


def _assess_message(text: str) -> Assessment:
    level, categories, language, reasons = _assess_cached(text)
    return Assessment(level, list(categories), language, list(reasons))


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
    prior_risk = [
        a for a in prior if a.level != "none" and SELF_RISK_CATEGORIES & set(a.categories)
    ]
    last = messages[-1] if messages else None

    if last and last["role"] == "assistant":
        question = normalize(last["content"])
        if _RISK_QUESTION.search(question) and _QUESTION.search(question):
            if _AFFIRMATIVE.match(normal) and not _DENIAL.match(normal):
                return _raised(
                    assessment, "crisis", ["suicidal_ideation"], "context.affirmed_risk_question"
                )
            if _UNSURE.match(normal):
                return _raised(
                    assessment, "concern", ["suicidal_ideation"], "context.unsure_risk_answer"
                )

    if prior_risk and _RESOLVE_CUES.search(normal) and not _HELP_SEEKING.search(normal):
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
        and _WHEN.search(normal)
        and not _HELP_SEEKING.search(normal)
    ):
        return _raised(
            assessment, "crisis", ["plan_means", "context_escalation"], "context.time_named"
        )
    if recent_crisis and assessment.level == "none":
        return _raised(assessment, "concern", ["context_escalation"], "context.recent_crisis")
    return assessment


def _raised(assessment: Assessment, level: str, categories: list[str], reason: str) -> Assessment:
    return Assessment(
        level,
        _unique(categories),
        assessment.language,
        _unique([*assessment.reasons, reason]),
    )


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))
