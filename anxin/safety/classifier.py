"""The care layer's learned stage: a logistic regression over a message, what the rules made of
it, and the conversation before it.

The rules (`detector.py`) are exact and explainable, but on real counselling text they miss
indirect and context-dependent risk and fire on everyday words used in other senses. This model
weighs, for each user message, three groups of hashed pieces:

- the message: character 1-4-grams of the normalised text, Latin words and word pairs, coarse
  word classes (a wish, death, a means, a farewell, a negation, someone else, ...) and which
  classes meet in one clause, so 想噶了 and 想死 share what they have in common;
- the rules' reading (`Evidence`): their level and categories, each rule that matched and how
  it was judged (negated, hyperbole, someone else, the past, ...), the warning signs, the
  context cues, and the levels the rules gave the last three user turns (`evidence_pieces`;
  left out when learning from a message the rules already call a crisis:
  `training.training_row` says why);
- the conversation: the word classes and character 2-3-grams of those earlier user turns, and
  of the assistant's turn just before, with whether it asked about safety; and, when one of
  those turns was a crisis by the rules, the message's own classes and 1-3-grams once more,
  marked, so the same words can weigh more after a crisis than alone.

A multinomial logistic regression over them gives the probability of each class: no crisis,
or one of the crisis categories. A message of several sentences is also read sentence by
sentence, in the same conversation, and its P(crisis) is the whole's averaged with the largest
of the whole's and its sentences' (a crisis said once in a long post would otherwise weigh
little); the detector turns P(crisis) into a level (`care.py`, thresholds in
rules/classifier.yaml). Training is plain numpy, full-batch Adam from zeros, so
the same data give the same weights; `training.py` builds the training sets from the written
and the real labelled data, cross-validates, and writes the weights with the SHA-256 of every
file they came from (`python -m anxin.safety.training --write`).
"""

from __future__ import annotations

import bisect
import json
import re
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from pathlib import Path

import numpy as np

from anxin.atomic import atomic_path
from anxin.safety.rules import CRISIS_CATEGORIES, rulebook
from anxin.safety.scan import Scanner
from anxin.safety.text import matching_text, split_sentences

RESOURCES = Path(__file__).resolve().parent.parent / "resources"
WEIGHTS_FILE = RESOURCES / "crisis_classifier.npz"

# A sentence shorter than this (嗯。好的！) says too little to be read alone.
MIN_SENTENCE_CHARS = 4
# Of a long message, the characters read sentence by sentence, and how many sentences at most:
# the readings together cost about what reading the whole does (one real dev message in 2,257
# is longer than 480 characters; 480 characters of four-character lines would be 120 readings).
SENTENCE_CHARS = 480
MAX_SENTENCES = 48
# A paste longer than this is read whole only: the rules' reading of it already takes most of
# the 100 ms a message may cost (real messages are far shorter: the longest real dev one, 771).
LONGEST_POOLED = 4000
# Class 0 is "no crisis"; the others are the detector's crisis categories.
CLASSES: tuple[str, ...] = ("none", *CRISIS_CATEGORIES)


@dataclass(frozen=True)
class TrainingConfig:
    """Everything that shapes the weights besides the data; stored with them. The values were
    chosen by grouped 5-fold cross-validation on the development data (training.py --cv)."""

    hash_bits: int = 18  # 262,144 buckets: few collisions among ~150,000 distinct pieces
    l2: float = 3e-6
    steps: int = 300  # full-batch Adam has converged by then
    learning_rate: float = 0.2
    # The rules' reading as features (unscaled, 0/1): its negations, idioms and speakers keep
    # hard negatives low. Out of fold, beside the rules, a model without it did about as well.
    evidence_weight: float = 1.0
    earlier_weight: float = 0.5  # the earlier user turns, against 1.0 for the message
    asked_weight: float = 0.5  # the assistant's turn just before
    context_ngrams: bool = True  # character 2-3-grams of the turns before, not only classes
    # The message's pieces again, marked, when one of the last three user turns was a crisis
    # by the rules (`_after_crisis_pieces`): a linear model cannot otherwise weigh 活着好累
    # differently after 我不想活了 than alone. Out of fold on dev at crisis_at 0.30 (round-1
    # real / rounds 2-3, rich in such later turns): recall 0.833 / 0.454 without it, 0.837 /
    # 0.515 with it, false-positive rates 0.037 / 0.045 and 0.038 / 0.042; PR-AUC of the
    # later rounds 0.509 and 0.543 (with another fold split and the first version of
    # `_pooled`, 0.550 and 0.588).
    after_crisis_weight: float = 1.0
    max_chars: int = 800  # of a message: its start and its end (a 20 KB paste stays under 100 ms)
    # how much each source's examples weigh in the loss, per example (training.py)
    real_weight: float = 1.0  # labelled real counselling messages (data/safety_real)
    # the later real rounds (2 and 3), chosen by the learned stage's own scores: down-weighted
    # so their many hard cases do not skew what an ordinary message looks like (round 2, out
    # of fold on dev at crisis_at 0.15, 0.3 against 0 and 1: real recall 0.770 against 0.748
    # and 0.762, PsySUICIDE 0.852 against 0.848 and 0.845, false-positive rates within 0.007;
    # round 3 at 0.3 against 0.1 and 1: real PR-AUC 0.848 against 0.849 and 0.847)
    scored_weight: float = 0.3
    psysuicide_weight: float = 1.0  # PsySUICIDE's development part
    written_weight: float = 1.0  # the written training file (anxin/resources)
    # rewordings of the dev messages (data/safety_real/paraphrases_dev.jsonl), this weight
    # shared by a message's paraphrases: out of fold on dev PR-AUC real 0.854 and PsySUICIDE
    # 0.950, as with 0.1, 0.3 or 1 for every paraphrase (0.855 / 0.948, 0.854 / 0.950, 0.853 /
    # 0.951), against 0.855 / 0.942 without them
    paraphrase_weight: float = 0.3
    feature_version: int = 3  # bump when `pieces` changes meaning


CONFIG = TrainingConfig()


@dataclass(frozen=True)
class Evidence:
    """What the learned stage reads about one user message (built by the detector)."""

    text: str  # the message as `text.matching_text` reads it
    level: str = "none"  # the rules' level for the message alone
    categories: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()  # rule names, with how a match was judged (zh.x:negated)
    context_level: str = "none"  # after the context cues (context.yaml)
    context_reasons: tuple[str, ...] = ()
    earlier: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (level, categories), oldest first
    earlier_text: str = ""  # the last few user turns, normalised
    asked: str | None = None  # the assistant's turn just before, normalised
    asked_about_safety: bool = False
    has_context: bool = False
    sentences: tuple[str, ...] = ()  # `sentences_of` the message: read alone too, when 2 or more
    # Not read by the model, for what cross-validation replays: whether the conversation told
    # of abuse (the concern floor, context.kept_watch), and whether the message is a plain no
    # to the assistant's safety question (context.DENIED: no crisis by the learned stage).
    abuse_told: bool = False
    denied: bool = False


# --- pieces -------------------------------------------------------------------------------------

_DIGITS = re.compile(r"\d")
_LATIN_WORDS = re.compile(r"[a-z][a-z']*")
_CLAUSE_BREAK = re.compile(r"[,.;:。!?，；：！？\n…~]")
_LEVELS = ("none", "concern", "crisis")

# Coarse word classes (DEATH, WISH, MEANS, NEGATION, ...) from the shared lexicon
# (rules/lexicon.yaml, word_classes): a synonym the training data never used still lights up
# its class. They are features of the shipped weights: edit them only together with retraining.
# Each is tried only where one of its words can begin (`Scanner`): the engine's own scan of the
# 23 classes was a sixth of a real message's cost.
_WORD_CLASS_PATTERNS = tuple(
    (name, Scanner(re.compile(pattern))) for name, pattern in rulebook().word_classes.items()
)


def _word_class_pieces(normal: str) -> set[str]:
    """Each class present; each ordered pair within a clause; each pair anywhere.

    "A>B" is in a clause when A's first place there comes before B's last, so each class's
    first and last place per clause is all it takes: the pieces of every pair of occurrences,
    in time linear in the message (pairing the occurrences took 25 s on 16 KB of text).
    """
    breaks = [found.start() for found in _CLAUSE_BREAK.finditer(normal)]
    found = sorted(
        (match.start(), name)
        for name, pattern in _WORD_CLASS_PATTERNS
        for match in pattern.finditer(normal)
    )
    clauses: dict[int, dict[str, list[tuple[int, str]]]] = {}
    for place in found:  # in order, so the first place a class is seen stays its first
        first_last = clauses.setdefault(bisect.bisect(breaks, place[0]), {})
        first_last.setdefault(place[1], [place, place])[1] = place
    present = sorted({name for _, name in found})
    pieces = {f"k:{name}" for name in present}
    pieces.update(f"k:{a}&{b}" for i, a in enumerate(present) for b in present[i + 1 :])
    for first_last in clauses.values():
        pieces.update(
            f"k:{a}>{b}"
            for a, (first, _) in first_last.items()
            for b, (_, last) in first_last.items()
            if a != b and first < last
        )
    return pieces


def _clipped(normal: str, limit: int) -> str:
    """A long message's start and end: what it opens with and what it comes to."""
    if len(normal) <= limit:
        return normal
    return normal[: limit * 3 // 4] + "\n" + normal[-(limit // 4) :]


def message_pieces(normal: str) -> set[str]:
    """The pieces of one normalised message."""
    text = _DIGITS.sub("0", normal)  # 30片 and 50片 say the same
    padded = f"\x02{text}\x03"  # mark the ends: 想死 alone is not 想死你了
    pieces = {
        "c" + padded[start : start + n]
        for n in (1, 2, 3, 4)
        for start in range(len(padded) - n + 1)
    }
    words = _LATIN_WORDS.findall(text)
    pieces.update("w" + word for word in words)
    pieces.update(f"b{first} {second}" for first, second in zip(words, words[1:], strict=False))
    return pieces | _word_class_pieces(text)


def _turn_pieces(prefix: str, normal: str, ngrams: bool) -> set[str]:
    pieces = {prefix + piece for piece in _word_class_pieces(normal)}
    if ngrams:
        text = _DIGITS.sub("0", normal)
        pieces.update(
            prefix + text[start : start + n] for n in (2, 3) for start in range(len(text) - n + 1)
        )
    return pieces


def _after_crisis_pieces(evidence: Evidence, config: TrainingConfig) -> set[str]:
    """After a user turn the rules read as a crisis (of the last three), the message's word
    classes and character 1-3-grams again, marked, and its level by the rules; otherwise none.
    The labelled later turns of such conversations are crises when they restate the risk in
    weaker words (活着真的很累，不知道还有什么意义) and aftercare when they do not (谢谢，我会试试)."""
    if not any(level == "crisis" for level, _ in evidence.earlier):
        return set()
    text = _DIGITS.sub("0", _clipped(evidence.text, config.max_chars))
    pieces = {f"after:{piece}" for piece in _word_class_pieces(text)}
    pieces.update(
        f"after:c{text[start : start + n]}" for n in (1, 2, 3) for start in range(len(text) - n + 1)
    )
    return pieces | {"after:crisis", f"after:level={evidence.level}"}


def evidence_pieces(evidence: Evidence) -> set[str]:
    """The rules' reading and the shape of the conversation, as pieces worth 1 each."""
    pieces = {f"R:level={evidence.level}", f"C:level={evidence.context_level}"}
    pieces.update(f"R:category={category}" for category in evidence.categories)
    for reason in evidence.reasons:
        pieces.add(f"R:{reason}")
        if ":" in reason:  # how a match was judged, whichever rule it was
            pieces.add(f"R:judged={reason.split(':', 1)[1]}")
    pieces.update(f"C:{reason}" for reason in evidence.context_reasons)
    if evidence.earlier:
        highest = max((level for level, _ in evidence.earlier), key=_LEVELS.index)
        pieces.add(f"P:level={highest}")
        pieces.update(
            f"P:category={category}"
            for level, categories in evidence.earlier
            if level != "none"
            for category in categories
        )
    pieces.add(f"P:turns={min(len(evidence.earlier), 3)}")
    if evidence.asked_about_safety:
        pieces.add("A:asked_about_safety")
    if not evidence.has_context:
        pieces.add("X:no_context")
    return pieces


def features(evidence: Evidence, config: TrainingConfig = CONFIG) -> tuple[np.ndarray, np.ndarray]:
    """Hashed buckets and their values; each text group scaled to unit length, so a long
    message does not outvote a short one, and the turns before weigh less than the message."""
    groups = [message_features(evidence.text, config), context_features(evidence, config)]
    return np.concatenate([b for b, _ in groups]), np.concatenate([v for _, v in groups])


def context_features(
    evidence: Evidence, config: TrainingConfig = CONFIG
) -> tuple[np.ndarray, np.ndarray]:
    """The groups of `features` besides the message's own: the turns before, the assistant's
    question, the rules' reading, the message after a crisis turn."""
    groups = []
    if config.earlier_weight and evidence.earlier_text:
        earlier = _clipped(evidence.earlier_text, config.max_chars)
        groups.append(
            _hashed(
                _turn_pieces("u", earlier, config.context_ngrams), config.earlier_weight, config
            )
        )
    if config.asked_weight and evidence.asked:
        asked = _clipped(evidence.asked, config.max_chars)
        groups.append(
            _hashed(_turn_pieces("a", asked, config.context_ngrams), config.asked_weight, config)
        )
    if config.evidence_weight:
        groups.append(_hashed(evidence_pieces(evidence), config.evidence_weight, config, False))
    after_crisis = after_crisis_features(evidence, config)
    if after_crisis is not None:
        groups.append(after_crisis)
    if not groups:
        return np.zeros(0, np.int64), np.zeros(0)
    return np.concatenate([b for b, _ in groups]), np.concatenate([v for _, v in groups])


def after_crisis_features(
    evidence: Evidence, config: TrainingConfig = CONFIG
) -> tuple[np.ndarray, np.ndarray] | None:
    """The group of `context_features` that `_after_crisis_pieces` gives, hashed; None if none."""
    pieces = _after_crisis_pieces(evidence, config) if config.after_crisis_weight else set()
    return _hashed(pieces, config.after_crisis_weight, config) if pieces else None


def message_features(text: str, config: TrainingConfig = CONFIG) -> tuple[np.ndarray, np.ndarray]:
    """The message's own group of `features`: its pieces, scaled to unit length."""
    return _hashed(message_pieces(_clipped(text, config.max_chars)), 1.0, config)


def sentences_of(text: str, limit: int = SENTENCE_CHARS) -> tuple[str, ...]:
    """The sentences of a raw message, each as `matching_text` reads it, split before
    normalising so a line break ends one (normalising joins lines); none shorter than
    MIN_SENTENCE_CHARS. Of a long message, as the whole is read (`_clipped`): its first three
    quarters of `limit` characters and its last quarter, cut at those lengths, and of those at
    most MAX_SENTENCES, three quarters from the start; of a paste over LONGEST_POOLED, none."""
    if len(text) > LONGEST_POOLED:
        return ()
    pieces = [piece for piece in split_sentences(text) if len(piece.strip()) >= MIN_SENTENCE_CHARS]
    if sum(map(len, pieces)) > limit:
        pieces = _budget(pieces, limit * 3 // 4) + _budget(pieces[::-1], limit // 4, end=True)[::-1]
    if len(pieces) > MAX_SENTENCES:  # each costs a reading: 3/4 from the start, as above
        start = MAX_SENTENCES * 3 // 4
        pieces = pieces[:start] + pieces[start - MAX_SENTENCES :]
    normal = (matching_text(piece) for piece in pieces)
    return tuple(sentence for sentence in normal if len(sentence) >= MIN_SENTENCE_CHARS)


def _budget(pieces: list[str], chars: int, end: bool = False) -> list[str]:
    """The first pieces that fit in `chars`, the last of them cut to fit (its end, if `end`)."""
    kept = []
    for piece in pieces:
        if chars <= 0:
            break
        kept.append(piece[-chars:] if end else piece[:chars])
        chars -= len(piece)
    return kept


def _hashed(
    pieces, weight: float, config: TrainingConfig, scaled: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    # crc32, not hash(): Python salts str hashes per process, and training must repeat
    mask = (1 << config.hash_bits) - 1
    found = np.unique(np.fromiter((zlib.crc32(p.encode()) & mask for p in pieces), np.int64))
    scale = weight / np.sqrt(max(len(found), 1)) if scaled else weight
    return found, np.full(len(found), scale)


# --- the model ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prediction:
    probability: float  # that the message is a crisis: 1 - P(none), sentences pooled (_pooled)
    category: str  # the likeliest crisis category, whatever the probability


@dataclass
class Provenance:
    """What the shipped weights came from: each training file's SHA-256, and the rules'."""

    sources: dict[str, str] = field(default_factory=dict)
    rules_sha256: str = ""
    examples: int = 0


class CrisisClassifier:
    """Multinomial logistic regression over hashed pieces."""

    def __init__(
        self,
        buckets: np.ndarray,
        weights: np.ndarray,
        bias: np.ndarray,
        config: TrainingConfig | None = None,
    ):
        self.config = config = config or CONFIG
        self.buckets = buckets.astype(np.int64)
        self.weights = weights.astype(np.float32)
        self.bias = bias.astype(np.float32)
        # one dense table (6 MB) makes a lookup a single indexing operation
        self._table = np.zeros((1 << config.hash_bits, len(CLASSES)), dtype=np.float32)
        self._table[self.buckets] = self.weights

    def predict(self, evidence: Evidence) -> Prediction:
        message = self._scores(*message_features(evidence.text, self.config))
        context = self._scores(*context_features(evidence, self.config))
        probabilities = _softmax(message + context + self.bias)
        category = CLASSES[1 + int(np.argmax(probabilities[1:]))]
        return Prediction(self._pooled(evidence, message, context), category)

    def crisis_probability(self, evidence: Evidence, row: tuple[np.ndarray, np.ndarray]) -> float:
        """`predict`'s P(crisis), given the message's `features` (cross-validation keeps them):
        only the message's own pieces are hashed again, to take them out of the row."""
        message = self._scores(*message_features(evidence.text, self.config))
        return self._pooled(evidence, message, self._scores(*row) - message)

    def _pooled(self, evidence: Evidence, message: np.ndarray, context: np.ndarray) -> float:
        """P(crisis) of the whole message, averaged with the largest of it and each of its
        sentences read alone in the same conversation (`message`, `context`: the class scores
        of the message's own pieces and of the rest), to 4 places.

        The message's pieces are scaled to unit length, so one crisis sentence in a long post
        weighs little (会止不住地想"杀了我吧让我死" among 200 characters about sleep and
        school); read alone it counts in full. Averaged rather than the largest alone: out of
        fold on dev the largest alone found no more crises at the same false-positive rate."""
        whole = _crisis(message + context + self.bias)
        if len(evidence.sentences) < 2:
            return round(whole, 4)
        # A sentence brings its own after-crisis pieces, as it brings its own n-grams (with the
        # whole message's, out of fold the later rounds found 0.520 of their crises, not 0.541).
        rest = context - self._after_crisis_scores(evidence)
        alone = (
            _crisis(
                self._scores(*message_features(sentence, self.config))
                + self._after_crisis_scores(replace(evidence, text=sentence))
                + rest
                + self.bias
            )
            for sentence in evidence.sentences
        )
        return round((whole + max(whole, *alone)) / 2, 4)

    def _after_crisis_scores(self, evidence: Evidence) -> np.ndarray:
        group = after_crisis_features(evidence, self.config)
        return np.zeros(len(CLASSES), np.float32) if group is None else self._scores(*group)

    def probabilities(self, buckets: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Every class's probability for one row of `features`, the whole message only (not
        pooled over its sentences, as `predict` is)."""
        return _softmax(self._scores(buckets, values) + self.bias)

    def _scores(self, buckets: np.ndarray, values: np.ndarray) -> np.ndarray:
        return (self._table[buckets] * values[:, None].astype(np.float32)).sum(axis=0)

    def save(self, path: Path, provenance: Provenance) -> None:
        with atomic_path(path, suffix=".npz") as tmp, open(tmp, "wb") as out:
            tmp.chmod(0o644)  # package data: readable by everyone, like the files beside it
            np.savez_compressed(
                out,
                buckets=self.buckets.astype(np.int32),
                weights=self.weights.astype(np.float16),  # half the size; scores move < 0.01
                bias=self.bias,
                classes=np.array(CLASSES),
                provenance=np.array(json.dumps(asdict(provenance), sort_keys=True)),
                config=np.array(json.dumps(asdict(self.config), sort_keys=True)),
            )

    @classmethod
    def load(cls, path: Path) -> tuple[CrisisClassifier, Provenance]:
        with np.load(path, allow_pickle=False) as stored:
            config = TrainingConfig(**json.loads(str(stored["config"])))
            if tuple(stored["classes"]) != CLASSES:
                raise ValueError(f"{path}: classes: {tuple(stored['classes'])} != {CLASSES}")
            model = cls(stored["buckets"], stored["weights"], stored["bias"], config)
            return model, Provenance(**json.loads(str(stored["provenance"])))


def _crisis(scores: np.ndarray) -> float:
    """1 - P(none) from a message's class scores."""
    return float(1.0 - _softmax(scores)[0])


def _softmax(scores: np.ndarray) -> np.ndarray:
    shifted = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


@lru_cache(maxsize=1)
def shipped_classifier() -> CrisisClassifier | None:
    """The shipped weights; None when they are missing or unreadable, and the care layer then
    decides by its rules alone (and says so in its reasons: `learned:unavailable`)."""
    try:
        model, _ = CrisisClassifier.load(WEIGHTS_FILE)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return model if model.config.feature_version == CONFIG.feature_version else None


# --- training -----------------------------------------------------------------------------------


def train(
    rows: Sequence[tuple[np.ndarray, np.ndarray]],
    classes: Sequence[int],
    sample_weights: Sequence[float] | None = None,
    config: TrainingConfig | None = None,
) -> CrisisClassifier:
    """Fit by full-batch Adam from zeros; the same data and config always give the same model.

    The messages are one sparse matrix over the buckets the data use, multiplied by torch's
    CSR kernels (numpy's gather-and-reduce took 0.8 s a step for 6,500 messages, this 0.05 s);
    one thread, float64, so every sum is taken in the same order on every run.
    """
    import torch  # training only: the care layer itself runs on numpy

    config = config or CONFIG
    columns, matrix, transposed = _sparse_rows(rows, torch)
    targets = torch.zeros(len(rows), len(CLASSES), dtype=torch.float64)
    targets[torch.arange(len(rows)), torch.as_tensor(classes)] = 1.0
    share = torch.ones(len(rows), dtype=torch.float64)
    if sample_weights is not None:
        share = torch.as_tensor(sample_weights, dtype=torch.float64)
    share = (share / share.sum()).unsqueeze(1)
    weights = torch.zeros(len(columns), len(CLASSES), dtype=torch.float64)
    bias = torch.zeros(len(CLASSES), dtype=torch.float64)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        adam = torch.optim.Adam([weights, bias], lr=config.learning_rate, foreach=False)
        for _ in range(config.steps):
            # The gradient by hand: the sparse product's transpose is kept ready, and the L2
            # term is part of the gradient (plain Adam, not AdamW's decoupled decay).
            errors = (torch.softmax(matrix @ weights + bias, dim=1) - targets) * share
            weights.grad = transposed @ errors + config.l2 * weights
            bias.grad = errors.sum(dim=0)
            adam.step()
    finally:
        torch.set_num_threads(threads)
    return CrisisClassifier(columns, weights.numpy(), bias.numpy(), config)


def _sparse_rows(rows: Sequence[tuple[np.ndarray, np.ndarray]], torch):
    """The buckets the rows use, and the rows as a CSR matrix over them, and its transpose."""
    import warnings

    lengths = np.array([len(buckets) for buckets, _ in rows], dtype=np.int64)
    columns, column_of = np.unique(
        np.concatenate([buckets for buckets, _ in rows]), return_inverse=True
    )
    values = torch.as_tensor(np.concatenate([v for _, v in rows]), dtype=torch.float64)
    row_starts = torch.as_tensor(np.r_[0, np.cumsum(lengths)])
    shape = (len(rows), len(columns))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
        matrix = torch.sparse_csr_tensor(row_starts, torch.as_tensor(column_of), values, shape)
        transposed = matrix.to_sparse_coo().t().coalesce().to_sparse_csr()
    return columns, matrix, transposed
