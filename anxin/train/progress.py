"""A run's progress as people read it: the terminal line each log step prints, durations.

Kept free of torch and transformers: the board imports it to show the same figures.
"""

from __future__ import annotations


def format_line(entry: dict, eta: float | None) -> str:
    """`step 10/30  loss 2.1340  lr 4.9e-05  163 tok/s  1m10s elapsed  2m20s left`."""
    parts = [f"step {entry['step']}/{entry['total_steps']}"]
    if "loss" in entry:
        parts.append(f"loss {entry['loss']:.4f}")
    if "eval_loss" in entry:
        parts.append(f"eval_loss {entry['eval_loss']:.4f}")
    for key in ("rewards/accuracies", "eval_rewards/accuracies"):
        if key in entry:
            parts.append(f"{key.replace('rewards/accuracies', 'reward_acc')} {entry[key]:.2f}")
    if "lr" in entry:
        parts.append(f"lr {entry['lr']:.2e}")
    if "tokens_per_s" in entry:
        parts.append(f"{entry['tokens_per_s']:.0f} tok/s")
    parts.append(f"{duration(entry['elapsed_s'])} elapsed")
    if eta is not None and "loss" in entry:
        parts.append(f"{duration(eta)} left")
    return "anxin: " + "  ".join(parts)


def duration(seconds: float | None) -> str:
    """`42s`, `3m05s`, `2h10m`."""
    if seconds is None:
        return "?"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m"
