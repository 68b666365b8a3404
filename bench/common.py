"""What every benchmark here needs: machine facts, the matmul ceiling, and measured child runs.

    machine_facts()            CPU model and flags, cores, load, torch and Python versions
    matmul_ceiling()           best GFLOP/s of a large torch matmul, fp32 and bf16
    lora_training_flops()      model FLOPs of LoRA training on dialogues of given lengths
    run_measured(cmd, ...)     run a command as a child process: wall time and peak memory

Peak memory is measured two ways, because each misses something: the kernel's high-water mark
of the child and every descendant it waited for (`os.wait4`, exact but per process), and the
sum of resident memory over the whole live process tree, sampled (`psutil`, catches worker
processes alive at the same time but may miss a short spike between samples).
Importable without torch; torch is only imported by `matmul_ceiling`.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

MIB = 1024 * 1024


def anxin_environment() -> dict[str, str]:
    """A child `python -m anxin` run's environment: offline, quiet tokenizers."""
    return {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}


def machine_facts() -> dict:
    """Where a benchmark ran (anxin.machine's facts; the CPU flags say which runs compare)."""
    from anxin.machine import machine_facts as facts

    return facts()


def matmul_ceiling(
    sizes: tuple[int, ...] = (1024, 2048, 3072), repeats: int = 3, threads: int | None = None
) -> dict:
    """GFLOP/s of the fastest square matmul per dtype: what this CPU can do at most.

    A model's achieved FLOP/s divided by this is its utilisation. Best-of over a few sizes
    and repeats rather than a mean: a shared machine only ever makes a run slower, and which
    size runs fastest differs between dtypes (bf16 peaks at smaller sizes here).
    """
    import torch

    from anxin.machine import cpu_has_bf16

    if threads:
        torch.set_num_threads(threads)
    result: dict = {"sizes": list(sizes), "threads": torch.get_num_threads()}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        best = 0.0
        # Emulated bf16 (no native support) is slow enough that the large sizes take minutes,
        # and the smallest already says how far below fp32 it is.
        emulated = dtype == torch.bfloat16 and not cpu_has_bf16()
        for size in sizes[:1] if emulated else sizes:
            a = torch.randn(size, size).to(dtype)
            b = torch.randn(size, size).to(dtype)
            torch.mm(a, b)  # warm-up: thread pool, kernel selection
            for _ in range(repeats):
                start = time.perf_counter()
                torch.mm(a, b)
                best = max(best, 2 * size**3 / (time.perf_counter() - start) / 1e9)
        result[f"{name}_gflops"] = round(best, 1)
    return result


def lora_training_flops(config: dict, lengths: list[int]) -> float:
    """Model FLOPs to train LoRA on dialogues of these lengths (one forward and backward each).

    Frozen weights need no weight gradients, so every linear layer (the tied output head
    included) costs 2 FLOP per parameter forward and 2 backward: 4 × N per token. Attention
    scores (QKᵀ and AV) cost 4·d·T² per layer forward and twice that backward: 12·L·d·T² per
    dialogue, counted over the full square as in PaLM's utilisation figure (causal kernels may
    skip half). The adapters themselves (r = 8) add well under 1 % and are left out.
    """
    d, layers = config["hidden_size"], config["num_hidden_layers"]
    head_dim = config.get("head_dim") or d // config["num_attention_heads"]
    q_out = config["num_attention_heads"] * head_dim
    kv_out = config.get("num_key_value_heads", config["num_attention_heads"]) * head_dim
    per_layer = d * q_out + 2 * d * kv_out + q_out * d + 3 * d * config["intermediate_size"]
    n_matmul = layers * per_layer + config["vocab_size"] * d  # + the output head
    tokens = sum(lengths)
    return 4 * n_matmul * tokens + 12 * layers * q_out * sum(t * t for t in lengths)


@dataclass
class Measured:
    """One child run: exit status, wall seconds and peak memory in MiB."""

    returncode: int
    wall_s: float
    peak_rss_mib: float  # kernel high-water mark of the child (and descendants it waited for)
    peak_tree_rss_mib: float  # largest sampled sum of RSS over the live process tree
    load_before: float  # 1-minute load average when the run started
    load_after: float


def _tree_rss(pid: int) -> int:
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            continue
    return total


def run_measured(
    cmd: list[str],
    log_path: str | Path,
    env: dict[str, str] | None = None,
    cwd: str | Path | None = None,
    poll_s: float = 0.2,
    trace_path: str | Path | None = None,
) -> Measured:
    """Run `cmd` with stdout and stderr to `log_path`; measure wall time and peak memory.

    `trace_path` also gets every sample as `seconds,tree_rss_mib` lines: where the peak falls.
    """
    load_before = os.getloadavg()[0]
    peak_tree = 0
    trace: list[str] = []
    done = threading.Event()
    with open(log_path, "w", encoding="utf-8") as log:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd)

        def sample() -> None:
            nonlocal peak_tree
            while not done.wait(poll_s):
                rss = _tree_rss(proc.pid)
                peak_tree = max(peak_tree, rss)
                trace.append(f"{time.perf_counter() - start:.1f},{rss / MIB:.0f}")

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        # wait4 instead of proc.wait(): it also returns the child's resource usage.
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        done.set()
        sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if trace_path is not None:
        Path(trace_path).write_text("seconds,tree_rss_mib\n" + "\n".join(trace) + "\n")
    return Measured(
        returncode=proc.returncode,
        wall_s=round(wall, 2),
        peak_rss_mib=round(usage.ru_maxrss * 1024 / MIB, 1),  # ru_maxrss is in KiB on Linux
        peak_tree_rss_mib=round(peak_tree / MIB, 1),
        load_before=round(load_before, 2),
        load_after=round(os.getloadavg()[0], 2),
    )
