"""A small trained classifier for the crisis phrasings the rules have never seen.

The rules in `detector.py` are exact and explainable, but each new way of saying "I want to
die" needs a new pattern. This model reads a message by its pieces instead:

- character 1-4-grams of the normalised text (Chinese, pinyin abbreviations, emoji, typos);
- word 1-2-grams of its Latin words (English);
- coarse word classes (a wish, death, a means, a farewell, a negation, someone else, ...) and
  which classes meet in one clause, so that 想噶了 and 想死 share what they have in common.

The pieces are hashed into a fixed table, and a multinomial logistic regression over them
gives the probability of each class: no crisis, or one of the detector's crisis categories.

It is trained on `anxin/resources/crisis_train.jsonl`: hand-written messages, about half
crisis and half hard negatives (idioms, negation, grief, reported speech, medication, ...),
none of them taken from `data/safety_dev.jsonl`, which stays an evaluation set. Training is
plain numpy, full-batch Adam from zeros: no randomness, so the same file gives the same model.
It takes several seconds, so the weights are shipped, with the SHA-256 of the file they came
from, in `anxin/resources/crisis_classifier.npz`; if that file is missing or was trained on
another version of the data, the model is trained in memory on first use instead.

    python -m anxin.safety.classifier --train     # after editing the training file
    python -m anxin.safety.classifier --cv        # 5-fold cross-validation on the file
    python -m anxin.safety.classifier "我想消失"  # score messages

The detector, not this module, decides what a probability means (see `detector.py`).
"""

from __future__ import annotations

import argparse
import bisect
import hashlib
import json
import re
import sys
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from anxin.atomic import atomic_path
from anxin.safety.rules import CRISIS_CATEGORIES, rulebook
from anxin.safety.text import matching_text

RESOURCES = Path(__file__).resolve().parent.parent / "resources"
TRAIN_FILE = RESOURCES / "crisis_train.jsonl"
WEIGHTS_FILE = RESOURCES / "crisis_classifier.npz"

# Class 0 is "no crisis"; the others are the detector's crisis categories.
CLASSES: tuple[str, ...] = ("none", *CRISIS_CATEGORIES)
# The training file names finer kinds of message, so a reader can see what it covers.
KIND_TO_CLASS = {
    "suicidal_active": "suicidal_ideation",
    "suicidal_passive": "suicidal_ideation",
    "farewell": "plan_means",
    "plan_means": "plan_means",
    "self_harm": "self_harm",
    "harm_others": "harm_others",
    "abuse_danger": "abuse_danger",
}


@dataclass(frozen=True)
class TrainingConfig:
    """Everything that shapes the weights besides the data; stored with them."""

    hash_bits: int = 18  # 262,144 buckets for ~50,000 distinct pieces: few collisions
    l2: float = 3e-6  # chosen by 5-fold cross-validation on the training file
    steps: int = 300  # Adam has converged by then (the loss matches L-BFGS's)
    learning_rate: float = 0.2
    feature_version: int = 1  # bump when `features` changes meaning


CONFIG = TrainingConfig()

# --- features -----------------------------------------------------------------------------------

_DIGITS = re.compile(r"\d")
_LATIN_WORDS = re.compile(r"[a-z][a-z']*")
_CLAUSE_BREAK = re.compile(r"[,.;:。!?，；：！？\n…~]")

# Coarse word classes (DEATH, WISH, MEANS, NEGATION, ...) from the shared lexicon
# (rules/lexicon.yaml, word_classes): a synonym the training file never used still lights up its
# class. They are features of the shipped weights: edit them only together with retraining.
_WORD_CLASS_PATTERNS = tuple(
    (name, re.compile(pattern)) for name, pattern in rulebook().word_classes.items()
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


def _pieces(normal: str) -> set[str]:
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


def features(normal: str, hash_bits: int = CONFIG.hash_bits) -> np.ndarray:
    """The sorted, unique hashed pieces of a message already passed through `matching_text`."""
    mask = (1 << hash_bits) - 1
    # crc32, not hash(): Python salts str hashes per process, and training must be repeatable
    buckets = (zlib.crc32(piece.encode("utf-8")) & mask for piece in _pieces(normal))
    return np.unique(np.fromiter(buckets, dtype=np.int64))


# --- the model ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prediction:
    probability: float  # that the message is a crisis: 1 - P(none)
    category: str  # the likeliest crisis category, whatever the probability


class CrisisClassifier:
    """Multinomial logistic regression over hashed pieces of a message."""

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

    def predict(self, text: str) -> Prediction:
        return self.predict_normal(matching_text(text))

    def predict_normal(self, normal: str) -> Prediction:
        """Score a message already passed through `text.matching_text`."""
        probabilities = self.probabilities(normal)
        category = CLASSES[1 + int(np.argmax(probabilities[1:]))]
        return Prediction(round(float(1.0 - probabilities[0]), 4), category)

    def probabilities(self, normal: str) -> np.ndarray:
        found = features(normal, self.config.hash_bits)
        # unit length per message: a long message does not outvote a short one
        scale = 1.0 / np.sqrt(max(len(found), 1))
        return _softmax(self._table[found].sum(axis=0) * scale + self.bias)

    def save(self, path: Path, source_digest: str) -> None:
        with atomic_path(path, suffix=".npz") as tmp, open(tmp, "wb") as out:
            tmp.chmod(0o644)  # package data: readable by everyone, like the files beside it
            np.savez_compressed(
                out,
                buckets=self.buckets.astype(np.int32),
                weights=self.weights.astype(np.float16),  # half the size; scores move < 0.01
                bias=self.bias,
                classes=np.array(CLASSES),
                source_sha256=np.array(source_digest),
                config=np.array(json.dumps(self.config.__dict__, sort_keys=True)),
            )

    @classmethod
    def load(cls, path: Path) -> tuple[CrisisClassifier, str]:
        """The classifier and the digest of the training file it came from."""
        with np.load(path, allow_pickle=False) as stored:
            config = TrainingConfig(**json.loads(str(stored["config"])))
            if tuple(stored["classes"]) != CLASSES:
                raise ValueError(f"{path}: classes: {tuple(stored['classes'])} != {CLASSES}")
            model = cls(stored["buckets"], stored["weights"], stored["bias"], config)
            return model, str(stored["source_sha256"])


def _softmax(scores: np.ndarray) -> np.ndarray:
    shifted = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


# --- training -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _SparseRows:
    """Messages as one flat sparse matrix over the buckets the data uses (`columns`)."""

    columns: np.ndarray  # bucket of each local column
    column_of: np.ndarray  # local column of each entry, row-major
    values: np.ndarray  # 1/sqrt(pieces in the message) for each entry
    row_starts: np.ndarray
    # the same entries ordered by column, for the gradient
    by_column: np.ndarray
    column_starts: np.ndarray

    @classmethod
    def of(cls, normals: Sequence[str], hash_bits: int) -> _SparseRows:
        per_row = [features(normal, hash_bits) for normal in normals]
        lengths = np.array([len(found) for found in per_row], dtype=np.int64)
        columns, column_of = np.unique(np.concatenate(per_row), return_inverse=True)
        values = np.repeat(1.0 / np.sqrt(np.maximum(lengths, 1)), lengths)
        by_column = np.argsort(column_of, kind="stable")
        column_starts = np.flatnonzero(np.r_[True, np.diff(column_of[by_column]) != 0])
        row_starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        return cls(columns, column_of, values, row_starts, by_column, column_starts)

    def times(self, weights: np.ndarray) -> np.ndarray:
        """X @ W, rows of X being messages (none is empty: every message has its end marks)."""
        return np.add.reduceat(weights[self.column_of] * self.values[:, None], self.row_starts)

    def transposed_times(self, row_values: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """X.T @ R, with `rows` the row index of each entry."""
        entries = row_values[rows[self.by_column]] * self.values[self.by_column, None]
        return np.add.reduceat(entries, self.column_starts)


def train(
    texts: Sequence[str], classes: Sequence[int], config: TrainingConfig | None = None
) -> CrisisClassifier:
    """Fit by full-batch Adam from zeros; the same data and config always give the same model."""
    config = config or CONFIG
    data = _SparseRows.of([matching_text(text) for text in texts], config.hash_bits)
    rows = np.repeat(np.arange(len(texts)), np.diff(np.r_[data.row_starts, len(data.column_of)]))
    targets = np.zeros((len(texts), len(CLASSES)))
    targets[np.arange(len(texts)), np.asarray(classes)] = 1.0
    weights = np.zeros((len(data.columns), len(CLASSES)))
    bias = np.zeros(len(CLASSES))
    adam = _Adam(config.learning_rate)
    for _ in range(config.steps):
        errors = (_softmax(data.times(weights) + bias) - targets) / len(texts)
        gradient_weights = data.transposed_times(errors, rows) + config.l2 * weights
        adam.step([weights, bias], [gradient_weights, errors.sum(axis=0)])
    return CrisisClassifier(data.columns, weights, bias, config)


class _Adam:
    def __init__(self, learning_rate: float, beta1: float = 0.9, beta2: float = 0.999):
        self.learning_rate, self.beta1, self.beta2 = learning_rate, beta1, beta2
        self.moments: list[tuple[np.ndarray, np.ndarray]] = []
        self.count = 0

    def step(self, params: list[np.ndarray], gradients: list[np.ndarray]) -> None:
        if not self.moments:
            self.moments = [(np.zeros_like(p), np.zeros_like(p)) for p in params]
        self.count += 1
        for param, gradient, (mean, square) in zip(params, gradients, self.moments, strict=True):
            mean += (1 - self.beta1) * (gradient - mean)
            square += (1 - self.beta2) * (gradient * gradient - square)
            mean_hat = mean / (1 - self.beta1**self.count)
            square_hat = square / (1 - self.beta2**self.count)
            param -= self.learning_rate * mean_hat / (np.sqrt(square_hat) + 1e-8)


# --- the training file --------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingExample:
    line: int
    text: str
    kind: str  # the file's category: suicidal_passive, idiom, grief, ...
    target: int  # index into CLASSES


def read_training_file(path: Path | None = None) -> list[TrainingExample]:
    """Read a training set (default: the shipped one); a bad line names FILE:LINE: field."""
    path = path or TRAIN_FILE
    examples = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if raw.strip():
            examples.append(_parse_line(path, number, raw))
    if not examples:
        raise ValueError(f"{path}: no examples")
    return examples


def _parse_line(path: Path, number: int, raw: str) -> TrainingExample:
    try:
        record = json.loads(raw)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}:{number}: (line): not valid JSON ({error.msg})") from None
    text, label, kind = record.get("text"), record.get("label"), record.get("category")
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{path}:{number}: text: missing or not a non-empty string")
    if not isinstance(kind, str) or not kind:
        raise ValueError(f"{path}:{number}: category: missing")
    if label == "crisis":
        if kind not in KIND_TO_CLASS:
            known = ", ".join(KIND_TO_CLASS)
            raise ValueError(f"{path}:{number}: category: {kind!r} is not one of {known}")
        return TrainingExample(number, text, kind, CLASSES.index(KIND_TO_CLASS[kind]))
    if label == "non_crisis":
        return TrainingExample(number, text, kind, 0)
    raise ValueError(f"{path}:{number}: label: {label!r} is not crisis or non_crisis")


def file_digest(path: Path | None = None) -> str:
    return hashlib.sha256((path or TRAIN_FILE).read_bytes()).hexdigest()


def train_on_file(
    path: Path | None = None, config: TrainingConfig | None = None
) -> CrisisClassifier:
    examples = read_training_file(path)
    return train([e.text for e in examples], [e.target for e in examples], config)


@lru_cache(maxsize=1)
def shipped_classifier() -> CrisisClassifier:
    """The shipped weights, or, when they are missing or stale, a model trained here, once."""
    digest = file_digest()
    if WEIGHTS_FILE.exists():
        model, source = CrisisClassifier.load(WEIGHTS_FILE)
        if source == digest and model.config == CONFIG:
            return model
    return train_on_file()


# --- cross-validation ---------------------------------------------------------------------------


def out_of_fold(examples: Sequence[TrainingExample], folds: int = 5) -> np.ndarray:
    """P(crisis) for each example, from a model trained without it (fold = position mod k)."""
    probabilities = np.zeros(len(examples))
    for fold in range(folds):
        kept = [e for i, e in enumerate(examples) if i % folds != fold]
        model = train([e.text for e in kept], [e.target for e in kept])
        for i in range(fold, len(examples), folds):
            probabilities[i] = model.predict(examples[i].text).probability
    return probabilities


def cross_validation_report(
    examples: Sequence[TrainingExample], probabilities: np.ndarray, threshold: float
) -> str:
    crisis = np.array([e.target != 0 for e in examples])
    positives, negatives = probabilities[crisis], probabilities[~crisis]
    # AUC: the chance a crisis message outscores a non-crisis one
    auc = (positives[:, None] > negatives[None, :]).mean()
    lines = [f"{len(examples)} examples, 5-fold out-of-fold AUC {auc:.3f}"]
    for cut in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9):
        lines.append(
            f"  p >= {cut:.1f}: recall {(positives >= cut).mean():.3f}  "
            f"FPR {(negatives >= cut).mean():.3f}"
        )
    lines.append(f"by kind at p >= {threshold}:")
    counts: Counter = Counter()
    flagged: Counter = Counter()
    for example, probability in zip(examples, probabilities, strict=True):
        key = ("crisis" if example.target else "non_crisis", example.kind)
        counts[key] += 1
        flagged[key] += probability >= threshold
    for (label, kind), n in sorted(counts.items()):
        rate = "recall" if label == "crisis" else "FPR"
        lines.append(f"  {label:<11} {kind:<18} {n:>5}  {rate} {flagged[label, kind] / n:.3f}")
    return "\n".join(lines)


# --- command line -------------------------------------------------------------------------------

EPILOG = """\
examples:
  python -m anxin.safety.classifier --train          # rewrite the shipped weights
  python -m anxin.safety.classifier --cv             # cross-validate on the training file
  python -m anxin.safety.classifier "想鼠" "笑鼠了"   # probability and likeliest category

The weights are trained on anxin/resources/crisis_train.jsonl and stored with its SHA-256 in
anxin/resources/crisis_classifier.npz; a test fails when the two drift apart.
"""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m anxin.safety.classifier",
        description="Train, cross-validate or try the crisis classifier.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("text", nargs="*", help="messages to score")
    parser.add_argument("--train", action="store_true", help="train and write the weights")
    parser.add_argument("--cv", action="store_true", help="5-fold cross-validation")
    args = parser.parse_args(argv)
    try:
        examples = read_training_file()
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.train:
        model = train([e.text for e in examples], [e.target for e in examples])
        model.save(WEIGHTS_FILE, file_digest())
        print(f"wrote {WEIGHTS_FILE} ({len(model.buckets)} pieces, {len(examples)} examples)")
    if args.cv:
        probabilities = out_of_fold(examples)
        crisis_at = rulebook().classifier.crisis_at  # the detector's threshold (classifier.yaml)
        print(cross_validation_report(examples, probabilities, crisis_at))
    if args.text:
        model = shipped_classifier()
        for text in args.text:
            prediction = model.predict(text)
            print(f"{prediction.probability:.3f}  {prediction.category}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
