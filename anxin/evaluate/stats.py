"""Means with intervals for judged scores: a seeded percentile bootstrap over the judged items.

A judged evaluation has tens to hundreds of items, far too few for a normal approximation to
be trusted on bounded 0–3 scores or on win shares near 0 or 1; the percentile bootstrap needs
no such assumption. The seed is fixed so one metrics.json always gives the same intervals.
"""

from __future__ import annotations

from collections.abc import Sequence

RESAMPLES = 2000
LEVEL = 0.95


def bootstrap_interval(
    values: Sequence[float], resamples: int = RESAMPLES, seed: int = 0, level: float = LEVEL
) -> tuple[float, float] | None:
    """The `level` percentile-bootstrap interval of the mean of `values`; None when empty."""
    import numpy as np

    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return None
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(resamples, data.size))].mean(axis=1)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)


def mean_with_interval(values: Sequence[float], seed: int = 0) -> dict:
    """{"mean", "low", "high", "n"}; the numbers are None when there is nothing to average."""
    interval = bootstrap_interval(values, seed=seed)
    if interval is None:
        return {"mean": None, "low": None, "high": None, "n": 0}
    return {
        "mean": sum(values) / len(values),
        "low": interval[0],
        "high": interval[1],
        "n": len(values),
    }


def outcome_shares(outcomes: Sequence[int], seed: int = 0) -> dict:
    """Win (+1), tie (0) and loss (−1) shares, each with its bootstrap interval and count."""
    shares = {}
    for name, value in (("win", 1), ("tie", 0), ("loss", -1)):
        hits = [1.0 if outcome == value else 0.0 for outcome in outcomes]
        shares[name] = {**mean_with_interval(hits, seed), "count": int(sum(hits))}
    return shares


def agreement(first: Sequence[dict], second: Sequence[dict], keys: Sequence[str]) -> dict:
    """How often two judgements of the same items agree: per key, the share of identical
    scores and the mean absolute difference; `all` is the share identical on every key."""
    pairs = list(zip(first, second, strict=True))
    per_key = {}
    for key in keys:
        diffs = [abs(a[key] - b[key]) for a, b in pairs]
        per_key[key] = {
            "exact": sum(d == 0 for d in diffs) / len(diffs) if diffs else None,
            "mean_abs_diff": sum(diffs) / len(diffs) if diffs else None,
        }
    identical = [all(a[k] == b[k] for k in keys) for a, b in pairs]
    return {
        "items": len(pairs),
        "all": sum(identical) / len(identical) if identical else None,
        "dimensions": per_key,
    }
