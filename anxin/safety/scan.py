"""Find a pattern's matches only where one can begin: the same matches, found faster.

Most care-layer patterns begin with a lookbehind, a `\\b` or a group of word lists, and then
Python's regex engine tries the whole pattern at every character of the text: the rules, cues
and reply checks together cost about a microsecond per character, 200 ms for a 20 KB message.
But every match of a rule begins with one of a few short beginnings (想死, 自杀, kil, a digit).
`Scanner` lists them once from the parsed pattern, finds the places where one occurs with a
single regex of those literals (the engine's fast path), and tries the full pattern only
there, with `match` at that place: lookbehinds, `\\b` and `^` see the same text as before, so
the matches, their order and their spans are exactly those of `re.Pattern.finditer`/`search`.

Where the beginnings cannot be listed (a match may begin with any letter, or be empty) or the
text is short, `Scanner` uses the compiled pattern itself.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator

# The regex parser is private to `re`, but stable since Python 3.11 (it was `sre_parse`). If it
# ever changes shape, `_candidates` finds nothing to list and the plain pattern is used.
from re import _constants as sre  # type: ignore[attr-defined]
from re import _parser as parser  # type: ignore[attr-defined]

# Candidates are found by the first few characters a match can begin with: three where the
# pattern lists them (想好了, 决定了, wan...), so the Python loop runs only where a trigger word
# really starts; fewer when listing three would take too many. A character set of digits or
# spaces stays one class (`\d`); a wider set (any letter, anything but 。) ends a beginning.
_PREFIX_LENGTHS = (3, 2, 1)
_MAX_PREFIXES = 3000
_MAX_SET = 24  # a set of more characters than this is kept as a class, not listed
_NARROW_CATEGORIES = {sre.CATEGORY_DIGIT: r"\d", sre.CATEGORY_SPACE: r"\s"}
_ZERO_WIDTH = {sre.AT, sre.ASSERT, sre.ASSERT_NOT}
# Flags a group may turn on that change which text matches: listing stops at such a group.
_CASE_FLAGS = sre.SRE_FLAG_IGNORECASE | sre.SRE_FLAG_LOCALE
_LOCAL_FLAGS = _CASE_FLAGS | sre.SRE_FLAG_ASCII  # and for beginnings, what \b counts as a word
_REPEATS = {sre.MAX_REPEAT, sre.MIN_REPEAT, getattr(sre, "POSSESSIVE_REPEAT", sre.MAX_REPEAT)}
_GROUPS = {sre.SUBPATTERN, getattr(sre, "ATOMIC_GROUP", sre.SUBPATTERN)}
# Below this many characters the engine's own scan is as quick as finding candidates first.
_SHORT = 24
# From this many characters a span is first checked for a part every match holds.
_LONG = 256
# Where failed candidates are everywhere (a text of digits, for a dose rule), a Python loop over
# them costs more than the engine's own scan: past this many misses in one scan, coming closer
# than _DENSE characters apart on average, the scan hands over to the engine.
_MAX_MISSES = 64
_DENSE = 8

Beginning = tuple[str, ...]  # regex pieces, one per character: 想, \d, [0-9一二三]


class _TooMany(Exception):
    pass


class _LocalFlags(Exception):
    """A group turns on a flag the listed beginnings would not honour: (?i:…) matches KILL, and
    in (?a:…) a \\b sees only ASCII letters as word characters."""


def _beginnings(items: list, length: int, budget: list[int]) -> set[Beginning]:
    """Beginnings of at most `length` characters, one of which begins every match of `items`.

    An empty beginning in the result means some match may begin with anything.
    """
    if length == 0 or not items:
        return {()}
    (op, value), rest = items[0], items[1:]
    if op is sre.AT and value == sre.AT_BOUNDARY:
        return {_after_boundary(tail) for tail in _beginnings(rest, length, budget)}
    if op in _ZERO_WIDTH:
        return _beginnings(rest, length, budget)  # consumes nothing: look past it
    if op is sre.LITERAL:
        heads = [re.escape(chr(value))]
    elif op is sre.IN:
        heads = _set_pieces(value)
        if heads is None:
            return {()}
    elif op in _GROUPS:
        inner = value[-1] if op is sre.SUBPATTERN else value
        if op is sre.SUBPATTERN and value[1] & _LOCAL_FLAGS:
            raise _LocalFlags
        return _beginnings(list(inner) + rest, length, budget)
    elif op is sre.BRANCH:
        found: set[Beginning] = set()
        for branch in value[1]:
            found |= _beginnings(list(branch) + rest, length, budget)
        return found
    elif op in _REPEATS:
        return _repeat_beginnings(op, value, rest, length, budget)
    else:  # any character, a negated literal, a back-reference, ...
        return {()}
    tails = _beginnings(rest, length - 1, budget)
    budget[0] -= len(heads) * len(tails)
    if budget[0] < 0:
        raise _TooMany
    return {(head, *tail) for head in heads for tail in tails}


def _after_boundary(beginning: Beginning) -> Beginning:
    """A beginning that must sit at a word boundary (\\bi, \\bmy): its first character checked
    for it from behind, i(?<=\\bi), so every beginning still opens with a character the engine
    can look for at its own speed. Without it, each i and my inside an English word was tried."""
    if not beginning or "(?<=" in beginning[0]:
        return beginning  # nothing to check, or checked already (\b\b)
    head, *tail = beginning
    return (rf"{head}(?<=\b{head})", *tail)


def _repeat_beginnings(op, value, rest: list, length: int, budget: list[int]) -> set[Beginning]:
    low, high, inner = value
    if high == 0:
        return _beginnings(rest, length, budget)
    if () in _beginnings(list(inner), 1, budget):
        return {()}  # the repeated part can match empty (or anything): nothing to list
    again = [(op, (max(low - 1, 0), high if high == sre.MAXREPEAT else high - 1, inner))]
    once = _beginnings(list(inner) + again + rest, length, budget)
    return once if low > 0 else once | _beginnings(rest, length, budget)


def _set_pieces(items) -> list[str] | None:
    """A character set as listed characters, or as one class of digits or spaces; None when
    it is negated or wide (letters, a large range)."""
    chars: list[str] = []
    categories: list[str] = []
    for op, value in items:
        if op is sre.LITERAL:
            chars.append(chr(value))
        elif op is sre.RANGE and value[1] - value[0] < _MAX_SET:
            chars.extend(chr(c) for c in range(value[0], value[1] + 1))
        elif op is sre.CATEGORY and value in _NARROW_CATEGORIES:
            categories.append(_NARROW_CATEGORIES[value])
        else:
            return None
    if not categories and len(chars) <= _MAX_SET:
        return [re.escape(char) for char in chars]
    if len(chars) > 4 * _MAX_SET:
        return None
    return ["[" + "".join(map(re.escape, chars)) + "".join(categories) + "]"]


def _trie(beginnings: set[Beginning]) -> str:
    """One regex for a set of beginnings, shared heads factored out (想好了|想清楚了 →
    想(?:好了|清楚了)), so the engine tries each character once; a beginning that starts with
    another one in the set adds nothing and is left out."""
    kept: set[Beginning] = set()
    for beginning in sorted(beginnings, key=len):
        # a beginning is at most a few pieces long: look up its own prefixes, not every kept one
        if not any(beginning[:length] in kept for length in range(1, len(beginning) + 1)):
            kept.add(beginning)
    root: dict = {}
    for beginning in kept:
        node = root
        for piece in beginning:
            node = node.setdefault(piece, {})

    def emit(node: dict) -> str:
        branches = [piece + emit(child) for piece, child in sorted(node.items())]
        if not branches:
            return ""
        return branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"

    return emit(root)


# Single characters too common to tell a text apart: a part every match holds is chosen among
# the others where the pattern allows (打 rather than 我 in 他打了我).
_COMMON = set("我你他她它的了是不在有就也都说人个一这那想要会没很好吗呢吧啊,.!? ")
_MAX_REQUIRED = 200


def _required(items) -> set[str] | None:
    """Literal strings one of which every match of `items` holds, the most telling such set
    the pattern names (longer strings, fewer of them, no common single characters); None where
    it names none. Lookarounds are passed over: what they see is not part of the match."""
    choices: list[set[str]] = []
    run = ""
    for op, value in list(items) + [(None, None)]:  # the sentinel ends the last run
        if op is sre.LITERAL:
            run += chr(value)
            continue
        if run:
            choices.append({run})
            run = ""
        if op is not None and (found := _required_of(op, value)) is not None:
            choices.append(found)
    return min(choices, key=_cost, default=None)


def _required_of(op, value) -> set[str] | None:
    if op is sre.IN:
        listed = [chr(v) for o, v in value if o is sre.LITERAL]
        return set(listed) if listed and len(listed) == len(value) else None
    if op is sre.SUBPATTERN:
        return None if value[1] & _CASE_FLAGS else _required(value[-1])
    if op in _GROUPS:  # an atomic group
        return _required(value)
    if op in _REPEATS:
        low, _, inner = value
        return _required(inner) if low >= 1 else None
    if op is sre.BRANCH:
        found: set[str] = set()
        for branch in value[1]:
            part = _required(branch)
            if part is None:
                return None
            found |= part
            if len(found) > _MAX_REQUIRED:
                return None
        return found
    return None


def _cost(strings: set[str]) -> float:
    return sum((10 if s in _COMMON else 1) / len(s) ** 2 for s in strings)


def _parsed(pattern: re.Pattern[str]) -> list | None:
    """The parsed pattern, or None where candidates cannot be found for it."""
    if pattern.flags & (re.IGNORECASE | re.LOCALE | re.VERBOSE | re.MULTILINE):
        return None
    if pattern.pattern.startswith(("^", r"\A")):
        return None  # the engine tries these at the start only, already
    try:
        return list(parser.parse(pattern.pattern, pattern.flags))
    except (re.error, RecursionError, TypeError, ValueError, AttributeError):
        return None


def _literal_pattern(items: list | None, flags: int) -> re.Pattern[str] | None:
    """A pattern that finds every place where a match of `items` can begin, or None."""
    if not items:
        return None
    for length in _PREFIX_LENGTHS:
        try:
            found = _beginnings(items, length, [_MAX_PREFIXES])
        except (_TooMany, RecursionError):
            continue
        except (_LocalFlags, TypeError, ValueError, AttributeError):
            return None
        if () not in found:
            return re.compile(_trie(found), flags & ~re.DEBUG)
    return None


class Scanner:
    """A compiled pattern whose `search` and `finditer` try it only where a match can begin.

    Everything else (`pattern`, `match`, `sub`, ...) is the compiled pattern's own.
    """

    __slots__ = ("compiled", "first", "required", "pattern", "match", "fullmatch")

    def __init__(self, compiled: re.Pattern[str]):
        self.compiled = compiled
        # bound here, not looked up through __getattr__: judging a match calls these often
        self.pattern, self.match, self.fullmatch = (
            compiled.pattern,
            compiled.match,
            compiled.fullmatch,
        )
        parsed = _parsed(compiled)
        self.first = _literal_pattern(parsed, compiled.flags)
        # A part every match holds, looked for at the engine's speed before any beginning is
        # tried: where a pattern may begin anywhere (累得想死: any character, then 得 or 到), in
        # any span; otherwise in a long one, where it spares trying each beginning (打 in
        # 他…打了我: the 6,666 他 of 他想死 repeated).
        required = _required(parsed) if parsed else None
        self.required = (
            re.compile("|".join(map(re.escape, sorted(required, key=len, reverse=True))))
            if required
            else None
        )

    def __getattr__(self, name: str):
        return getattr(self.compiled, name)

    def __repr__(self) -> str:
        return f"Scanner({self.compiled.pattern!r})"

    def search(self, text: str, pos: int = 0, endpos: int = sys.maxsize) -> re.Match[str] | None:
        if min(len(text), endpos) - pos < _SHORT:
            return self.compiled.search(text, pos, endpos)
        if self.first is None:
            if self._lacks_required(text, pos, endpos):
                return None
            return self.compiled.search(text, pos, endpos)
        return next(self._scan(text, pos, endpos, whole=pos == 0 and endpos >= len(text)), None)

    def finditer(self, text: str, pos: int = 0, endpos: int = sys.maxsize) -> Iterator[re.Match]:
        if min(len(text), endpos) - pos < _SHORT:
            return self.compiled.finditer(text, pos, endpos)
        if self.first is None:
            if self._lacks_required(text, pos, endpos):
                return iter(())
            return self.compiled.finditer(text, pos, endpos)
        return self._scan(text, pos, endpos)

    def _lacks_required(self, text: str, pos: int, endpos: int) -> bool:
        """Whether the span lacks every string a match must hold: then it holds no match."""
        return self.required is not None and self.required.search(text, pos, endpos) is None

    def _scan(
        self, text: str, pos: int, endpos: int, whole: bool = True
    ) -> Iterator[re.Match[str]]:
        """`whole`: the span is read once (a finditer, a whole text searched), not one of the
        many spans a judgement asks of a text: only then is it checked for a required part."""
        assert self.first is not None
        candidates, match = self.first.search, self.compiled.match
        start, misses = pos, 0
        candidate = candidates(text, pos, endpos)
        # after the first beginning, not before: where there is none, one scan is enough; and
        # only in a long span (a short one is scanned as quickly as it is checked)
        if (
            candidate is not None
            and whole
            and min(len(text), endpos) - candidate.start() >= _LONG
            and self._lacks_required(text, candidate.start(), endpos)
        ):
            return
        while candidate is not None:
            found = match(text, candidate.start(), endpos)
            if found is None:
                pos = candidate.start() + 1
                misses += 1
                if misses > _MAX_MISSES and (pos - start) < misses * _DENSE:
                    break
            else:
                yield found
                pos = found.end()  # never empty: a pattern that can match empty has no `first`
            candidate = candidates(text, pos, endpos)
        else:
            return
        # Candidates everywhere in this text: the engine's own scan is cheaper from here on.
        # No match begins before `pos`, so its matches from `pos` are the ones still to come.
        yield from self.compiled.finditer(text, pos, endpos)


def scanner(pattern: str | re.Pattern[str]) -> Scanner:
    return Scanner(re.compile(pattern, re.DOTALL) if isinstance(pattern, str) else pattern)
