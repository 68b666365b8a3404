"""The stages of bench/gpu_check.py, each a function of the run's Context returning its figures.

    build_base        the random stand-in model and tokenizer, saved once to local disk
    prepare_data      synthetic SMILECHAT-length dialogues registered as datasets; FLOPs per token
    train_variant     one training run through anxin.train.train (the real `anxin train` path)
    merge             anxin.merge.merge_adapter on the seed run's adapter
    engine            the merged model behind anxin's Engine: decode, TTFT, chat_batch
    decode_compiled   the same model through transformers' static-cache generate (compiled on CUDA)

A figure that cannot be measured here is None, with its reason in the section's `null_reasons`.
"""

from __future__ import annotations

import gc
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.gpu_measure import (
    ProfileStep,
    Timeline,
    TokenClock,
    copy_bandwidth,
    matmul_peak,
    summarise_timeline,
    synchronize,
    training_flops,
    utilisation,
)
from bench.gpu_stand_in import (
    SHAPES,
    build_model,
    build_tokenizer,
    parameter_count,
    synthetic_dialogues,
)

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "configs" / "llama3-8b-instruct" / "lora_sft.yaml"
GIB = 2**30

# The seed recipe, then variants of it (`anxin train` key=value overrides on top of RECIPE).
VARIANTS = {
    "seed": {
        "what": "the seed recipe: LoRA r 8 on q_proj,v_proj, batch 1 × grad-accum 8, cutoff 1024, bf16",
        "overrides": [],
    },
    "lora_all": {"what": "the seed recipe with lora_target all", "overrides": ["lora_target=all"]},
    "batch4_grouped": {
        "what": "batch 4 × grad-accum 2, group_by_length (less padding per batch)",
        "overrides": [
            "per_device_train_batch_size=4",
            "gradient_accumulation_steps=2",
            "group_by_length=true",
        ],
    },
    "qlora": {
        "what": "the seed recipe on 4-bit NF4 weights (QLoRA)",
        "overrides": ["quantization_bit=4"],
    },
}


@dataclass
class Context:
    """What the stages share: settings from the command line and what earlier stages made."""

    shape_name: str
    device: str
    work: Path
    steps: int
    max_new_tokens: int
    batch: int
    profile_step: int = 3
    eval_dialogues: int = 16  # two evaluation batches of 8
    extra_overrides: list[str] = field(default_factory=list)  # the tiny run's, on every variant
    peak_flops: float | None = None  # matmul ceiling, FLOP/s
    bandwidth_gb_s: float | None = None
    flops_per_token: float | None = None
    base_dir: Path | None = None
    merged_dir: Path | None = None
    adapters: dict = field(default_factory=dict)  # variant -> adapter folder

    @property
    def shape(self) -> dict:
        return SHAPES[self.shape_name]

    @property
    def cuda(self) -> bool:
        return self.device.startswith("cuda")

    @property
    def no_gpu(self) -> str:
        return f"no CUDA device: this run is on {self.device}"


def explain_nulls(section: dict, reasons: dict) -> dict:
    """Attach the reason of every None figure that has one."""
    nulls = {
        key: reasons[key] for key, value in section.items() if value is None and key in reasons
    }
    if nulls:
        section["null_reasons"] = nulls
    return section


def free_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def folder_gib(folder: Path) -> float:
    return round(sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / GIB, 3)


# --- ceilings, model, data --------------------------------------------------------------------


def measure_peak(ctx: Context) -> dict:
    peak = matmul_peak(ctx.device)
    ctx.peak_flops = peak.pop("flops_per_s")
    ctx.bandwidth_gb_s = copy_bandwidth(ctx.device) if ctx.cuda else None
    section = {**peak, "copy_gb_s": ctx.bandwidth_gb_s}
    return explain_nulls(section, {"copy_gb_s": ctx.no_gpu})


def build_base(ctx: Context) -> dict:
    """Build the random model on the device, save it once; training and merging load it."""
    ctx.base_dir = ctx.work / "base"
    tokenizer = build_tokenizer(ctx.base_dir)
    started = time.perf_counter()
    model = build_model(ctx.shape, tokenizer, ctx.device)
    synchronize()
    built = time.perf_counter()
    model.save_pretrained(ctx.base_dir, max_shard_size="5GB")
    saved = time.perf_counter()
    parameters = sum(p.numel() for p in model.parameters())
    del model
    free_memory()
    return {
        "shape": ctx.shape_name,
        "config": ctx.shape,
        "parameters": parameters,
        "parameters_expected": parameter_count(ctx.shape),
        "tokenizer_tokens": len(tokenizer),
        "build_s": round(built - started, 3),
        "save_s": round(saved - built, 3),
        "disk_gib": folder_gib(ctx.base_dir),
    }


def prepare_data(ctx: Context) -> dict:
    """Register training and evaluation dialogues; count their rendered tokens and FLOPs."""
    from transformers import AutoTokenizer

    from anxin.atomic import write_jsonl
    from anxin.data.registry import canonical_entry, register_dataset
    from anxin.template import DEFAULT_SYSTEM_PROMPT, render_conversation, with_system

    tokenizer = AutoTokenizer.from_pretrained(ctx.base_dir)
    per_step = 8  # every variant takes 8 dialogues per optimizer step (batch × grad-accum)
    train = synthetic_dialogues(ctx.steps * per_step, tokenizer, seed=1)
    evaluation = synthetic_dialogues(ctx.eval_dialogues, tokenizer, seed=2)
    data_dir = ctx.work / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    for name, records in (("gpu_check_train", train), ("gpu_check_eval", evaluation)):
        write_jsonl(data_dir / f"{name}.jsonl", records)
        register_dataset(data_dir, name, canonical_entry(f"{name}.jsonl"))
    rendered = [
        render_conversation(tokenizer, with_system(r["messages"], DEFAULT_SYSTEM_PROMPT), 1024)
        for r in train
    ]
    lengths = [len(r.input_ids) for r in rendered]
    trained = sum(r.trained_tokens for r in rendered)
    ctx.flops_per_token = training_flops(ctx.shape, lengths, trained) / sum(lengths)
    return {
        "train_dialogues": len(train),
        "eval_dialogues": len(evaluation),
        "tokens": sum(lengths),
        "trained_tokens": trained,
        "length_mean": round(sum(lengths) / len(lengths), 1),
        "length_max": max(lengths),
        "truncated_to_cutoff": sum(r.dropped_pairs > 0 or r.truncated for r in rendered),
        "training_gflop_per_token": round(ctx.flops_per_token / 1e9, 3),
    }


# --- training ---------------------------------------------------------------------------------


def recipe_overrides(ctx: Context, output_dir: Path) -> list[str]:
    """The seed recipe pointed at the stand-in model and data, for a fixed number of steps,
    evaluated and saved once (at the last step)."""
    return [
        f"model_name_or_path={ctx.base_dir}",
        f"dataset_dir={ctx.work / 'data'}",
        "dataset=gpu_check_train",
        "eval_dataset=gpu_check_eval",
        "val_size=0",
        f"max_steps={ctx.steps}",
        f"eval_steps={ctx.steps}",
        f"save_steps={ctx.steps}",
        "logging_steps=1",
        f"output_dir={output_dir}",
        "overwrite_output_dir=true",
        "plot_loss=false",
    ]


def train_variant(ctx: Context, name: str) -> dict:
    """One run of anxin.train.train, timed step by step from inside the Trainer."""
    from anxin.train import load_train_config, train

    variant = VARIANTS[name]
    output_dir = ctx.work / "runs" / name
    overrides = recipe_overrides(ctx, output_dir) + ctx.extra_overrides + variant["overrides"]
    cfg = load_train_config(RECIPE, overrides)
    timeline = Timeline()
    profiled = name == "seed" and ctx.steps >= ctx.profile_step
    profiler = ProfileStep(ctx.profile_step) if profiled else None
    reset_gpu_peak()
    started = time.perf_counter()
    result = train(cfg, callbacks=[timeline, *([profiler] if profiler else [])])
    finished = time.perf_counter()
    section = {"what": variant["what"], "overrides": variant["overrides"], **gpu_peak(ctx)}
    free_memory()
    ctx.adapters[name] = output_dir
    skip = (ctx.profile_step,) if profiler else ()
    section.update(throughput(ctx, summarise_timeline(timeline.events, skip)))
    section.update(run_facts(output_dir, result, timeline.events, started, finished))
    if profiler is not None:
        section["profile"] = profiler.summary()
    return section


def reset_gpu_peak() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def gpu_peak(ctx: Context) -> dict:
    import torch

    figures = {"peak_gpu_memory_gib": None, "peak_gpu_reserved_gib": None}
    if ctx.cuda:
        figures["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated() / GIB, 3)
        figures["peak_gpu_reserved_gib"] = round(torch.cuda.max_memory_reserved() / GIB, 3)
    return explain_nulls(figures, dict.fromkeys(figures, ctx.no_gpu))


def throughput(ctx: Context, timeline: dict) -> dict:
    """Tokens/s, model TFLOP/s and MFU over the steady steps."""
    seconds, tokens = timeline["steady_s"], timeline["steady_tokens"]
    flops = (ctx.flops_per_token or 0) * tokens
    no_steps = "no steady steps: run more steps (--steps)"
    reasons = dict.fromkeys(
        ("tokens_per_s", "model_tflops_per_s", "steady_step_s_median"), no_steps
    )
    reasons["mfu"] = no_steps if seconds <= 0 else "no matmul peak: the peak stage did not run"
    reasons["eval_s"] = "the run did not evaluate"
    reasons["checkpoint_save_s"] = "the run saved no checkpoint"
    figures = {
        **timeline,
        "tokens_per_s": round(tokens / seconds, 1) if seconds > 0 else None,
        "model_tflops_per_s": round(flops / seconds / 1e12, 3) if seconds > 0 else None,
        "mfu": utilisation(flops, seconds, ctx.peak_flops),
    }
    if figures["mfu"] is not None:
        figures["mfu"] = round(figures["mfu"], 4)
    return explain_nulls(figures, reasons)


def run_facts(output_dir: Path, result, events, started: float, finished: float) -> dict:
    """Losses, trainable parameters and precision from the run's files; setup and final save
    seconds from the timeline (before the first step; after the Trainer ended)."""
    card = json.loads((output_dir / "run.json").read_text())
    begin = next(at for event, _, at, _ in events if event == "train_begin")
    end = next(at for event, _, at, _ in reversed(events) if event == "train_end")
    return {
        "global_step": result.global_step,
        "train_loss": result.train_loss,
        "eval_loss": result.eval_loss,
        "trainable_parameters": card["trainable_parameters"],
        "precision": card["machine"]["precision"],
        "setup_s": round(begin - started, 3),
        "final_save_s": round(finished - end, 3),
        "train_call_s": round(finished - started, 3),
    }


# --- merge and generation ---------------------------------------------------------------------


def merge(ctx: Context) -> dict:
    from anxin.merge import merge_adapter

    ctx.merged_dir = ctx.work / "merged"
    started = time.perf_counter()
    merge_adapter(str(ctx.base_dir), str(ctx.adapters["seed"]), ctx.merged_dir, dtype="bfloat16")
    return {
        "adapter": "seed",
        "dtype": "bfloat16",
        "merge_s": round(time.perf_counter() - started, 3),
        "disk_gib": folder_gib(ctx.merged_dir),
        "how": "anxin.merge: the base loaded in float32 on the CPU, merged, cast, saved",
    }


def engine(ctx: Context) -> dict:
    """The merged model behind the Engine, measured as a user meets it."""
    from anxin.backends.hf import on_torch_thread
    from anxin.engine import Engine
    from bench.chat_latency import TimedBackend, conversation, run_engine

    started = time.perf_counter()
    loaded = Engine.from_pretrained(str(ctx.merged_dir))
    load_s = time.perf_counter() - started
    backend = loaded.backend
    timed = TimedBackend(backend)
    chat = Engine(timed, system_prompt=loaded.system_prompt)
    run_engine(chat, timed, conversation(1), 4)  # warm-up: kernels, allocator
    single = run_engine(chat, timed, conversation(1), ctx.max_new_tokens)
    section = {
        "model_load_s": round(load_s, 3),
        "device": str(backend.model.device),
        "single_stream": single,
        "decode_tok_s": single["decode_tok_s"],
        **ttft_ten_turns(chat, timed, backend),
        **batch_throughput(chat, ctx),
    }
    prompt = one_turn_prompt(backend.tokenizer, chat.system_prompt)
    section["plain_generate_decode_tok_s"] = on_torch_thread(
        generate_decode, backend.model, prompt, ctx.max_new_tokens, backend.prompts.pad_id
    )
    section.update(roofline(ctx, backend.model))
    del loaded, backend, timed, chat
    free_memory()
    return section


def ttft_ten_turns(chat, timed, backend) -> dict:
    """Time to first token at the 10th user turn: from an empty KV cache, and right after the
    9th turn was answered (the backend then reuses the cached prefix)."""
    from bench.chat_latency import conversation, run_engine

    backend.reset_cache()
    cold = run_engine(chat, timed, conversation(10), 16)
    run_engine(chat, timed, conversation(9), 16)
    warm = run_engine(chat, timed, conversation(10), 16)
    figures = {
        "ttft_10_turn_cold_s": cold["ttft_s"],
        "ttft_10_turn_warm_s": warm["ttft_s"],
        "first_shown_10_turn_cold_s": cold["first_shown_s"],
        "prompt_tokens_10_turn": cold["prompt_tokens"],
    }
    why = "no text was shown: the reply check held the whole reply back"
    return explain_nulls(figures, {"first_shown_10_turn_cold_s": why})


def batch_throughput(chat, ctx: Context) -> dict:
    """Engine.chat_batch over `ctx.batch` conversations of 1 to 10 turns, greedy."""
    from bench.chat_latency import conversation

    conversations = [conversation(1 + i % 10) for i in range(ctx.batch)]
    started = time.perf_counter()
    replies = chat.chat_batch(
        conversations, temperature=0, max_new_tokens=ctx.max_new_tokens, repetition_penalty=1.0
    )
    seconds = time.perf_counter() - started
    tokens = sum(r.completion_tokens for r in replies)
    return {
        "chat_batch_size": ctx.batch,
        "chat_batch_s": round(seconds, 3),
        "chat_batch_tokens": tokens,
        "chat_batch_tok_s": round(tokens / seconds, 1),
    }


def one_turn_prompt(tokenizer, system_prompt: str) -> list[int]:
    """The Engine's 1-turn prompt (persona + first message), for the plain-generate references."""
    from anxin.template import render_prompt
    from bench.chat_latency import conversation

    return render_prompt(
        tokenizer, [{"role": "system", "content": system_prompt}, *conversation(1)]
    )


def generate_decode(model, prompt: list[int], max_new: int, pad_id: int, **kwargs) -> float | None:
    """Decode tokens/s of plain model.generate on `prompt`: one warm-up call, one timed."""
    import torch

    input_ids = torch.tensor([prompt], device=model.device)
    settings = {
        "max_new_tokens": max_new,
        "min_new_tokens": max_new,
        "do_sample": False,
        "pad_token_id": pad_id,
        "attention_mask": torch.ones_like(input_ids),
        **kwargs,
    }
    clock = TokenClock()
    with torch.inference_mode():
        model.generate(input_ids, **settings)  # warm-up (and compilation, where it happens)
        model.generate(input_ids, streamer=clock, **settings)
    rate = clock.decode_tok_s()
    return round(rate, 2) if rate else None


def roofline(ctx: Context, model) -> dict:
    """Decode's upper bound: every weight but the embedding table read once per token."""
    embedding = model.get_input_embeddings().weight
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    weight_bytes -= embedding.numel() * embedding.element_size()
    figures = {
        "weight_gib_read_per_token": round(weight_bytes / GIB, 3),
        "roofline_decode_tok_s": round(ctx.bandwidth_gb_s * 1e9 / weight_bytes, 1)
        if ctx.bandwidth_gb_s
        else None,
    }
    return explain_nulls(figures, {"roofline_decode_tok_s": ctx.no_gpu})


def decode_compiled(ctx: Context) -> dict:
    """transformers' static KV cache, which it compiles with torch.compile on CUDA only: the
    fastest decoding the installed stack offers without another serving engine."""
    from anxin.models import load_model, load_tokenizer
    from anxin.template import DEFAULT_SYSTEM_PROMPT

    model = load_model(str(ctx.merged_dir), device=ctx.device)
    tokenizer = load_tokenizer(str(ctx.merged_dir))
    prompt = one_turn_prompt(tokenizer, DEFAULT_SYSTEM_PROMPT)
    started = time.perf_counter()
    rate = generate_decode(
        model, prompt, ctx.max_new_tokens, tokenizer.pad_token_id, cache_implementation="static"
    )
    section = {
        "static_cache_decode_tok_s": rate,
        "compiled": ctx.cuda,  # transformers compiles a static-cache generate on CUDA only
        "warmup_and_timed_s": round(time.perf_counter() - started, 3),
    }
    del model
    free_memory()
    return section
