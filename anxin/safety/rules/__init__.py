"""The care layer's rules as reviewable data: read `rules/*.yaml`, check them, compile them once.

    lexicon.yaml     word lists and regex pieces shared by the detector, the reply guard, the
                     data rubric and the classifier
    traditional.tsv  traditional → simplified characters (OpenCC's table), applied first
    cantonese.tsv    written Cantonese words → Mandarin, applied next
    crisis.yaml      detector rules whose match is a crisis (or a concern a cue escalates)
    concern.yaml     detector rules whose match is a concern
    signs.yaml       warning signs that add up to a plan
    judgement.yaml   cues that judge a match in its surroundings (negation, past, speaker ...)
    context.yaml     cues that read a message in the light of the conversation before it
    classifier.yaml  when the trained classifier may raise a level
    reply.yaml       what a model reply may not say (the reply guard)

A pattern names a lexicon entry as `{name}`: a word list becomes `(?:w1|w2|...)`, longest word
first so 安眠药 is tried before 药, a space in a word matching any whitespace; a fragment is
inserted as `(?:fragment)`. A file may define `words:` and `fragments:` of its own, seen by its
own patterns only. A pattern written as a list is its items as alternatives, joined with `|`.

Every rule and cue carries `examples:` (texts it must fire on) and `not:` (texts it must not
fire on); tests/test_safety_rules.py checks each. Loading fails on the first problem with a
`RulesError` naming the file, the rule and the field; an unknown field names the closest valid
one. Nothing here interprets a rule: that is `detector.py`, `guard.py` and `classifier.py`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml

from anxin.safety.scan import Scanner

FOLDER = Path(__file__).resolve().parent

LEVELS = ("none", "concern", "crisis")
# Categories a crisis assessment can carry; the Engine treats them alike, people reading an
# audit log need them apart. The classifier's classes follow this order (its weights too).
CRISIS_CATEGORIES = ("suicidal_ideation", "plan_means", "self_harm", "harm_others", "abuse_danger")
CATEGORIES = (*CRISIS_CATEGORIES, "hopelessness", "third_party", "past_history")
SCRIPTS = ("zh", "en", "any")  # which letters a message needs for a rule to be tried
# What may lower a detector rule's match, in the order the detector asks (see detector._judge).
LOWERINGS = (
    "negation",  # 我没有想自杀: a negation before it in the same clause → none
    "hyperbole",  # 累得想死: a degree complement → none (everyday) or concern
    "topic",  # 关于自杀预防的论文: talk about the subject → none
    "asked_about",  # 她问我有没有…: a question reported, unless answered yes → none
    "preference_idiom",  # 宁愿去死也不…: a way of saying no → none
    "fear",  # 我最怕的就是死: fear of death, not a wish → none
    "someone_else",  # a stranger or a story as the subject → none; someone close → concern
    "stranger",  # only a stranger or a story lowers it (danger to someone close stays a crisis)
    "past",  # told as a past event, or (`act`) as something done ("自残过") → concern
    "joke",  # 哈哈 / lol anywhere in the message → concern
)

_REFERENCE = re.compile(r"\{([a-z][a-z0-9_]*)\}")
_CLASS_NAME = re.compile(r"[A-Z][A-Z_]*")


class RulesError(ValueError):
    """A rules file that cannot be used: the message names the file, the rule and the field."""


@dataclass(frozen=True)
class Lexicon:
    """Named word lists and regex fragments that patterns refer to as {name}."""

    words: dict[str, tuple[str, ...]] = field(default_factory=dict)
    fragments: dict[str, str | list[str]] = field(default_factory=dict)

    def expand(self, pattern: str | list[str], seen: tuple[str, ...] = ()) -> str:
        """`pattern` with every {name} filled in, recursively; ValueError names a bad entry."""
        if isinstance(pattern, list):
            if not pattern or not all(isinstance(item, str) and item for item in pattern):
                raise ValueError("a pattern list must hold one or more non-empty strings")
            pattern = "|".join(pattern)
        if not isinstance(pattern, str) or not pattern:
            raise ValueError("must be a non-empty string or a list of strings")
        return _REFERENCE.sub(lambda found: self._entry(found.group(1), seen), pattern)

    def _entry(self, name: str, seen: tuple[str, ...]) -> str:
        if name in self.words:
            return _alternation(self.words[name])
        if name not in self.fragments:
            hint = _closest(name, [*self.words, *self.fragments])
            raise ValueError(f"no lexicon entry {{{name}}}{hint}")
        if name in seen:
            raise ValueError(f"{{{name}}} refers to itself ({' → '.join((*seen, name))})")
        return f"(?:{self.expand(self.fragments[name], (*seen, name))})"

    def merged(self, other: Lexicon) -> Lexicon:
        return Lexicon({**self.words, **other.words}, {**self.fragments, **other.fragments})


def _alternation(words: tuple[str, ...]) -> str:
    # longest first, so a word is never cut short by a shorter one it starts with
    ordered = sorted(words, key=len, reverse=True)
    escaped = (r"\s+".join(re.escape(part) for part in word.split(" ")) for word in ordered)
    return "(?:" + "|".join(escaped) + ")"


@dataclass(frozen=True)
class Rule:
    """A detector rule: a pattern, what it means, and what may lower it in context."""

    name: str
    script: str
    category: str
    level: str
    pattern: Scanner
    lowered_by: frozenset[str]
    act: bool  # "X过" after the match tells something done (自残过), not a thought (想过死)
    requires: Scanner | None = None  # tried only if the message also matches this
    unless: Scanner | None = None  # not tried where the message matches this
    escalate_if: Scanner | None = None  # a concern this makes a crisis
    examples: tuple[str, ...] = ()
    counterexamples: tuple[str, ...] = ()  # the file's `not:`


@dataclass(frozen=True)
class Cue:
    """A named pattern the interpreter searches for (a sign, a context cue, a judgement cue)."""

    name: str
    pattern: Scanner
    examples: tuple[str, ...] = ()
    counterexamples: tuple[str, ...] = ()
    unless: Scanner | None = None  # signs only: not found where the message also matches this

    def finds(self, text: str) -> bool:
        return bool(self.pattern.search(text)) and not (self.unless and self.unless.search(text))


@dataclass(frozen=True)
class ReplyRule:
    """What a model reply may not say; `unless` and `requires` are searched in the sentence."""

    name: str
    pattern: Scanner
    requires: Scanner | None = None
    unless: Scanner | None = None
    examples: tuple[str, ...] = ()
    counterexamples: tuple[str, ...] = ()


@dataclass(frozen=True)
class ClassifierGate:
    """When the trained classifier's probability may raise a level (see detector.py)."""

    crisis_at: float
    concern_at: float
    lowered_crisis_at: float  # where the rules lowered every risk word in the message
    english_crisis_at: float  # English: the thresholds the written English sets support
    english_concern_at: float
    min_units: int
    anchor: Rule
    cues: dict[str, Cue]


@dataclass(frozen=True)
class Rulebook:
    crisis: tuple[Rule, ...]
    concern: tuple[Rule, ...]
    signs: tuple[Cue, ...]
    crisis_with_mood: frozenset[str]
    crisis_after_past: frozenset[str]  # signs that make a crisis of a risk told as past
    judgement: dict[str, Cue]
    context: dict[str, Cue]
    classifier: ClassifierGate
    reply: tuple[ReplyRule, ...]
    lexicon: Lexicon  # the shared entries only: a file's own are not seen outside it
    word_classes: dict[str, str]  # the classifier's coarse classes, as expanded patterns
    traditional: dict[str, str]  # traditional character -> simplified
    cantonese: dict[str, str]  # a written Cantonese word -> its Mandarin sense (simplified)
    cantonese_marks: frozenset[str]  # characters only Cantonese writes: they mark a message

    def all_cues(self) -> dict[str, Cue]:
        """Every cue, by "<file>.<name>" (signs, judgement, context, classifier)."""
        groups = {
            "signs": {cue.name: cue for cue in self.signs},
            "judgement": self.judgement,
            "context": self.context,
            "classifier": self.classifier.cues,
        }
        return {
            f"{group}.{name}": cue for group, cues in groups.items() for name, cue in cues.items()
        }


# --- reading and checking ------------------------------------------------------------------------


class _Source:
    """One YAML file: its data, and the lexicon its patterns see (shared, then its own)."""

    def __init__(self, path: Path, shared: Lexicon):
        self.path = path
        self.data = _read_mapping(path)
        own = self._own_lexicon()
        for name in (own.words.keys() | own.fragments.keys()) & (
            shared.words.keys() | shared.fragments.keys()
        ):
            raise self.fail(name, "already a lexicon entry; choose another name")
        self.lexicon = shared.merged(own)

    def _own_lexicon(self) -> Lexicon:
        words, fragments = self.section("words"), self.section("fragments")
        for name in words.keys() & fragments.keys():
            raise self.fail(name, "both a word list and a fragment")
        for name, entry in words.items():
            if not isinstance(entry, list) or not entry:
                raise self.fail(f"words: {name}", "must be a non-empty list of words")
            if not all(isinstance(word, str) and word.strip() for word in entry):
                raise self.fail(f"words: {name}", "every word must be a non-empty string")
            for word in {word for word in entry if entry.count(word) > 1}:
                raise self.fail(f"words: {name}", f"{word!r} is listed twice")
        return Lexicon({name: tuple(entry) for name, entry in words.items()}, dict(fragments))

    def section(self, key: str) -> dict:
        section = self.data.get(key, {})
        if not isinstance(section, dict):
            raise self.fail(key, "must be a mapping of name → value")
        return section

    def fail(self, where: str, problem: str) -> RulesError:
        return RulesError(f"{self.path.name}: {where}: {problem}")

    def compile(self, where: str, pattern: object) -> Scanner:
        try:
            expanded = self.lexicon.expand(pattern)
        except ValueError as error:
            raise self.fail(where, str(error)) from None
        try:
            # DOTALL: normalised text keeps line breaks, and .* in a rule means the whole message
            return Scanner(re.compile(expanded, re.DOTALL))
        except re.error as error:
            raise self.fail(where, f"bad regex ({error})") from None


def _read_mapping(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise RulesError(f"{path}: cannot read ({error.strerror})") from None
    try:
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as error:
        raise RulesError(f"{path.name}: not valid YAML ({error})") from None
    if not isinstance(data, dict):
        raise RulesError(f"{path.name}: must be a mapping at the top")
    return data


def _closest(name: str, valid) -> str:
    matches = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.5)
    return f" (did you mean {matches[0]!r}?)" if matches else ""


def _check_fields(source: _Source, where: str, item: object, required: set, optional: set) -> dict:
    if not isinstance(item, dict):
        raise source.fail(where, "must be a mapping of field → value")
    valid = required | optional
    for key in item:
        if key not in valid:
            raise source.fail(where, f"unknown field {key!r}{_closest(str(key), sorted(valid))}")
    for key in sorted(required - item.keys()):
        raise source.fail(where, f"missing field {key!r}")
    return item


def _choice(source: _Source, where: str, value: object, choices: tuple[str, ...]) -> str:
    if value not in choices:
        hint = _closest(str(value), choices)
        raise source.fail(where, f"{value!r} is not one of {', '.join(choices)}{hint}")
    return value


def _texts(source: _Source, where: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(t, str) for t in value):
        raise source.fail(where, "must be a non-empty list of texts")
    return tuple(value)


def _where(kind: str, item: object, index: int) -> str:
    if isinstance(item, dict) and isinstance(item.get("name"), str):
        return f"{kind} {item['name']}"
    return f"{kind} #{index + 1}"


def _name(source: _Source, where: str, item: dict, seen: set[str]) -> str:
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise source.fail(where, "name: missing or empty")
    if name in seen:
        raise source.fail(where, "name used twice")
    seen.add(name)
    return name


# --- the parts of a rulebook ---------------------------------------------------------------------

_RULE_REQUIRED = {"name", "script", "category", "level", "pattern", "lowered_by", "act"}
_RULE_REQUIRED |= {"examples", "not"}
_RULE_OPTIONAL = {"requires", "unless", "escalate_if"}


def _rule(source: _Source, item: object, index: int, seen: set[str]) -> Rule:
    where = _where("rule", item, index)
    item = _check_fields(source, where, item, _RULE_REQUIRED, _RULE_OPTIONAL)
    name = _name(source, where, item, seen)
    lowered_by = item["lowered_by"]
    if not isinstance(lowered_by, list):
        raise source.fail(f"{where}: lowered_by", "must be a list (empty if nothing lowers it)")
    for lowering in lowered_by:
        _choice(source, f"{where}: lowered_by", lowering, LOWERINGS)
    if not isinstance(item["act"], bool):
        raise source.fail(f"{where}: act", "must be true or false")
    optional = {
        key: source.compile(f"{where}: {key}", item[key]) for key in _RULE_OPTIONAL if key in item
    }
    return Rule(
        name=name,
        script=_choice(source, f"{where}: script", item["script"], SCRIPTS),
        category=_choice(source, f"{where}: category", item["category"], CATEGORIES),
        level=_choice(source, f"{where}: level", item["level"], LEVELS[1:]),
        pattern=source.compile(f"{where}: pattern", item["pattern"]),
        lowered_by=frozenset(lowered_by),
        act=item["act"],
        examples=_texts(source, f"{where}: examples", item["examples"]),
        counterexamples=_texts(source, f"{where}: not", item["not"]),
        **optional,
    )


def _cue(
    source: _Source,
    item: object,
    index: int,
    seen: set[str],
    optional: frozenset[str] = frozenset(),
) -> Cue:
    where = _where("cue", item, index)
    item = _check_fields(source, where, item, {"name", "pattern", "examples", "not"}, set(optional))
    return Cue(
        name=_name(source, where, item, seen),
        pattern=source.compile(f"{where}: pattern", item["pattern"]),
        examples=_texts(source, f"{where}: examples", item["examples"]),
        counterexamples=_texts(source, f"{where}: not", item["not"]),
        **{key: source.compile(f"{where}: {key}", item[key]) for key in optional if key in item},
    )


def _sign(source: _Source, item: object, index: int, seen: set[str]) -> Cue:
    """A warning sign: a cue that may also name what keeps it from counting (`unless`)."""
    return _cue(source, item, index, seen, frozenset({"unless"}))


def _reply_rule(source: _Source, item: object, index: int, seen: set[str]) -> ReplyRule:
    where = _where("rule", item, index)
    required, optional = {"name", "pattern", "examples", "not"}, {"requires", "unless"}
    item = _check_fields(source, where, item, required, optional)
    return ReplyRule(
        name=_name(source, where, item, seen),
        pattern=source.compile(f"{where}: pattern", item["pattern"]),
        examples=_texts(source, f"{where}: examples", item["examples"]),
        counterexamples=_texts(source, f"{where}: not", item["not"]),
        **{key: source.compile(f"{where}: {key}", item[key]) for key in optional if key in item},
    )


def _items(source: _Source, key: str, read) -> tuple:
    items = source.data.get(key)
    if not isinstance(items, list) or not items:
        raise source.fail(key, "must be a non-empty list")
    seen: set[str] = set()
    return tuple(read(source, item, index, seen) for index, item in enumerate(items))


def _top(source: _Source, required: set[str]) -> dict:
    return _check_fields(source, "(top)", source.data, required, {"words", "fragments"})


def _threshold(source: _Source, key: str) -> float:
    value = source.data[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise source.fail(key, "must be a probability between 0 and 1")
    return float(value)


# --- loading -------------------------------------------------------------------------------------


def _shared_lexicon(folder: Path) -> tuple[_Source, dict[str, str]]:
    source = _Source(folder / "lexicon.yaml", Lexicon())
    _top(source, {"word_classes"})
    for name in source.lexicon.fragments:
        source.compile(f"fragments: {name}", f"{{{name}}}")
    classes = {}
    for name, pattern in source.section("word_classes").items():
        if not _CLASS_NAME.fullmatch(str(name)):
            raise source.fail(f"word_classes: {name}", "a class name is written in CAPITALS")
        classes[name] = source.compile(f"word_classes: {name}", pattern).pattern
    return source, classes


def _tsv_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """A table file's rows as (line number, tab-separated fields), blank lines and # comments
    left out; a file that cannot be read is named."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise RulesError(f"{path.name}: cannot read ({error})") from None
    for number, line in enumerate(lines, 1):
        if line.strip() and not line.startswith("#"):
            yield number, line.split("\t")


def _traditional(path: Path) -> dict[str, str]:
    """traditional.tsv: `繁<TAB>简` lines, # comments; a bad line is named. A simplified form
    may not be a traditional one too (薴 → 苧 → 苎 would read 薴 differently once and twice)."""
    table, lines_of = {}, {}
    for number, pair in _tsv_rows(path):
        if len(pair) != 2 or any(len(form) != 1 for form in pair) or pair[0] == pair[1]:
            raise RulesError(
                f"{path.name}:{number}: must be two different characters, a tab between"
            )
        if pair[0] in table:
            raise RulesError(
                f"{path.name}:{number}: {pair[0]} is already mapped to {table[pair[0]]}"
            )
        table[pair[0]], lines_of[pair[0]] = pair[1], number
    for traditional, simplified in table.items():
        if simplified in table:
            raise RulesError(
                f"{path.name}:{lines_of[traditional]}: {simplified} is itself mapped "
                f"(line {lines_of[simplified]}): map {traditional} to {table[simplified]}"
            )
    if not table:
        raise RulesError(f"{path.name}: holds no pairs")
    return table


def _cantonese(path: Path, traditional: dict[str, str]) -> tuple[dict[str, str], frozenset[str]]:
    """cantonese.tsv: `粤<TAB>普` lines of words, # comments, and a third field `mark` on a
    character Mandarin does not write; a bad line is named. The table reads text the traditional
    one has already simplified, so a word holding a traditional character would never be found.
    Returns the table and the marks."""
    table: dict[str, str] = {}
    marks = set()
    for number, fields in _tsv_rows(path):
        if len(fields) not in (2, 3) or not all(fields[:2]) or fields[0] == fields[1]:
            raise RulesError(f"{path.name}:{number}: must be two different words, a tab between")
        cantonese, mandarin = fields[:2]
        if unsimplified := [ch for ch in cantonese + mandarin if ch in traditional]:
            raise RulesError(
                f"{path.name}:{number}: {unsimplified[0]} is traditional: write "
                f"{traditional[unsimplified[0]]}, as normalising leaves it"
            )
        if len(fields) == 3 and (fields[2] != "mark" or len(cantonese) != 1):
            raise RulesError(f"{path.name}:{number}: a third field is `mark`, on one character")
        if cantonese in table:
            raise RulesError(
                f"{path.name}:{number}: {cantonese} is already mapped to {table[cantonese]}"
            )
        table[cantonese] = mandarin
        if len(fields) == 3:
            marks.add(cantonese)
    if not table or not marks:
        raise RulesError(f"{path.name}: holds no pairs, or no character marked `mark`")
    return table, frozenset(marks)


def load_rulebook(folder: Path = FOLDER) -> Rulebook:
    """Read, check and compile every rules file in `folder`."""
    lexicon, word_classes = _shared_lexicon(folder)
    crisis, concern, signs, judgement, context, gate, reply = (
        _Source(folder / f"{name}.yaml", lexicon.lexicon)
        for name in ("crisis", "concern", "signs", "judgement", "context", "classifier", "reply")
    )
    for part in (crisis, concern, reply):
        _top(part, {"rules"})
    for part in (judgement, context):
        _top(part, {"cues"})
    _top(signs, {"signs", "crisis_with_mood", "crisis_after_past"})
    _top(
        gate,
        {"crisis_at", "concern_at", "lowered_crisis_at", "english_crisis_at", "english_concern_at"}
        | {"min_units"}
        | {"anchor", "cues"},
    )
    mood = signs.data["crisis_with_mood"]
    if not isinstance(mood, list):
        raise signs.fail("crisis_with_mood", "must be a list of categories")
    min_units = gate.data["min_units"]
    if isinstance(min_units, bool) or not isinstance(min_units, int) or min_units < 0:
        raise gate.fail("min_units", "must be a whole number, 0 or more")
    after_past = signs.data["crisis_after_past"]
    if not isinstance(after_past, list):
        raise signs.fail("crisis_after_past", "must be a list of sign names")
    sign_cues = _items(signs, "signs", _sign)
    sign_names = tuple(cue.name for cue in sign_cues)
    traditional = _traditional(folder / "traditional.tsv")
    cantonese, cantonese_marks = _cantonese(folder / "cantonese.tsv", traditional)
    return Rulebook(
        crisis=_items(crisis, "rules", _rule),
        concern=_items(concern, "rules", _rule),
        signs=sign_cues,
        crisis_with_mood=frozenset(_choice(signs, "crisis_with_mood", c, CATEGORIES) for c in mood),
        crisis_after_past=frozenset(
            _choice(signs, "crisis_after_past", name, sign_names) for name in after_past
        ),
        judgement=_by_name(_items(judgement, "cues", _cue)),
        context=_by_name(_items(context, "cues", _cue)),
        classifier=ClassifierGate(
            crisis_at=_threshold(gate, "crisis_at"),
            concern_at=_threshold(gate, "concern_at"),
            lowered_crisis_at=_threshold(gate, "lowered_crisis_at"),
            english_crisis_at=_threshold(gate, "english_crisis_at"),
            english_concern_at=_threshold(gate, "english_concern_at"),
            min_units=min_units,
            anchor=_rule(gate, gate.data["anchor"], 0, set()),
            cues=_by_name(_items(gate, "cues", _cue)),
        ),
        reply=_items(reply, "rules", _reply_rule),
        lexicon=lexicon.lexicon,
        word_classes=word_classes,
        traditional=traditional,
        cantonese=cantonese,
        cantonese_marks=cantonese_marks,
    )


def _by_name(cues: tuple[Cue, ...]) -> dict[str, Cue]:
    return {cue.name: cue for cue in cues}


@lru_cache(maxsize=1)
def rulebook() -> Rulebook:
    """The shipped rules, loaded once per process."""
    return load_rulebook()


def expand(pattern: str) -> str:
    """A pattern with the shipped lexicon's {names} filled in, for patterns kept in code."""
    return rulebook().lexicon.expand(pattern)
