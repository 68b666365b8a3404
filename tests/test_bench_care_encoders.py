"""bench/care_encoders.py's own parts: the embedding head, the folds it scores, the averaging."""

from __future__ import annotations

import numpy as np

from anxin.safety.training import Sample, is_held
from bench.care_encoders import averaged, embed, out_of_fold_head


def _samples(n: int) -> list[Sample]:
    sources = ("real", "psysuicide", "written", "paraphrase")
    return [
        Sample(None, i % 2, sources[i % 4], f"{sources[i % 4]}:{i // 8}", 1.0) for i in range(n)
    ]


def test_the_head_learns_a_direction_and_scores_only_held_samples():
    samples = _samples(400)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 8))
    x[:, 3] += 3.0 * np.array([s.target for s in samples])  # the label shows along one axis
    scores = out_of_fold_head(x, samples)
    written = np.array([s.source == "written" for s in samples])
    assert np.isnan(scores[written]).all() and not np.isnan(scores[~written]).any()
    labels = np.array([s.target for s in samples])[~written]
    crises, others = scores[~written][labels == 1], scores[~written][labels == 0]
    ordered = (crises[:, None] > others[None, :]).mean()  # the ROC area
    assert ordered > 0.95 and crises.mean() > 0.5 > others.mean()


def test_written_samples_are_never_held():
    written = Sample(None, 1, "written", "written:1", 1.0)
    assert not any(is_held(written, fold) for fold in range(5))


def test_averaging_keeps_the_shipped_scores_at_share_zero_and_the_other_at_one():
    shipped, other = np.array([0.1, 0.5, 0.9]), np.array([0.8, 0.2, 0.5])
    assert np.allclose(averaged(shipped, other, 0.0), shipped, atol=1e-6)
    assert np.allclose(averaged(shipped, other, 1.0), other, atol=1e-6)


def test_embed_puts_each_vector_back_in_its_texts_place():
    texts = ["ccc", "a", "bb", "dddd"]
    vectors = embed(lambda batch: np.array([[len(t), 0.0] for t in batch]), texts, batch=2)
    assert vectors[:, 0].tolist() == [3, 1, 2, 4]
