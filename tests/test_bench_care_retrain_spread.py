"""bench/care_retrain_spread.py's own parts: scoring a frozen part with a given learned stage,
and the spread over draws."""

from __future__ import annotations

from anxin.safety import training
from anxin.safety.sets import Example
from bench.care_retrain_spread import scored, spread


class FixedModel:
    """A learned stage that answers the same P(crisis) for every message."""

    def __init__(self, probability: float):
        self.probability = probability

    def crisis_probability(self, evidence, row) -> float:
        return self.probability


def _part():
    examples = [
        Example(1, "我最近总是一个人发呆，没什么精神", "crisis", "suicidal_passive"),
        Example(2, "周末和朋友去爬山了", "non_crisis", "everyday"),
    ]
    return [
        (training.Sample(training.evidence_of(e), training.target_class(e), "part", str(i)), ())
        for i, e in enumerate(examples)
    ]


def test_the_detector_bars_decide_with_the_given_learned_stage():
    part = _part()
    assert scored(FixedModel(0.9), part) == {
        "recall": 1.0,
        "false_positive_rate": 1.0,
        "tp": 1,
        "fn": 0,
        "fp": 1,
        "tn": 0,
    }
    assert scored(FixedModel(0.0), part)["recall"] == 0.0


def test_the_spread_is_min_mean_max_over_draws():
    runs = [{"p": {"recall": r}} for r in (0.7, 0.8, 0.9)]
    assert spread(runs, "p", "recall") == {"min": 0.7, "mean": 0.8, "max": 0.9}
