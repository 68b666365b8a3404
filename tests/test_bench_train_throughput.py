"""bench/train_throughput.py's reading of a run: the training-phase peak from its memory trace."""

from __future__ import annotations

from bench.train_throughput import training_peak


def test_training_peak_stops_where_the_final_evaluation_begins(tmp_path):
    trace = tmp_path / "run.rss.csv"
    # 100 s of training near 1,700 MiB, then a 30 s evaluation that holds its logits.
    samples = [(t, 1700 + t % 7) for t in range(0, 100, 2)] + [(t, 2900) for t in range(101, 130)]
    trace.write_text("seconds,tree_rss_mib\n" + "".join(f"{t},{r}\n" for t, r in samples))
    assert training_peak(trace, wall_s=130.0, eval_s=30.0) == 1706
    assert training_peak(trace, wall_s=130.0, eval_s=0.0) == 2900  # no evaluation: the whole run


def test_training_peak_needs_a_trace_and_both_times(tmp_path):
    assert training_peak(tmp_path / "missing.csv", 10.0, 1.0) is None
    trace = tmp_path / "run.rss.csv"
    trace.write_text("seconds,tree_rss_mib\n1.0,500\n")
    assert training_peak(trace, None, 1.0) is None and training_peak(trace, 10.0, None) is None
