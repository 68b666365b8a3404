"""What bench/gpu_check.py measures with, kept apart from the flow so each piece can be tested.

training_flops(...)        model FLOPs of a LoRA run, the output head only where trained
matmul_peak(device)        the matmul ceiling of this device, measured now
copy_bandwidth(device)     bytes a device-to-device copy moves per second (GPU only)
Timeline                   a TrainerCallback that timestamps steps, evaluation and saves
summarise_timeline(...)    step times, steady tokens/s, evaluation and checkpoint seconds
ProfileStep                a TrainerCallback that profiles one optimizer step
summarise_profile(...)     where that step's time went: matmuls, attention, the rest
TokenClock                 a generate() streamer that timestamps every new token
"""

from __future__ import annotations

import statistics
import time

from transformers import TrainerCallback

from bench.common import lora_training_flops


def training_flops(shape: dict, lengths: list[int], trained_tokens: int) -> float:
    """Model FLOPs of LoRA training on dialogues of these lengths.

    bench.common counts the output head at every position; anxin computes it only where an
    answer token is predicted (`logits_to_keep`), which are as many as the trained tokens, so
    the head's 4 FLOP per parameter are taken back for every other position.
    """
    head = shape["vocab_size"] * shape["hidden_size"]
    skipped = sum(lengths) - trained_tokens
    return lora_training_flops(shape, lengths) - 4 * head * skipped


def utilisation(flops: float, seconds: float, peak_flops_per_s: float | None) -> float | None:
    """Achieved over peak FLOP/s (MFU), None when either side is unknown."""
    if not peak_flops_per_s or seconds <= 0:
        return None
    return flops / seconds / peak_flops_per_s


def synchronize() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


# --- the device's ceilings --------------------------------------------------------------------


def matmul_peak(device: str, size: int | None = None, repeats: int = 10) -> dict:
    """Best TFLOP/s of a square matmul in the dtype training computes in: the ceiling MFU is
    measured against. bf16 on a GPU and on CPUs with native bf16, float32 on other CPUs (there
    anxin trains in float32 and bf16 is emulated)."""
    import torch

    from anxin.machine import cpu_has_bf16

    cuda = device.startswith("cuda")
    dtype = torch.bfloat16 if cuda or cpu_has_bf16() else torch.float32
    size = size or (8192 if cuda else 512)
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(3):  # kernel selection, clocks up
        a @ b
    best = 0.0
    for _ in range(repeats):
        synchronize()
        start = time.perf_counter()
        a @ b
        synchronize()
        best = max(best, 2 * size**3 / (time.perf_counter() - start))
    dtype_name = str(dtype).removeprefix("torch.")
    return {
        "flops_per_s": best,
        "tflops": float(f"{best / 1e12:.4g}"),
        "dtype": dtype_name,
        "size": size,
    }


def copy_bandwidth(device: str, gib: float = 2.0, repeats: int = 5) -> float:
    """GB/s moved by a device-to-device copy, bytes read plus bytes written (best of a few)."""
    import torch

    source = torch.empty(int(gib * 2**30), dtype=torch.uint8, device=device)
    target = torch.empty_like(source)
    target.copy_(source)
    best = 0.0
    for _ in range(repeats):
        synchronize()
        start = time.perf_counter()
        target.copy_(source)
        synchronize()
        best = max(best, 2 * source.numel() / (time.perf_counter() - start))
    return round(best / 1e9, 1)


# --- training timeline ------------------------------------------------------------------------


class Timeline(TrainerCallback):
    """(event, step, seconds, tokens seen) at each trainer event; the GPU is synchronised at
    step ends so a step's time is its work, not the time to queue it."""

    def __init__(self):
        self.events: list[tuple[str, int, float, int]] = []

    def _mark(self, event: str, state) -> None:
        self.events.append(
            (event, state.global_step, time.perf_counter(), state.num_input_tokens_seen)
        )

    def on_train_begin(self, args, state, control, **kwargs):
        synchronize()
        self._mark("train_begin", state)

    def on_step_end(self, args, state, control, **kwargs):
        synchronize()
        self._mark("step_end", state)

    def on_log(self, args, state, control, logs=None, **kwargs):
        self._mark("eval_log" if logs and "eval_loss" in logs else "log", state)

    def on_evaluate(self, args, state, control, **kwargs):
        self._mark("evaluate", state)

    def on_save(self, args, state, control, **kwargs):
        self._mark("save", state)

    def on_train_end(self, args, state, control, **kwargs):
        self._mark("train_end", state)


def summarise_timeline(events: list[tuple[str, int, float, int]], skip_steps=()) -> dict:
    """Step times, the steady part (the first step and `skip_steps` left out: warm-up and the
    profiled step), evaluation and checkpoint-save seconds.

    HF's Trainer logs, then evaluates, then saves after a step's end, so an evaluation lasts
    from the event before it to `evaluate` (its own log line is part of it), and a save from
    the event before it to `save`.
    """
    steps, previous = [], None
    for event, step, at, tokens in events:
        if event in ("train_begin", "step_end"):
            if previous is not None and event == "step_end":
                steps.append({"step": step, "s": at - previous[0], "tokens": tokens - previous[1]})
            previous = (at, tokens)
    steady = [s for s in steps[1:] if s["step"] not in skip_steps]
    steady_s = sum(s["s"] for s in steady)
    return {
        "step_s": [round(s["s"], 4) for s in steps],
        "steady_steps": len(steady),
        "steady_s": round(steady_s, 4),
        "steady_tokens": sum(s["tokens"] for s in steady),
        "steady_step_s_median": round(statistics.median(s["s"] for s in steady), 4)
        if steady
        else None,
        "eval_s": _span_before(events, "evaluate", skip=("eval_log",)),
        "checkpoint_save_s": _span_before(events, "save"),
    }


def _span_before(events, name: str, skip=()) -> float | None:
    """Seconds from the event before the last `name` (passing over `skip` events) to it."""
    positions = [i for i, e in enumerate(events) if e[0] == name]
    if not positions:
        return None
    i = j = positions[-1]
    j -= 1
    while j >= 0 and events[j][0] in skip:
        j -= 1
    return round(events[i][2] - events[j][2], 4) if j >= 0 else None


# --- profiling one step -----------------------------------------------------------------------


class ProfileStep(TrainerCallback):
    """torch.profiler over optimizer step `step` (1-based); rows end up in `self.rows`.

    A profiler that fails (no CUPTI, say) leaves `self.error` and the training run unharmed.
    """

    def __init__(self, step: int):
        self.step = step
        self.rows: list[tuple[str, float]] = []
        self.wall_s = 0.0
        self.clock = ""
        self.error: str | None = None
        self._profiler = None

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step + 1 != self.step:
            return
        import torch
        from torch.profiler import ProfilerActivity, profile

        activities = [ProfilerActivity.CPU]
        if torch.cuda.is_available():
            activities.append(ProfilerActivity.CUDA)
        synchronize()
        try:
            self._profiler = profile(activities=activities)
            self._profiler.__enter__()
        except Exception as error:
            self._fail(error)
        self._started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if self._profiler is None:
            return
        synchronize()
        self.wall_s = time.perf_counter() - self._started
        try:
            self._profiler.__exit__(None, None, None)
            self.rows, self.clock = profile_rows(self._profiler)
        except Exception as error:
            self._fail(error)
        self._profiler = None

    def _fail(self, error: Exception) -> None:
        self.error = f"{type(error).__name__}: {error}"[:300]
        self._profiler = None

    def summary(self) -> dict:
        if self.error:
            return {"step": self.step, "error": self.error}
        return {"step": self.step, "clock": self.clock, **summarise_profile(self.rows, self.wall_s)}


def profile_rows(profiler) -> tuple[list[tuple[str, float]], str]:
    """(name, self µs) per GPU kernel when CUDA was profiled, else per CPU operator."""
    averages = profiler.key_averages()
    kernels = [
        (e.key, e.self_device_time_total)
        for e in averages
        if getattr(e, "self_device_time_total", 0) > 0 and str(e.device_type).endswith("CUDA")
    ]
    if kernels:
        return kernels, "GPU kernels"
    return [
        (e.key, e.self_cpu_time_total) for e in averages if e.self_cpu_time_total > 0
    ], "CPU ops"


ATTENTION_WORDS = ("flash", "fmha", "attention", "sdpa", "scaled_dot_product")
MATMUL_WORDS = (
    "gemm",
    "xmma",
    "nvjet",
    "cutlass",
    "cublas",
    "aten::mm",
    "aten::addmm",
    "aten::bmm",
    "matmul",
)


def kind_of(name: str) -> str:
    """matmul, attention or other, from a kernel's or an operator's name."""
    lowered = name.lower()
    if any(word in lowered for word in ATTENTION_WORDS):
        return "attention"  # first: attention kernels are often cutlass GEMMs inside
    if any(word in lowered for word in MATMUL_WORDS):
        return "matmul"
    return "other"


def summarise_profile(rows: list[tuple[str, float]], wall_s: float, top: int = 8) -> dict:
    """Shares of the profiled step's busy time by kind, how busy the device was, the top rows."""
    busy_us = sum(us for _, us in rows)
    by_kind = {"matmul": 0.0, "attention": 0.0, "other": 0.0}
    for name, us in rows:
        by_kind[kind_of(name)] += us
    heaviest = sorted(rows, key=lambda row: row[1], reverse=True)[:top]
    return {
        "wall_s": round(wall_s, 4),
        "busy_s": round(busy_us / 1e6, 4),
        "busy_fraction": round(busy_us / 1e6 / wall_s, 4) if wall_s > 0 else None,
        "share": {k: round(v / busy_us, 4) if busy_us else 0.0 for k, v in by_kind.items()},
        "top": [
            {"name": n[:120], "s": round(us / 1e6, 4), "kind": kind_of(n)} for n, us in heaviest
        ],
    }


# --- generation -------------------------------------------------------------------------------


class TokenClock:
    """A generate() streamer that notes when each new token reaches the host."""

    def __init__(self):
        self.times: list[float] = []
        self._prompt_seen = False

    def put(self, value) -> None:
        value.tolist()  # waits for the token, as a real streamer does
        if self._prompt_seen:
            self.times.append(time.perf_counter())
        self._prompt_seen = True

    def end(self) -> None:
        pass

    def decode_tok_s(self) -> float | None:
        """Tokens after the first over the time they took."""
        if len(self.times) < 2 or self.times[-1] <= self.times[0]:
            return None
        return (len(self.times) - 1) / (self.times[-1] - self.times[0])
