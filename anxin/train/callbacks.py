"""Trainer callbacks: the run log, checkpoint completion, what the terminal shows, and memory.

Only the main process writes files or prints; the others train quietly.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from transformers import TrainerCallback

from anxin.train import checkpoints
from anxin.train.progress import format_line


def _wait_for_everyone() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


class CheckpointCompletion(TrainerCallback):
    """Mark checkpoint-N complete once every process has saved its part, then rotate.

    `extras(folder)` adds anxin's own files first (the chat template card), so any complete
    checkpoint can be chatted with as an adapter.
    """

    def __init__(self, keep: int | None, extras=None):
        self.keep = keep
        self.extras = extras

    def on_save(self, args, state, control, **kwargs):
        _wait_for_everyone()
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if folder.is_dir():
                if self.extras is not None:
                    self.extras(folder)
                checkpoints.mark_complete(folder, state.global_step)
            checkpoints.rotate(args.output_dir, self.keep, protect=state.best_model_checkpoint)
        return control


# What preference training (TRL) logs beside the loss, kept under TRL's (and LLaMA-Factory's)
# names; evaluations log the same with an eval_ prefix.
REWARD_KEYS = (
    "rewards/chosen",
    "rewards/rejected",
    "rewards/margins",
    "rewards/accuracies",
    "logps/chosen",
    "logps/rejected",
    "kl",
)


def log_entry(logs: dict, state, elapsed: float, tokens_per_s: float | None) -> dict | None:
    """One trainer_log.jsonl line from HF's log dict; None for the end-of-run summary."""
    if "train_loss" in logs:
        return None
    entry = {"step": state.global_step, "total_steps": state.max_steps}
    entry["epoch"] = round(float(logs.get("epoch", state.epoch or 0.0)), 4)
    for source, target in (("loss", "loss"), ("eval_loss", "eval_loss")):
        if source in logs:
            entry[target] = round(float(logs[source]), 6)
    for key in REWARD_KEYS:
        for name in (key, f"eval_{key}"):
            if name in logs:
                entry[name] = round(float(logs[name]), 6)
    if "learning_rate" in logs:
        entry["lr"] = float(logs["learning_rate"])
    if "grad_norm" in logs:
        entry["grad_norm"] = round(float(logs["grad_norm"]), 4)
    if tokens_per_s is not None and "loss" in logs:
        entry["tokens_per_s"] = round(tokens_per_s, 1)
    entry["elapsed_s"] = round(elapsed, 2)
    return entry


class ReturnFreedMemory(TrainerCallback):
    """Give memory the allocator has freed back to the system after each micro-batch, optimizer
    step and eval batch.

    Variable-length batches leave glibc's heap fragmented: freed activations stay resident and
    the process grows step after step (SmolLM2, CPU: 1.6 -> 3.4 GB over 10 steps, while the
    working set stays near 1.5 GB). Padding to LENGTH_MULTIPLE (anxin.train.data) keeps the
    peak within a step down; malloc_trim(0) hands the freed pages back between micro-batches,
    for a few milliseconds. A fixed 256 KiB mmap threshold would lower the peak further (1,506
    against 1,650-1,780 MiB on the bench recipe) but pays fresh page faults on every large
    tensor: 7-9 % slower (bench/results/train_memory.md), so it is not set.
    Does nothing where the C library is not glibc.
    """

    def __init__(self):
        import ctypes
        import ctypes.util

        try:
            self._trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
        except (OSError, AttributeError):
            self._trim = None

    def release(self) -> None:
        if self._trim is not None:
            self._trim(0)

    def on_substep_end(self, args, state, control, **kwargs):
        self.release()

    def on_step_end(self, args, state, control, **kwargs):
        self.release()

    def on_prediction_step(self, args, state, control, **kwargs):
        self.release()


class TrainerLog(TrainerCallback):
    """Append one JSON line per log event to OUTPUT_DIR/trainer_log.jsonl and show progress.

    Lines hold numbers only (step, epoch, loss, eval_loss, lr, tokens/s, elapsed, and the
    rewards of preference training), never text
    from the conversations. On a terminal a progress bar shows loss and ETA; elsewhere (a log
    file, CI) one short line per log event.
    """

    def __init__(self, output_dir: str | Path, elapsed_before: float = 0.0, show: bool = True):
        self.path = Path(output_dir) / checkpoints.TRAINER_LOG
        self.elapsed_before = elapsed_before  # time spent before a resume
        self.show = show
        self.bar = None
        self.postfix: dict[str, str] = {}
        self.started = time.time()
        self.last_time = self.started
        self.last_tokens = self.tokens_at_start = 0

    def _elapsed(self) -> float:
        return self.elapsed_before + time.time() - self.started

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = self.last_time = time.time()
        self.last_tokens = self.tokens_at_start = state.num_input_tokens_seen
        self.first_step = state.global_step
        if state.is_world_process_zero and self.show and sys.stderr.isatty():
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=state.max_steps, initial=state.global_step, unit="step", dynamic_ncols=True
            )

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        now = time.time()
        tokens_per_s = None
        if "loss" in logs and now > self.last_time:
            tokens_per_s = (state.num_input_tokens_seen - self.last_tokens) / (now - self.last_time)
        if "loss" in logs or "eval_loss" in logs:
            # The next interval starts now, so time spent evaluating does not count as training.
            self.last_time, self.last_tokens = now, state.num_input_tokens_seen
        entry = log_entry(logs, state, self._elapsed(), tokens_per_s)
        if entry is None:
            return
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")
        self._show(entry, state)

    def _show(self, entry: dict, state) -> None:
        if not self.show:
            return
        if self.bar is not None:
            # Keep the last training loss showing while an evaluation reports, and vice versa.
            self.postfix.update({k: f"{entry[k]:.4f}" for k in ("loss", "eval_loss") if k in entry})
            if "lr" in entry:
                self.postfix["lr"] = f"{entry['lr']:.2e}"
            self.bar.set_postfix(self.postfix, refresh=True)
            return
        print(format_line(entry, self.eta(state)), file=sys.stderr, flush=True)

    def eta(self, state) -> float | None:
        done = state.global_step - self.first_step
        if done <= 0:
            return None
        return (time.time() - self.started) / done * (state.max_steps - state.global_step)

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
