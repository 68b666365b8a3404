"""How idle OpenMP threads wait: spin on a machine of one's own, sleep on a busy one.

torch's CPU kernels run on OpenMP (libgomp) threads. Between two parallel regions an idle
thread spins by default, which is fastest when the cores are ours: on an idle 2-core machine a
LoRA step of SmolLM2 ran 25 % slower with sleeping threads (OMP_WAIT_POLICY=PASSIVE; 255 vs
335 tokens/s). On a machine other busy processes share, spinning threads burn the time slices
the working threads need: two such runs side by side made 80 tokens/s each spinning and 197
sleeping, and one training pass took 94-136 s spinning against 5-8 s sleeping.

So anxin looks at the machine once at start-up (0.2 s of /proc/stat) and lets threads sleep
only when other processes keep at least half a core busy. The OpenMP runtime reads the policy
once, when torch loads, so this runs before torch is imported; an OMP_WAIT_POLICY set by the
user always wins.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

BUSY_CORES = 0.5  # other processes' load, in cores, from which idle threads should sleep

_chosen: str | None = None  # why the policy in force was chosen, for the run log


def busy_cores(interval: float = 0.2) -> float | None:
    """Cores kept busy by all processes over `interval` seconds (Linux), or None if unknown.

    The caller sleeps meanwhile, so on a fresh process this is the load of everything else.
    """

    def sample() -> tuple[int, int]:
        first_line = Path("/proc/stat").read_text().split("\n", 1)[0]
        ticks = [int(value) for value in first_line.split()[1:9]]  # user .. steal
        return sum(ticks), ticks[3] + ticks[4]  # all, idle + iowait

    try:
        total_before, idle_before = sample()
        time.sleep(interval)
        total_after, idle_after = sample()
    except (OSError, ValueError, IndexError):
        return None
    total = total_after - total_before
    if total <= 0:
        return None
    return (1 - (idle_after - idle_before) / total) * (os.cpu_count() or 1)


def choose_wait_policy() -> str:
    """Set OMP_WAIT_POLICY for this process, unless set already, and say why (once)."""
    global _chosen
    if _chosen is not None:
        return _chosen
    policy = os.environ.get("OMP_WAIT_POLICY")
    if policy:
        _chosen = f"OMP_WAIT_POLICY={policy} from the environment"
    elif "torch" in sys.modules:
        _chosen = "torch was loaded first: the OpenMP default (idle threads spin)"
    else:
        busy = busy_cores()
        if busy is not None and busy >= BUSY_CORES:
            os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
            _chosen = f"idle threads sleep: other processes kept {busy:.1f} cores busy at start"
        else:
            _chosen = "idle threads spin (the OpenMP default): the machine was idle at start"
    return _chosen
