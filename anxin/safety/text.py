"""One spelling for matching, and the language of a message: the text helpers of the care layer.

A leaf of `anxin.safety`: the detector, the classifier and the reply guard all read text through
these, and this module reads only the rules' traditional → simplified table (traditional.tsv),
the Cantonese word table (cantonese.tsv) and the lexicon's speaker tags.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from functools import lru_cache

from anxin.safety.rules import expand, rulebook

# Curly quotes to straight ones, and traditional characters to simplified ones (so 想自殺
# reads like 想自杀), in one table: one pass over the text.
_QUOTES = {"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"'}
_SPELLING = {**_QUOTES, **rulebook().traditional}
# Replaced where found, not by str.translate: translate looks up every character (3 ms for
# 20 KB), the search skips the text at C speed, and most messages hold none of these.
_RESPELL = re.compile("[" + "".join(map(re.escape, _SPELLING)) + "]")
# Written Cantonese words to their Mandarin sense (rules/cantonese.tsv), after the traditional
# table, so the rules and the learned stage read 我唔想活 as 我不想活: read left to right, the
# longest word that starts at a place first, and only in a message that a character only
# Cantonese writes marks as Cantonese, next to another Chinese character (唔，我觉得 and 唔唔 are
# Mandarin's hum). A Mandarin message is never rewritten; a Cantonese one's Mandarin words may be.
_MANDARIN = rulebook().cantonese
_CANTONESE = re.compile("|".join(map(re.escape, sorted(_MANDARIN, key=len, reverse=True))))


# A marked character next to another Chinese character. The class comes first, so the engine
# skips Mandarin at C speed (9x faster than with a lookbehind first).
_MARKS = "".join(map(re.escape, sorted(rulebook().cantonese_marks)))
_CANTONESE_MARK = re.compile(rf"[{_MARKS}](?:(?=[\u4e00-\u9fff])|(?<=[\u4e00-\u9fff].))")


def _is_cantonese(text: str) -> bool:
    """Whether a marked character stands next to another Chinese character, 唔 not doubled."""
    for found in _CANTONESE_MARK.finditer(text):
        start, end = found.span()
        neighbours = (text[max(0, start - 1) : start], text[end : end + 1])
        if found.group() != "唔" or "唔" not in neighbours:
            return True
    return False


# Zero-width characters go, and so does the private-use WORD_GAP where a message holds it.
_ZERO_WIDTH = re.compile(r"[\u200b-\u200f\u2060\ufeff\ue000]")
# Where a space (or an emoji, read as one) stood between two Chinese words (不想上学 想死;
# 我想死   太迷茫了): the rules' patterns read across it as if it were not there (我好想 去死 is
# 我好想去死), their judgements as a clause break (the 不 of 不想上学 does not reach 想死). See
# `matching_text_and_word_gaps`.
WORD_GAP = "\ue000"
# Both patterns begin with a character class (not a lookbehind), so the engine finds their
# places with a quick scan: 5x faster on long messages, the same result.
_CJK_GAP = re.compile(r"\s(?<=[\u4e00-\u9fff]\s)\s*(?=[\u4e00-\u9fff])")
_SPACES = re.compile(r"\s+")
_SCRIPT_SEAM = re.compile(r"[\u4e00-\u9fff](?=[a-z])|[a-z](?=[\u4e00-\u9fff])")
CJK = re.compile(r"[\u4e00-\u9fff]")
# On a phone an emoji stands where a writer puts a space or a comma (没考好😭不想活了: the 没 of
# 没考好 does not reach 不想活了), so it is read as a space: between two Chinese words a word gap,
# beside a single character nothing (好想😭死 is 好想死). Not the laughing ones: the joke cue
# (rules/judgement.yaml) and the classifier's word classes read those as laughter.
LAUGHING = "😂🤣😆😝"
_EMOJI_BLOCKS = ((0x2600, 0x27BF), (0x2B00, 0x2BFF), (0x1F000, 0x1FAFF))


def _emoji_class() -> str:
    """The emoji blocks as one character class without LAUGHING (a class, not a lookahead per
    character: the engine then skips text that holds none at C speed, twice as fast)."""
    cut = sorted(map(ord, LAUGHING))
    spans = []
    for low, high in _EMOJI_BLOCKS:
        for point in (p for p in cut if low <= p <= high):
            spans.append((low, point - 1))
            low = point + 1
        spans.append((low, high))
    return "[" + "".join(f"{chr(a)}-{chr(b)}" for a, b in spans if a <= b) + "\ufe0f]+"


_EMOJI = re.compile(_emoji_class())
LATIN_WORD = re.compile(r"[a-z]+", re.IGNORECASE)
_TITLE = re.compile(r"《[^》]{0,40}》")
# 来访者: / 求助者1: / 来访者a: / client: at the start of the text or after a sentence's end
# (as SENTENCE_END reads it once normalised: NFKC makes ： ':' and … '...'), kept in `before`;
# a tag in mid-sentence (来访者说：…) is reported speech. Not users: or 患者12:00 (a time).
_SPEAKER_TAG = re.compile(
    r"(?P<before>^|[\n。!?.][」』)\"']* ?)[\"']*"
    + expand("{speaker_tags}")
    + r"(?:(?<=[\u4e00-\u9fff]) ?[a-z])?\d? ?:(?!\d) ?"
)
# A sentence ends at 。！？!?…, a newline, or a full stop before a space, with any closing quote.
SENTENCE_END = re.compile(r"[。！？!?\n…]+[”’」』）)\"']*|\.(?=\s)[”’」』）)\"']*")


def normalize(text: str) -> str:
    """One spelling for matching: half-width, simplified, lowercase, no spaces inside Chinese
    (an emoji, but a laughing one, counts as a space). A line break stays one (a run of spaces
    holding one becomes it): it ends a sentence, as it does for the learned stage
    (`split_sentences`), so 以前自杀过 / 现在好多了 / 今天去爬山了 typed on three lines is three
    sentences, not one. Written Cantonese reads as Mandarin (rules/cantonese.tsv)."""
    return _with_word_gaps(text).replace(WORD_GAP, "")


def _with_word_gaps(text: str) -> str:
    text = _RESPELL.sub(_respelled, unicodedata.normalize("NFKC", text))
    if _is_cantonese(text):
        text = _CANTONESE.sub(_in_mandarin, text)
    text = _EMOJI.sub(" ", _ZERO_WIDTH.sub("", text.lower()))
    text = _CJK_GAP.sub(_line_break_or_word_gap, text)
    # 我真的want to die: \b needs a break between Chinese and Latin letters
    text = _SCRIPT_SEAM.sub(r"\g<0> ", text)
    return _SPACES.sub(_line_break_or_space, text).strip()


def _line_break_or_word_gap(gap: re.Match[str]) -> str:
    """A line break stays one; a space with two Chinese characters on each side is a WORD_GAP;
    a space beside a single character is spaced-out writing (想 自杀, 我 想 死) and goes."""
    if "\n" in gap.group():
        return "\n"
    text, start, end = gap.string, gap.start(), gap.end()
    between_words = start >= 2 and CJK.match(text, start - 2) and CJK.match(text, end + 1)
    return WORD_GAP if between_words else ""


def _line_break_or_space(gap: re.Match[str]) -> str:
    return "\n" if "\n" in gap.group() else " "


def _respelled(found: re.Match[str]) -> str:
    return _SPELLING[found.group()]


def _in_mandarin(found: re.Match[str]) -> str:
    return _MANDARIN[found.group()]


def matching_text(text: str) -> str:
    """What the learned stage and the context cues read: `normalize` with 《title》 and a
    speaker's tag emptied (`_titles_and_tags_emptied`), and a space between two Chinese words
    as the comma it stands for (the rules read across it: `matching_text_and_word_gaps`)."""
    return _titles_and_tags_emptied(text).replace(WORD_GAP, ",")


def matching_text_and_word_gaps(text: str) -> tuple[str, list[int]]:
    """What the rules read: `normalize` with 《title》 and a speaker's tag emptied (a space
    between two Chinese words gone, so a space for emphasis does not cut a phrase), and the
    places where such a space stood, for their judgements (不想上学 | 想死: two clauses, not
    不想上学想死 as one)."""
    pieces = _titles_and_tags_emptied(text).split(WORD_GAP)
    places = list(itertools.accumulate(len(piece) for piece in pieces[:-1]))
    return "".join(pieces), places


# Kept for a few messages: the rules and the learned stage each ask for the same message's
# reading (matching_text_and_word_gaps, matching_text); on a 20 KB message the two readings
# were a fifth of the care layer's cost, one is a tenth.
@lru_cache(maxsize=64)
def _titles_and_tags_emptied(text: str) -> str:
    """`_with_word_gaps`, with 《title》 emptied (《自杀小队》 names a work, not a wish) and a
    speaker's tag that opens a sentence gone (来访者：我不想活了 is the client's own words).
    `normalize` keeps both: the reply guard and the context cues read it."""
    return _SPEAKER_TAG.sub(r"\g<before>", _TITLE.sub("《》", _with_word_gaps(text)))


def detect_language(text: str) -> str:
    """Return "zh" when Chinese characters hold their own against Latin words, else "en"."""
    cjk = len(CJK.findall(text))
    latin_words = len(LATIN_WORD.findall(text))
    return "en" if latin_words > cjk else "zh"


def split_sentences(text: str) -> list[str]:
    """Sentences with their end punctuation, in order; joined they give back `text`."""
    pieces, start = [], 0
    for boundary in SENTENCE_END.finditer(text):
        pieces.append(text[start : boundary.end()])
        start = boundary.end()
    if start < len(text):
        pieces.append(text[start:])
    return pieces
