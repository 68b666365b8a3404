"""The machine a run trains on: processes, threads, precision, and what the config asks of it.

These checks run before any model is read, so asking for QLoRA on a laptop or DeepSpeed without
it installed costs one line, not a model load.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass

from anxin import machine
from anxin.errors import ConfigError
from anxin.machine import cpu_has_bf16, machine_facts
from anxin.openmp import choose_wait_policy


@dataclass(frozen=True)
class Processes:
    """Where this process sits in a multi-process run (torchrun, accelerate launch)."""

    rank: int
    local_rank: int
    world_size: int
    local_world_size: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def processes() -> Processes:
    """Read the launcher's environment; a plain `anxin train` is rank 0 of 1."""
    env = os.environ
    world_size = int(env.get("WORLD_SIZE", 1))
    return Processes(
        rank=int(env.get("RANK", 0)),
        local_rank=int(env.get("LOCAL_RANK", 0)),
        world_size=world_size,
        local_world_size=int(env.get("LOCAL_WORLD_SIZE", world_size)),
    )


def has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def uses_cuda(cfg) -> bool:
    """Whether this run trains on a GPU: one is present and use_cpu does not forbid it."""
    return has_cuda() and not cfg.train.use_cpu


def check_machine(cfg) -> None:
    """Refuse settings this machine cannot honour, before anything heavy happens."""
    cuda = uses_cuda(cfg)
    if cfg.model.quantization_bit and not cuda:
        raise ConfigError(
            f"quantization_bit: {cfg.model.quantization_bit}-bit QLoRA needs a CUDA GPU "
            f"(bitsandbytes); {_no_gpu(cfg)}. Remove quantization_bit to train LoRA "
            "in full precision on the CPU."
        )
    if cfg.model.quantization_bit and not _installed("bitsandbytes"):
        raise ConfigError("quantization_bit needs bitsandbytes: pip install bitsandbytes")
    if cfg.train.fp16 and not cuda:
        raise ConfigError("fp16: float16 training needs a CUDA GPU; on a CPU use bf16: auto")
    if cfg.method.stage != "sft" and not _installed("trl"):
        raise ConfigError(f"stage {cfg.method.stage} needs TRL: pip install trl")
    if cfg.train.deepspeed and not cuda:
        raise ConfigError("deepspeed: DeepSpeed ZeRO needs CUDA GPUs; on a CPU leave it unset")
    if cfg.train.deepspeed and not _installed("deepspeed"):
        raise ConfigError("deepspeed: DeepSpeed is not installed (pip install deepspeed)")
    if cfg.output.report_to in ("tensorboard", "all") and not _installed("tensorboard"):
        raise ConfigError("report_to: tensorboard is not installed (pip install tensorboard)")


def _no_gpu(cfg) -> str:
    return "use_cpu is true" if cfg.train.use_cpu else "this machine has none"


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


@dataclass(frozen=True)
class Precision:
    """How the math runs: `mode` is bf16, fp16 or fp32; `why` goes into the log and run.json."""

    mode: str
    why: str

    @property
    def bf16(self) -> bool:
        return self.mode == "bf16"

    @property
    def fp16(self) -> bool:
        return self.mode == "fp16"


def pick_precision(bf16: bool | str, fp16: bool, cuda: bool | None = None) -> Precision:
    """Resolve `bf16: auto|true|false` and `fp16` against this machine (`cuda`: whether the
    run uses its GPU; default: whether it has one)."""
    import torch

    cuda = torch.cuda.is_available() if cuda is None else cuda
    if fp16:
        return Precision("fp16", "fp16 asked for")
    if bf16 is True:
        if not cuda and not cpu_has_bf16():
            return Precision("bf16", "bf16 asked for (this CPU emulates bf16: slow)")
        return Precision("bf16", "bf16 asked for")
    if bf16 is False:
        return Precision("fp32", "bf16: false")
    if cuda:
        if torch.cuda.is_bf16_supported():
            return Precision("bf16", "bf16: auto, the GPU supports bf16")
        return Precision("fp32", "bf16: auto, the GPU lacks bf16")
    if cpu_has_bf16():
        return Precision("bf16", "bf16: auto, bf16 autocast: this CPU has native bf16")
    return Precision("fp32", "bf16: auto, float32: this CPU has no native bf16")


def set_torch_threads(requested: int | None, procs: Processes) -> int:
    """Threads = physical cores shared among this machine's processes, unless told otherwise.

    An explicit OMP_NUM_THREADS (torchrun sets 1) wins over the default, not over the config.
    """
    import torch

    if requested:
        threads = requested
    elif os.environ.get("OMP_NUM_THREADS"):
        threads = int(os.environ["OMP_NUM_THREADS"])
    else:
        threads = max(1, machine.physical_cores() // procs.local_world_size)
    torch.set_num_threads(threads)
    return threads


def describe_machine(precision: Precision, threads: int, procs: Processes) -> dict:
    """What run.json records about where a run trained."""
    return {
        **machine_facts(),
        "torch_threads": threads,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "omp_wait_policy_why": choose_wait_policy(),
        "precision": precision.mode,
        "precision_why": precision.why,
        "world_size": procs.world_size,
    }
