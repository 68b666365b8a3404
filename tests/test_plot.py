"""`anxin plot`: loss curves redrawn from trainer_log.jsonl, as valid PNG files."""

from __future__ import annotations

import json

import pytest

from anxin.cli import main as cli_main
from anxin.plot import plot_loss, series, smooth

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def write_log(folder, entries, torn_tail: str = ""):
    folder.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(e) + "\n" for e in entries) + torn_tail
    (folder / "trainer_log.jsonl").write_text(text)


def training_log(steps: int = 30, eval_every: int = 10) -> list[dict]:
    entries = []
    for step in range(1, steps + 1):
        entries.append({"step": step, "loss": 3.0 / step**0.3 + (0.2 if step % 2 else 0.0)})
        if step % eval_every == 0:
            entries.append({"step": step, "eval_loss": 2.5 / step**0.2})
    return entries


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_smoothing_follows_the_trend_and_damps_noise():
    noisy = [2.0 + (0.5 if i % 2 else -0.5) for i in range(100)]
    smoothed = smooth(noisy)
    assert len(smoothed) == 100 and smoothed[0] == noisy[0]
    assert max(smoothed[50:]) - min(smoothed[50:]) < 0.5  # the zigzag is mostly gone
    assert smooth([]) == []
    assert smooth([1.0, 1.0, 1.0]) == pytest.approx([1.0, 1.0, 1.0])


def test_series_keeps_the_last_value_of_a_step_logged_twice():
    entries = [
        {"step": 1, "loss": 2.0},
        {"step": 2, "eval_loss": 1.5},
        {"step": 2, "eval_loss": 1.4},
    ]
    assert series(entries, "eval_loss") == ([2], [1.4])
    assert series(entries, "loss") == ([1], [2.0])


def test_plot_loss_draws_both_figures(tmp_path):
    write_log(tmp_path, training_log(), torn_tail='{"step": 31, "lo')
    written = plot_loss(tmp_path)
    assert [p.name for p in written] == ["training_loss.png", "training_eval_loss.png"]
    for path in written:
        width, height = png_size(path)
        assert width > 300 and height > 200


def test_without_evaluations_only_the_training_curve(tmp_path):
    write_log(tmp_path, [e for e in training_log() if "loss" in e])
    assert [p.name for p in plot_loss(tmp_path)] == ["training_loss.png"]
    assert not (tmp_path / "training_eval_loss.png").exists()


def test_cli_redraws_and_reports_missing_logs(tmp_path, capsys):
    write_log(tmp_path / "run", training_log())
    assert cli_main(["plot", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out.split()
    assert [p.rsplit("/", 1)[-1] for p in out] == ["training_loss.png", "training_eval_loss.png"]
    assert cli_main(["plot", str(tmp_path / "nothing")]) == 2
    assert "no training log" in capsys.readouterr().err
    write_log(tmp_path / "empty", [])
    assert cli_main(["plot", str(tmp_path / "empty")]) == 1


def preference_log(steps: int = 12) -> list[dict]:
    entries = []
    for step in range(1, steps + 1):
        entries.append(
            {
                "step": step,
                "loss": 0.69 - 0.02 * step,
                "rewards/chosen": 0.01 * step,
                "rewards/rejected": -0.02 * step,
                "rewards/margins": 0.03 * step,
                "rewards/accuracies": min(1.0, 0.4 + 0.05 * step),
            }
        )
        if step % 6 == 0:
            entries.append({"step": step, "eval_loss": 0.6, "eval_rewards/chosen": 0.05,
                            "eval_rewards/rejected": -0.1, "eval_rewards/margins": 0.15,
                            "eval_rewards/accuracies": 0.7})  # fmt: skip
    return entries


def test_preference_runs_get_a_rewards_figure_beside_the_loss(tmp_path, capsys):
    from anxin.plot import plot_rewards

    write_log(tmp_path / "dpo", preference_log())
    path = plot_rewards(tmp_path / "dpo")
    assert path.name == "training_rewards.png"
    width, height = png_size(path)
    assert width > height  # two panels side by side: rewards, and pairs ranked right
    assert cli_main(["plot", str(tmp_path / "dpo")]) == 0
    assert "training_rewards.png" in capsys.readouterr().out

    kto = [{k: v for k, v in e.items() if "accuracies" not in k} for e in preference_log()]
    write_log(tmp_path / "kto", kto)
    assert plot_rewards(tmp_path / "kto").is_file()  # KTO has rewards but no pairs to rank
    write_log(tmp_path / "sft", training_log())
    assert plot_rewards(tmp_path / "sft") is None
