"""The flagship recipe proven on one CUDA GPU, offline, in one call of a few minutes.

On a randomly initialised model with Llama-3-8B-Instruct's exact shape (bench/gpu_stand_in.py)
and synthetic dialogues of SMILECHAT's lengths, through anxin's own code:

    peak             bf16 matmul ceiling and device copy bandwidth, measured in this run
    base_model       the stand-in built on the GPU in bf16 and saved once to local disk (timed)
    data             the dialogues registered as datasets; rendered lengths and FLOPs per token
    train_seed       `anxin train` (anxin.train.train) with configs/llama3-8b-instruct/lora_sft.yaml:
                     LoRA r 8 on q,v, batch 1 × grad-accum 8, cutoff 1024, bf16, --steps optimizer
                     steps, evaluated and saved once; step 3 profiled
    merge            anxin.merge on the seed adapter
    engine           the merged model behind anxin's Engine: single-stream decode, TTFT at a
                     10-turn history (cold and warm), chat_batch throughput at batch 16, plain
                     model.generate and the memory-bandwidth roofline beside it
    train_qlora      the seed recipe on 4-bit weights (skipped, with the reason, without
                     CUDA or bitsandbytes)
    train_lora_all, train_batch4_grouped   variants of the recipe
    decode_compiled  transformers' static-cache generate, compiled with torch.compile on CUDA

Stages run in that order, most important first. Before each, the run checks its time budget
(--budget-s) and skips what would not fit; results are written after every stage, so a run cut
short still leaves what it measured: bench/results/gpu_check.json and gpu_check.md.

On the GPU machine (device tool; image: Python 3.12, torch 2.11 cu130, transformers 5.17):

    here, once:   bash bench/gpu_check.sh fetch          # wheels into .whl/ (see that file)
    device run:   carry [".whl"], timeout_s 540, command:
                  bash bench/gpu_check.sh run
    then copy $OUT's gpu_check.json and gpu_check.md into bench/results/.

anxin runs there from the copied working tree (this script puts the repository on sys.path),
not from pip: pyproject pins torch 2.13, the image has 2.11.

    --tiny        the same code path on tests/tiny.py's tiny Llama on the CPU, in seconds
                  (tests/test_gpu_check.py runs it so this script never rots); GPU-only figures
                  are null with their reason
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from anxin.atomic import write_json, write_text  # noqa: E402

RESULTS = ROOT / "bench" / "results"
NEEDED_MODULES = (
    "transformers",
    "peft",
    "accelerate",
    "anxin.train",
    "anxin.merge",
    "anxin.engine",
)

# Rough seconds each stage takes for the 8B shape on an H100 (before the first measured run:
# guesses from the model's size); a stage that would end past --budget-s is skipped.
ESTIMATE_S = {
    "peak": 10,
    "base_model": 60,
    "data": 5,
    "train_seed": 60,
    "merge": 120,
    "engine": 60,
    "train_qlora": 90,
    "train_lora_all": 60,
    "train_batch4_grouped": 60,
    "decode_compiled": 180,
}


class Report:
    """The result file, rewritten after every stage; each stage's outcome goes under `stages`."""

    def __init__(self, args, device: str):
        self.started = time.perf_counter()
        self.budget_s = args.budget_s
        self.tiny = args.tiny
        name = "gpu_check_tiny" if args.tiny else "gpu_check"
        self.json_path = Path(args.results_dir) / f"{name}.json"
        self.md_path = Path(args.results_dir) / f"{name}.md"
        self.data = {
            "schema": 1,
            "mode": "tiny" if args.tiny else "llama3-8b",
            "started_at": time.strftime("%FT%T"),
            "finished_at": None,
            "settings": {k: v for k, v in vars(args).items() if k != "results_dir"},
            "checks": {},
            "stages": {},
            "targets": {},
        }

    def log(self, message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')} +{self.elapsed():6.1f}s] {message}", flush=True)

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def stage(self, name: str, run, needs: str | None = None, skip: str | None = None) -> bool:
        """Run `run()` as stage `name` unless `skip` or a missing need says why not; True if ok."""
        reason = skip or needs
        if reason is None and not self.tiny and self.elapsed() + ESTIMATE_S[name] > self.budget_s:
            reason = f"time budget: {self.elapsed():.0f} s spent, ~{ESTIMATE_S[name]} s more would pass --budget-s {self.budget_s:.0f}"
        if reason:
            self.record(name, {"status": "skipped", "reason": reason})
            return False
        self.log(f"{name} ...")
        started = time.perf_counter()
        try:
            outcome = {"status": "ok", **run()}
        except Exception as error:  # record it, go on with the stages that do not need this one
            outcome = {
                "status": "error",
                "error": f"{type(error).__name__}: {error}"[:500],
                "traceback": traceback.format_exc()[-3000:],
            }
        outcome["stage_s"] = round(time.perf_counter() - started, 2)
        outcome.update(memory_left())
        self.record(name, outcome)
        return outcome["status"] == "ok"

    def record(self, name: str, outcome: dict) -> None:
        self.data["stages"][name] = outcome
        detail = outcome.get("reason") or outcome.get("error") or f"{outcome.get('stage_s')} s"
        self.log(f"{name}: {outcome['status']} ({detail})")
        self.write()

    def write(self) -> None:
        from bench.gpu_report import markdown

        self.json_path.parent.mkdir(parents=True, exist_ok=True)
        write_json(self.json_path, self.data)
        write_text(self.md_path, markdown(self.data))


def memory_left() -> dict:
    """Free what the stage left behind (a failed one too: its frames held the model) and say
    how much GPU memory is still in use, so a leak shows before the next stage runs out."""
    import torch

    from bench.gpu_stages import free_memory

    free_memory()
    if not torch.cuda.is_available():
        return {}
    return {"gpu_memory_left_gib": round(torch.cuda.memory_allocated() / 2**30, 3)}


# --- checks before anything heavy -------------------------------------------------------------


def preflight(args, device: str, work: Path) -> dict:
    """Versions, the device, the modules anxin needs, QLoRA's needs, disk and memory."""
    import torch

    from anxin.machine import machine_facts, versions
    from bench.gpu_stand_in import SHAPES, parameter_count

    bf16_bytes = 2 * parameter_count(SHAPES["tiny" if args.tiny else "llama3-8b"])
    checks = {
        "device": device,
        "machine": machine_facts(),
        "versions": versions(
            ("torch", "transformers", "peft", "accelerate", "bitsandbytes", "trl")
        ),
        "missing_modules": missing_modules(),
        "qlora": qlora_blocker(device),
        "flash_attn_installed": importlib.util.find_spec("flash_attn") is not None,
        "disk_free_gib": round(shutil.disk_usage(work).free / 2**30, 1),
        "disk_needed_gib": round(2.2 * bf16_bytes / 2**30, 1),  # base + merged model
        "memory_needed_gib": round(3.2 * bf16_bytes / 2**30, 1),  # the merge's float32 copy
    }
    if device.startswith("cuda"):
        properties = torch.cuda.get_device_properties(0)
        checks["gpu"] = properties.name
        checks["gpu_memory_gib"] = round(properties.total_memory / 2**30, 1)
        checks["gpu_bf16"] = torch.cuda.is_bf16_supported()
    checks["fatal"] = fatal_problems(args, device, checks)
    return checks


def missing_modules() -> dict:
    missing = {}
    for module in NEEDED_MODULES:
        try:
            importlib.import_module(module)
        except Exception as error:  # an ImportError, or a library that fails as it loads
            missing[module] = f"{type(error).__name__}: {error}"[:300]
    return missing


def qlora_blocker(device: str) -> str | None:
    """Why QLoRA cannot run here, or None."""
    if not device.startswith("cuda"):
        return "QLoRA needs a CUDA GPU (bitsandbytes)"
    try:
        importlib.import_module("bitsandbytes")
    except Exception as error:
        return f"bitsandbytes does not import: {type(error).__name__}: {error}"[:300]
    return None


def fatal_problems(args, device: str, checks: dict) -> list[str]:
    problems = [f"{m} does not import: {why}" for m, why in checks["missing_modules"].items()]
    if not args.tiny and not device.startswith("cuda"):
        problems.append("the llama3-8b shape needs a CUDA GPU; on a CPU run --tiny")
    if checks["disk_free_gib"] < checks["disk_needed_gib"]:
        problems.append(
            f"{checks['disk_needed_gib']} GiB of disk needed in --work-dir, {checks['disk_free_gib']} free"
        )
    memory = checks["machine"].get("memory_gib") or 0
    if memory < checks["memory_needed_gib"]:
        problems.append(
            f"{checks['memory_needed_gib']} GiB of memory needed for the merge, {memory} here"
        )
    return problems


# --- the flow ---------------------------------------------------------------------------------


def run_stages(report: Report, ctx, skip: set[str]) -> None:
    from bench import gpu_stages as stages

    def unless(name: str, needs: str | None = None) -> dict:
        return {"skip": "--skip" if name in skip else None, "needs": needs}

    report.stage("peak", lambda: stages.measure_peak(ctx), **unless("peak"))
    if not report.stage("base_model", lambda: stages.build_base(ctx), **unless("base_model")):
        return
    if not report.stage("data", lambda: stages.prepare_data(ctx), **unless("data")):
        return
    seed = report.stage(
        "train_seed", lambda: stages.train_variant(ctx, "seed"), **unless("train_seed")
    )
    merged = report.stage(
        "merge", lambda: stages.merge(ctx), **unless("merge", None if seed else "needs train_seed")
    )
    merge_need = None if merged else "needs merge"
    report.stage("engine", lambda: stages.engine(ctx), **unless("engine", merge_need))
    qlora = report.data["checks"]["qlora"]
    report.stage(
        "train_qlora", lambda: stages.train_variant(ctx, "qlora"), **unless("train_qlora", qlora)
    )
    for name in ("lora_all", "batch4_grouped"):
        report.stage(
            f"train_{name}", lambda n=name: stages.train_variant(ctx, n), **unless(f"train_{name}")
        )
    report.stage(
        "decode_compiled",
        lambda: stages.decode_compiled(ctx),
        **unless("decode_compiled", merge_need),
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--tiny", action="store_true", help="the tiny Llama on the CPU (CI)")
    parser.add_argument(
        "--steps", type=int, default=None, help="optimizer steps per run (8B: 10, tiny: 3)"
    )
    parser.add_argument(
        "--max-new-tokens", type=int, default=None, help="tokens per reply (8B: 128, tiny: 32)"
    )
    parser.add_argument(
        "--batch", type=int, default=16, help="conversations in the chat_batch measurement"
    )
    parser.add_argument(
        "--budget-s", type=float, default=480, help="skip stages that would end later"
    )
    parser.add_argument("--skip", default="", help="comma-separated stages not to run")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when present)")
    parser.add_argument(
        "--results-dir", default=str(RESULTS), help="where the JSON and markdown go"
    )
    parser.add_argument(
        "--work-dir", default=None, help="where the scratch folder goes (default: the temp dir)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = parser.parse_args(argv)
    args.steps = args.steps or (3 if args.tiny else 10)
    args.max_new_tokens = args.max_new_tokens or (32 if args.tiny else 128)
    return args


def context(args, device: str, work: Path):
    """The stages' shared settings. The tiny run profiles step 2 of 3, evaluates one batch, and
    lets anxin pick the precision: bf16 is emulated, many times slower, on CPUs without it
    (the recipe says true)."""
    from bench.gpu_stages import Context

    if not args.tiny:
        return Context("llama3-8b", device, work, args.steps, args.max_new_tokens, args.batch)
    return Context(
        "tiny", device, work, args.steps, args.max_new_tokens, args.batch,
        profile_step=2, eval_dialogues=8, extra_overrides=["bf16=auto"],
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.work_dir:
        Path(args.work_dir).mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="anxin-gpu-check-", dir=args.work_dir))
    # Offline, and anxin's caches (tokenised data) inside the scratch folder.
    os.environ.update(
        {
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "ANXIN_HOME": str(work / "anxin_home"),
        }
    )
    from anxin.openmp import choose_wait_policy

    choose_wait_policy()  # before torch loads, as `anxin train` does (see anxin.openmp)
    import torch

    from bench.gpu_report import targets

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    report = Report(args, device)
    report.log(f"gpu_check {report.data['mode']} on {device}; work in {work}")
    report.data["checks"] = checks = preflight(args, device, work)
    report.write()
    for problem in checks["fatal"]:
        report.log(f"cannot run: {problem}")
    if not checks["fatal"]:
        ctx = context(args, device, work)
        run_stages(report, ctx, {s for s in args.skip.split(",") if s})
    report.data["targets"] = targets(report.data["stages"], args.tiny)
    report.data["finished_at"] = time.strftime("%FT%T")
    report.write()
    report.log(f"wrote {report.json_path} and {report.md_path}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if checks["fatal"] else 0


if __name__ == "__main__":
    sys.exit(main())
