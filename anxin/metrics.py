"""Scores for generated replies against reference replies: pure functions, no model needed.

BLEU-4 and ROUGE are computed exactly as LLaMA-Factory computes them (`ComputeSimilarity` and
`scripts/eval_bleu_rouge.py`), so numbers from the two tools can be put side by side:

- BLEU-4: nltk `sentence_bleu` on *characters*, smoothed with `SmoothingFunction().method3`;
- ROUGE-1/2/L: rouge-chinese F1 on *jieba words*;

each per reply, times 100, then averaged over replies. Distinct-n (Li et al., 2016) pools the
n-grams of all replies (jieba words, never across two replies). The "problem" checks (empty,
looping, wrong language) are per reply and reported as shares.
"""

from __future__ import annotations

import math
import re
import unicodedata
import warnings
from collections.abc import Sequence
from functools import cache

SIMILARITY_KEYS = ("bleu-4", "rouge-1", "rouge-2", "rouge-l")

# A span of 4..100 characters repeated back to back at least three times ("我明白。我明白。我明白。")
# is a decoding loop, not a style: natural replies almost never do it.
_LOOP = re.compile(r"(.{4,100}?)\1{2,}", re.DOTALL)
_SPACES = re.compile(r"\s+")


@cache
def _jieba():
    import logging

    import jieba

    jieba.setLogLevel(logging.WARNING)  # its dictionary-loading chatter is not ours to show
    return jieba


def words(text: str) -> list[str]:
    """jieba's segmentation without whitespace tokens: Chinese words, English words, marks."""
    return [token for token in _jieba().lcut(text) if token.strip()]


def bleu4(prediction: str, reference: str) -> float:
    """Character-level smoothed BLEU-4 of one reply, 0..100 (LLaMA-Factory's bleu-4)."""
    if not prediction or not reference:
        return 0.0
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nltk warns about zero n-gram counts on short replies
        score = sentence_bleu(
            [list(reference)], list(prediction), smoothing_function=SmoothingFunction().method3
        )
    return float(score) * 100


def rouge(prediction: str, reference: str) -> dict[str, float]:
    """ROUGE-1/2/L F1 of one reply on jieba words, 0..100 (LLaMA-Factory's rouge-*)."""
    hypothesis = " ".join(_jieba().cut(prediction))
    target = " ".join(_jieba().cut(reference))
    if not hypothesis.split() or not target.split():
        return {"rouge-1": 0.0, "rouge-2": 0.0, "rouge-l": 0.0}
    from rouge_chinese import Rouge

    scores = Rouge().get_scores(hypothesis, target)[0]
    return {key: value["f"] * 100 for key, value in scores.items()}


def similarity(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Mean BLEU-4 and ROUGE-1/2/L over pairs of replies (0..100)."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    totals = dict.fromkeys(SIMILARITY_KEYS, 0.0)
    for prediction, reference in zip(predictions, references):
        totals["bleu-4"] += bleu4(prediction, reference)
        for key, value in rouge(prediction, reference).items():
            totals[key] += value
    count = max(len(predictions), 1)
    return {key: total / count for key, total in totals.items()}


def ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def distinct(texts: Sequence[str], n: int) -> float:
    """Distinct-n: unique n-grams / all n-grams over every reply (0..1); 0 when there are none."""
    grams = [gram for text in texts for gram in ngrams(words(text), n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def is_empty(text: str) -> bool:
    return not text.strip()


def is_repetitive(text: str) -> bool:
    """True when the reply contains a loop: one span repeated three or more times in a row."""
    # Spaces are dropped so that "I see. I see. I see." loops like "我懂。我懂。我懂。" does.
    return bool(_LOOP.search(_SPACES.sub("", text)))


def _script(char: str) -> str | None:
    if not char.isalpha():
        return None
    if "\u3400" <= char <= "\u9fff" or "\uf900" <= char <= "\ufaff" or "\u3040" <= char <= "\u30ff":
        return "cjk"  # Han (and kana, which a Chinese model drifting to Japanese also writes)
    if unicodedata.name(char, "").startswith("LATIN"):
        return "latin"
    return "other"


def dominant_script(text: str) -> str | None:
    """cjk, latin or other: the script most of the text's letters are in; None without letters."""
    counts: dict[str, int] = {}
    for char in text:
        script = _script(char)
        if script:
            counts[script] = counts.get(script, 0) + 1
    return max(counts, key=counts.__getitem__) if counts else None


def is_wrong_language(prediction: str, reference: str) -> bool:
    """The reply is mostly in another script than the reference (Chinese asked, English given).

    A reply or reference without letters (empty, only punctuation) is never called wrong.
    """
    reply, expected = dominant_script(prediction), dominant_script(reference)
    return reply is not None and expected is not None and reply != expected


def share(flags: Sequence[bool]) -> float:
    """The fraction of True values (0 for no values)."""
    return sum(flags) / len(flags) if flags else 0.0


def reply_quality(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Diversity, length and the shares of empty, looping and wrong-language replies."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    lengths = [len(text.strip()) for text in predictions]
    return {
        "distinct-1": distinct(predictions, 1),
        "distinct-2": distinct(predictions, 2),
        "reply_chars": sum(lengths) / len(lengths) if lengths else 0.0,
        "reference_chars": (
            sum(len(text.strip()) for text in references) / len(references) if references else 0.0
        ),
        "empty": share([is_empty(text) for text in predictions]),
        "repetitive": share([is_repetitive(text) for text in predictions]),
        "wrong_language": share([is_wrong_language(p, r) for p, r in zip(predictions, references)]),
    }


def perplexity(loss: float) -> float:
    """exp(mean token loss); capped so a diverged model gives a huge number, not an overflow."""
    return math.exp(min(loss, 700.0))
