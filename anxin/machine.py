"""Facts about the machine, gathered in one place: what training records in run.json, what
every benchmark prints beside its numbers, and what the precision and thread choices read.

Importable without torch; torch is only imported where its version or threads are reported.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

# Instruction-set extensions that change which numbers are comparable (bf16 speed, int8 kernels).
REPORTED_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "avx512_vnni", "avx_vnni")


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (platform.processor() is often empty)."""
    for line in _cpuinfo().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_flags() -> set[str]:
    for line in _cpuinfo().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_has_bf16() -> bool:
    """True when the CPU has native bf16 instructions (AVX512-BF16 or AMX)."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def usable_cores() -> int:
    """Logical cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def physical_cores() -> int:
    """Physical cores this process may use (hyper-threads share one core's math units)."""
    allowed = usable_cores()
    cores, physical = set(), "0"
    for line in _cpuinfo().splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "physical id":
            physical = value.strip()
        elif key == "core id":
            cores.add((physical, value.strip()))
    return max(1, min(len(cores) or allowed, allowed))


def machine_facts(torch_too: bool = True) -> dict:
    """Where something ran: enough to tell whether two result files are comparable.
    `torch_too=False` for work that runs without torch (importing it costs most of a second)."""
    flags = cpu_flags()
    facts = {
        "cpu": cpu_model(),
        "cpu_flags": [flag for flag in REPORTED_FLAGS if flag in flags],
        "cpu_native_bf16": cpu_has_bf16(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable_cores(),
        "physical_cores": physical_cores(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    if not torch_too:
        return facts
    try:
        import torch

        facts["torch"] = torch.__version__
        facts["torch_threads"] = torch.get_num_threads()
        facts["cuda"] = torch.cuda.is_available()
        if facts["cuda"]:
            facts["gpu"] = torch.cuda.get_device_name(0)
            facts["gpu_count"] = torch.cuda.device_count()
    except ImportError:
        facts["torch"] = None
    return facts


def versions(packages=("anxin", "torch", "transformers", "peft", "trl", "accelerate")) -> dict:
    """Installed versions of the packages that decide a run's numbers."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in packages:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            continue
    return found
