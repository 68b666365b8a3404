"""Loss curves of a training run, drawn from its trainer_log.jsonl.

`training_loss.png` shows the raw training loss and a smoothed line over it;
`training_eval_loss.png` shows the validation loss at each evaluation. Same figures as
LLaMA-Factory's `plot_loss`, so runs of the two can be compared by eye. Preference training
(stage dpo, kto) adds `training_rewards.png`: the rewards of chosen and rejected answers and
their margin, and the share of pairs ranked right, for training and validation.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

TRAINER_LOG = "trainer_log.jsonl"
FIGURES = {"loss": "training_loss.png", "eval_loss": "training_eval_loss.png"}
REWARDS_FIGURE = "training_rewards.png"
REWARD_LINES = {
    "rewards/chosen": "#2ca02c",
    "rewards/rejected": "#d62728",
    "rewards/margins": "#1f77b4",
}


def read_log(output_dir: str | Path) -> list[dict]:
    """The entries of OUTPUT_DIR/trainer_log.jsonl; a torn last line is skipped."""
    path = Path(output_dir) / TRAINER_LOG
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no training log (is this a training output_dir?)")
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return entries


def smooth(values: list[float]) -> list[float]:
    """Exponential moving average whose weight grows with the number of points (as in
    LLaMA-Factory), so short runs stay close to the raw curve and long ones read clearly."""
    if not values:
        return []
    weight = 1.8 * (1 / (1 + math.exp(-0.05 * len(values))) - 0.5)
    smoothed, last = [], values[0]
    for value in values:
        last = last * weight + (1 - weight) * value
        smoothed.append(last)
    return smoothed


def series(entries: list[dict], key: str) -> tuple[list[int], list[float]]:
    """(steps, values) for one key; a step logged twice keeps its last value."""
    by_step = {e["step"]: e[key] for e in entries if key in e and e[key] is not None}
    steps = sorted(by_step)
    return steps, [by_step[s] for s in steps]


def plot_curve(steps: list[int], values: list[float], key: str, title: str, target: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from anxin.atomic import atomic_path

    figure, axes = plt.subplots(figsize=(7, 4.5), dpi=100)
    axes.plot(steps, values, color="#1f77b4", alpha=0.4 if key == "loss" else 1.0, label="original")
    if key == "loss":
        axes.plot(steps, smooth(values), color="#1f77b4", label="smoothed")
    else:
        axes.scatter(steps, values, color="#1f77b4", s=12)
    axes.set_title(title)
    axes.set_xlabel("step")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_ylabel(key)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    with atomic_path(target, suffix=".png") as tmp:
        figure.savefig(tmp, format="png")
    plt.close(figure)
    return target


DEFAULT_KEYS = ("loss", "eval_loss")


def plot_loss(output_dir: str | Path, keys: tuple[str, ...] = DEFAULT_KEYS) -> list[Path]:
    """Draw one PNG per key that the log has values for; return the files written."""
    output_dir = Path(output_dir)
    entries = read_log(output_dir)
    written = []
    for key in keys:
        steps, values = series(entries, key)
        if not steps:
            continue
        name = FIGURES.get(key, f"training_{key}.png")
        title = f"training {key} of {output_dir.name}"
        written.append(plot_curve(steps, values, key, title, output_dir / name))
    return written


def plot_rewards(output_dir: str | Path) -> Path | None:
    """training_rewards.png beside the loss: rewards and margin (left), the share of pairs
    whose chosen answer out-scores the rejected one (right); None without rewards in the log."""
    output_dir = Path(output_dir)
    entries = read_log(output_dir)
    if not any("rewards/chosen" in e or "eval_rewards/chosen" in e for e in entries):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from anxin.atomic import atomic_path

    figure, (rewards, accuracy) = plt.subplots(1, 2, figsize=(12, 4.5), dpi=100)
    for key, color in REWARD_LINES.items():
        label = key.split("/")[1]
        _draw(rewards, entries, key, color, label, smoothed=True)
        _draw(rewards, entries, f"eval_{key}", color, f"eval {label}", smoothed=False)
    rewards.axhline(0, color="#888888", linewidth=0.8)
    rewards.set_title(f"rewards of {output_dir.name}")
    rewards.set_ylabel("reward (β × log-ratio to the reference)")
    _draw(accuracy, entries, "rewards/accuracies", "#1f77b4", "train", smoothed=True)
    _draw(accuracy, entries, "eval_rewards/accuracies", "#ff7f0e", "eval", smoothed=False)
    accuracy.set_ylim(-0.02, 1.02)
    accuracy.set_title("pairs ranked right (reward accuracy)")
    if not accuracy.lines:  # KTO's answers come unpaired: nothing to rank
        accuracy.text(0.5, 0.5, "no pairs to rank (KTO)", ha="center", transform=accuracy.transAxes)
    for axes in (rewards, accuracy):
        axes.set_xlabel("step")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(alpha=0.3)
        if axes.lines:
            axes.legend(fontsize=8)
    figure.tight_layout()
    target = output_dir / REWARDS_FIGURE
    with atomic_path(target, suffix=".png") as tmp:
        figure.savefig(tmp, format="png")
    plt.close(figure)
    return target


def _draw(axes, entries, key: str, color: str, label: str, smoothed: bool) -> None:
    steps, values = series(entries, key)
    if not steps:
        return
    if smoothed:  # training values are per logging step: noisy, so smoothed over the raw line
        axes.plot(steps, values, color=color, alpha=0.3)
        axes.plot(steps, smooth(values), color=color, label=label)
    else:
        axes.plot(steps, values, color=color, linestyle="--", marker="o", markersize=3, label=label)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Redraw the loss curves of a training run from OUTPUT_DIR/trainer_log.jsonl: "
        "training_loss.png (raw and smoothed) and training_eval_loss.png, and for "
        "preference training (dpo, kto) training_rewards.png."
    )
    parser.epilog = "example:\n  anxin plot saves/smollm2-135m/lora/sft"
    parser.add_argument("output_dir", help="the run's output_dir (holds trainer_log.jsonl)")
    parser.add_argument(
        "--keys",
        default="loss,eval_loss",
        help="comma-separated log keys to draw (default: loss,eval_loss)",
    )


def main(args: argparse.Namespace) -> int:
    keys = tuple(k.strip() for k in args.keys.split(",") if k.strip())
    try:
        written = plot_loss(args.output_dir, keys)
        rewards = plot_rewards(args.output_dir) if keys == DEFAULT_KEYS else None
        written += [rewards] if rewards else []
    except FileNotFoundError as error:
        print(f"anxin plot: error: {error}", file=sys.stderr)
        return 2
    if not written:
        print(
            f"anxin plot: nothing to draw: the log has no {' or '.join(keys)} yet", file=sys.stderr
        )
        return 1
    for path in written:
        print(path)
    return 0
