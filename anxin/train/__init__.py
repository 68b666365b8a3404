"""`anxin train`: LoRA fine-tuning over HF Trainer + peft (and TRL for dpo and kto), in four
plain steps, the same for every stage.

    setup     check the machine and output_dir, read and split the data, tokenise with the one
              chat template, load the model and wrap it with LoRA, build the Trainer
              (HF's for stage sft, TRL's DPOTrainer or KTOTrainer for dpo and kto)
    fit       trainer.train(), resuming from the newest complete checkpoint when asked
    validate  eval_loss (and, for sft, perplexity; for dpo and kto, rewards) on validation data
    save      adapter + tokenizer + chat template card, results, run.json, loss plots
    (predict  with do_predict: replies to the validation conversations, as LLaMA-Factory writes)

From Python: `train(load_train_config("configs/smollm2-135m/lora_sft.yaml", ["max_steps=5"]))`.
Heavy libraries are imported inside the functions, so `anxin train --help` answers at once.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from anxin.atomic import write_json, write_jsonl
from anxin.config import describe_config, flatten
from anxin.errors import ConfigError
from anxin.openmp import choose_wait_policy
from anxin.train.config import TrainConfig, load_train_config

__all__ = ["TrainConfig", "TrainResult", "add_arguments", "load_train_config", "main", "train"]

RUN_CARD = "run.json"
VALIDATION_FILE = "validation.jsonl"


@dataclass
class TrainResult:
    """What a finished run reports back (the same numbers are in OUTPUT_DIR's JSON files)."""

    output_dir: Path
    global_step: int
    train_loss: float | None
    eval_loss: float | None
    train_runtime_s: float
    tokens_per_s: float | None
    resumed_from: str | None
    files: list[str] = field(default_factory=list)
    predict_metrics: dict | None = None


@dataclass
class Run:
    """Everything setup() prepared, handed down the flow."""

    cfg: TrainConfig
    procs: Any
    precision: Any
    threads: int
    model_path: str
    template_name: str
    tokenizer: Any
    trainer: Any
    resume_from: Path | None
    data_card: dict
    trainable_params: int
    validation: list[dict] = field(default_factory=list)  # the held-out records
    started_at: str = field(default_factory=lambda: time.strftime("%FT%T"))


def train(cfg: TrainConfig, callbacks: list | tuple = ()) -> TrainResult:
    """Fine-tune as `cfg` says; `callbacks` are extra HF TrainerCallbacks (progress, tests)."""
    if not cfg.method.do_train:
        return _predict_only(cfg)
    run = setup(cfg, callbacks)
    train_metrics = fit(run)
    eval_metrics = validate(run)
    result = save(run, train_metrics, eval_metrics)
    if cfg.predict.do_predict and run.procs.is_main:
        result.predict_metrics = predict_after_training(run)
        result.files = sorted(p.name for p in result.output_dir.iterdir())
    return result


def _predict_only(cfg: TrainConfig) -> TrainResult:
    """do_predict without do_train: no training, only generated_predictions.jsonl and scores."""
    from anxin.train.predict import predict_only

    started = time.perf_counter()
    scores = predict_only(cfg)
    output_dir = Path(cfg.output.output_dir)
    return TrainResult(
        output_dir=output_dir,
        global_step=0,
        train_loss=None,
        eval_loss=None,
        train_runtime_s=round(time.perf_counter() - started, 2),
        tokens_per_s=None,
        resumed_from=None,
        files=sorted(p.name for p in output_dir.iterdir()),
        predict_metrics=scores,
    )


# --- setup ------------------------------------------------------------------------------------


def setup(cfg: TrainConfig, callbacks: list | tuple = ()) -> Run:
    from anxin.models import load_tokenizer, resolve_model
    from anxin.template import apply_template, check_template
    from anxin.train import environment
    from anxin.train.build import build_trainer, load_model, save_pissa_init, training_arguments
    from anxin.train.checkpoints import prepare_output_dir

    choose_wait_policy()  # before anything imports torch (see anxin.openmp)
    procs = environment.processes()
    environment.check_machine(cfg)
    resume_from = prepare_output_dir(cfg.output, procs.is_main)
    records = load_records(cfg)
    if not records.train:
        raise ConfigError(f"dataset {cfg.data.dataset}: no records to train on")

    cuda = environment.uses_cuda(cfg)
    precision = environment.pick_precision(cfg.train.bf16, cfg.train.fp16, cuda)
    threads = environment.set_torch_threads(cfg.train.torch_threads, procs)
    _quiet_libraries(procs.is_main)
    args = training_arguments(cfg, precision, bool(records.validation))

    # The main process pulls the model and fills the token cache; the others then read both.
    with args.main_process_first(desc="model and tokenised data"):
        model_path = resolve_model(cfg.model.model_name_or_path)
        tokenizer = load_tokenizer(model_path)
        template_name = apply_template(tokenizer, cfg.model.template)
        # An adapter continues with the template it was trained with, or not at all.
        check_template(tokenizer, cfg.model.adapter_name_or_path)
        datasets, stats = tokenize_records(cfg, records, tokenizer)
    if len(datasets[0]) == 0:
        raise ConfigError(
            f"cutoff_len {cfg.data.cutoff_len}: no example keeps an answer to train on"
        )

    model = load_model(cfg, model_path, precision, procs)
    if cfg.method.pissa_init and procs.is_main:
        save_pissa_init(model, cfg.output.output_dir)
    trainer = build_trainer(
        cfg, args, model, tokenizer, template_name, datasets, resume_from, callbacks
    )
    data_card = {
        "datasets": cfg.data.dataset,
        "eval_dataset": cfg.data.eval_dataset,
        "stage": cfg.method.stage,
        "fingerprints": records.fingerprints(),
        "train": asdict(stats[0]),
        "validation": asdict(stats[1]),
    }
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    run = Run(
        cfg, procs, precision, threads, model_path, template_name, tokenizer, trainer,
        resume_from, data_card, trainable, records.validation,
    )  # fmt: skip
    if procs.is_main:
        _announce(run)
        write_run_card(run, status="running")
    return run


def load_records(cfg: TrainConfig):
    """The training and validation records of cfg's stage (conversations, pairs or KTO
    examples), before any model loads: a bad record or dataset name costs one line."""
    if cfg.method.stage == "sft":
        from anxin.train.data import load_conversations

        return load_conversations(cfg.data, cfg.model.default_system, cfg.train.seed)
    from anxin.train.preference_data import load_preferences

    return load_preferences(cfg.data, cfg.method.stage, cfg.model.default_system, cfg.train.seed)


def tokenize_records(cfg: TrainConfig, records, tokenizer) -> tuple[tuple, tuple]:
    """((train set, validation set), (train stats, validation stats)) for cfg's stage."""
    cutoff, seed = cfg.data.cutoff_len, cfg.train.seed
    if cfg.method.stage == "sft":
        from anxin.train.data import Labels, tokenize

        labels = Labels(cfg.data.train_on_prompt, cfg.data.mask_history)
        fresh = cfg.data.overwrite_cache
        train_set, train_stats = tokenize(records.train, tokenizer, cutoff, fresh, labels)
        val_set, val_stats = tokenize(records.validation, tokenizer, cutoff, fresh, labels)
        return (train_set, val_set), (train_stats, val_stats)
    from anxin.train.preference_data import tokenize_kto, tokenize_pairs

    if cfg.method.stage == "dpo":
        train_set, train_stats = tokenize_pairs(records.train, tokenizer, cutoff)
        val_set, val_stats = tokenize_pairs(records.validation, tokenizer, cutoff)
    else:
        train_set, train_stats = tokenize_kto(records.train, tokenizer, cutoff, seed)
        val_set, val_stats = tokenize_kto(records.validation, tokenizer, cutoff, seed)
    return (train_set, val_set), (train_stats, val_stats)


def _quiet_libraries(is_main: bool) -> None:
    """Warnings from the main process only; no per-file progress bars while loading weights."""
    import warnings

    import transformers

    if is_main:
        transformers.logging.set_verbosity_warning()
    else:
        transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    # peft still asks for the old attribute name; nothing for a user to act on.
    warnings.filterwarnings(
        "ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning
    )
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _announce(run: Run) -> None:
    cfg, card = run.cfg, run.data_card
    method = cfg.method.finetuning_type
    if cfg.model.adapter_name_or_path:
        method += f" continuing the adapter in {cfg.model.adapter_name_or_path}"
    elif method == "lora":
        method += f" r={cfg.method.lora_rank} alpha={cfg.method.lora_alpha} on {','.join(cfg.method.lora_target)}"
    stage = cfg.method.stage
    if stage != "sft":
        loss = cfg.preference.pref_loss if stage == "dpo" else "kto"
        method = f"{stage} ({loss}, beta {cfg.preference.pref_beta}) over {method}"
    unit = {"sft": "conversations", "dpo": "pairs", "kto": "examples"}[stage]
    count = {"sft": "conversations"}.get(stage, "examples")
    lines = [
        f"model {cfg.model.model_name_or_path} ({run.model_path}), template {run.template_name}",
        f"method {method}, {run.trainable_params:,} trainable parameters",
        f"data {card['train'][count]} training {unit} "
        f"({card['train']['tokens']:,} tokens, {card['train']['trained_tokens']:,} trained), "
        f"{card['validation'][count]} validation"
        + (" [tokenised: cache]" if card["train"]["from_cache"] else " [tokenised]"),
        f"precision {run.precision.mode} ({run.precision.why}); {run.threads} threads per process, "
        f"{choose_wait_policy()}; {run.procs.world_size} process(es)",
        f"output {cfg.output.output_dir}"
        + (f" (resuming from {run.resume_from.name})" if run.resume_from else ""),
    ]
    for line in lines:
        print(f"anxin: {line}", file=sys.stderr, flush=True)


# --- fit and validate -------------------------------------------------------------------------


def fit(run: Run) -> dict:
    """Train; the metrics gain tokens/s over this session's wall time (evaluations included)."""
    from anxin.train.callbacks import TrainerLog

    checkpoint = str(run.resume_from) if run.resume_from else None
    output = run.trainer.train(resume_from_checkpoint=checkpoint)
    metrics = dict(output.metrics)
    log = next(c for c in run.trainer.callback_handler.callbacks if isinstance(c, TrainerLog))
    tokens = run.trainer.state.num_input_tokens_seen - log.tokens_at_start
    if metrics.get("train_runtime"):
        metrics["train_tokens_per_second"] = round(tokens / metrics["train_runtime"], 1)
    return metrics


def validate(run: Run) -> dict | None:
    """Validation metrics of the final weights.

    When those weights were already evaluated (the last step, or the best checkpoint that
    load_best_model_at_end restored) the numbers are reused instead of computed again.
    """
    trainer, state = run.trainer, run.trainer.state
    if trainer.eval_dataset is None:
        return None
    evaluations = {e["step"]: e for e in state.log_history if "eval_loss" in e}
    best_restored = trainer.args.load_best_model_at_end and state.best_global_step
    final_weights_step = state.best_global_step if best_restored else state.global_step
    if final_weights_step in evaluations:
        entry = evaluations[final_weights_step]
        metrics = {k: v for k, v in entry.items() if k.startswith("eval_")}
    else:
        metrics = trainer.evaluate()
    if run.cfg.method.stage == "sft":  # a preference loss is no language-model loss
        metrics["eval_perplexity"] = math.exp(min(metrics["eval_loss"], 50.0))
    metrics["eval_weights_step"] = final_weights_step  # which step's weights were saved
    if run.cfg.eval.do_eval_generation and run.procs.is_main:
        metrics.update(generation_metrics(run))
    return metrics


def generation_metrics(run: Run) -> dict:
    """Replies generated for validation turns through the Engine, scored as `anxin eval` does."""
    from anxin.backends.hf import TransformersBackend
    from anxin.engine import Engine
    from anxin.evaluate import evaluate_model
    from anxin.evaluate.report import flat_metrics

    model = run.trainer.model.eval()
    engine = Engine(
        TransformersBackend(model, run.tokenizer), system_prompt=run.cfg.model.default_system
    )
    result = evaluate_model(
        engine,
        run.validation,
        max_turns=run.cfg.eval.eval_generation_turns,
        batch_size=run.cfg.eval.per_device_eval_batch_size,
        seed=run.cfg.train.seed,
        cutoff_len=run.cfg.data.cutoff_len,
        max_new_tokens=64,
        loss=False,
    )
    return {f"eval_gen_{key}": value for key, value in flat_metrics(result).items()}


def predict_after_training(run: Run) -> dict:
    """do_predict with the weights just trained (the main process only)."""
    from anxin.backends.hf import TransformersBackend
    from anxin.engine import Engine
    from anxin.train.predict import predict

    backend = TransformersBackend(run.trainer.model.eval(), run.tokenizer)
    engine = Engine(backend, system_prompt=run.cfg.model.default_system)
    return predict(run.cfg, engine, run.validation, run.cfg.output.output_dir)


# --- save -------------------------------------------------------------------------------------

FINAL_TMP = ".anxin-final.tmp"


def save(run: Run, train_metrics: dict, eval_metrics: dict | None) -> TrainResult:
    output_dir = Path(run.cfg.output.output_dir)
    save_final_model(run, output_dir)
    agreement = ranks_agree(run)
    state = run.trainer.state
    tokens_per_s = train_metrics.get("train_tokens_per_second")
    result = TrainResult(
        output_dir=output_dir,
        global_step=state.global_step,
        train_loss=train_metrics.get("train_loss"),
        eval_loss=(eval_metrics or {}).get("eval_loss"),
        train_runtime_s=float(train_metrics.get("train_runtime", 0.0)),
        tokens_per_s=tokens_per_s,
        resumed_from=str(run.resume_from) if run.resume_from else None,
    )
    if not run.procs.is_main:
        return result
    train_metrics = {
        **train_metrics,
        "precision": run.precision.mode,
        "global_step": state.global_step,
    }
    write_json(output_dir / "train_results.json", train_metrics)
    if run.validation:
        # The held-out split, so `anxin eval --data OUTPUT_DIR/validation.jsonl` scores exactly it.
        write_jsonl(output_dir / VALIDATION_FILE, run.validation)
    if eval_metrics is not None:
        write_json(output_dir / "eval_results.json", eval_metrics)
    if run.cfg.output.plot_loss:
        from anxin.plot import plot_loss, plot_rewards

        plot_loss(output_dir)
        plot_rewards(output_dir)  # preference training: rewards beside the loss
    write_run_card(run, status="finished", ddp=agreement, result=result)
    result.files = sorted(p.name for p in output_dir.iterdir())
    _report(result)
    return result


def save_final_model(run: Run, output_dir: Path) -> None:
    """The adapter (or full model), tokenizer and template card, moved into place file by file
    only once all are written, so output_dir never holds a half-saved adapter."""
    from anxin.template import save_template_card

    staging = output_dir / FINAL_TMP
    if run.cfg.method.pissa_init:
        save_converted_pissa(run, staging, output_dir)
    else:
        run.trainer.save_model(str(staging))  # every process takes part (DeepSpeed gathers)
    if run.procs.is_main:
        run.tokenizer.save_pretrained(staging)
        save_template_card(staging, run.tokenizer, run.template_name, run.cfg.model.default_system)
        for item in staging.iterdir():
            target = output_dir / item.name
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(item, target)
        shutil.rmtree(staging, ignore_errors=True)
    run.trainer.accelerator.wait_for_everyone()


def save_converted_pissa(run: Run, staging: Path, output_dir: Path) -> None:
    """The PiSSA adapter saved as its change from initialisation: a plain LoRA adapter (rank
    2r) that loads on the original base model, as LLaMA-Factory's pissa_convert does."""
    from anxin.train.build import PISSA_INIT

    model = run.trainer.accelerator.unwrap_model(run.trainer.model)
    model.save_pretrained(
        staging,
        selected_adapters=["default"],
        path_initial_model_for_weight_conversion=str(output_dir / PISSA_INIT),
        is_main_process=run.procs.is_main,
    )


def ranks_agree(run: Run) -> dict | None:
    """In a multi-process run, check every process ended with the same trained weights."""
    import hashlib

    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or run.cfg.train.deepspeed:
        return None
    digest = hashlib.sha256()
    for name, param in run.trainer.model.named_parameters():
        if param.requires_grad:
            digest.update(name.encode())
            digest.update(param.detach().float().cpu().numpy().tobytes())
    digests: list[str | None] = [None] * dist.get_world_size()
    dist.all_gather_object(digests, digest.hexdigest())
    agree = len(set(digests)) == 1
    if not agree and run.procs.is_main:
        print("anxin: warning: processes ended with different weights", file=sys.stderr)
    return {"world_size": len(digests), "trained_weights_sha256": digests, "ranks_agree": agree}


def write_run_card(run: Run, status: str, ddp: dict | None = None, result=None) -> None:
    """run.json: the resolved config, versions, seed, data hashes and machine of this run."""
    from anxin.machine import versions
    from anxin.train.environment import describe_machine

    card = {
        "status": status,
        "started_at": run.started_at,
        "finished_at": time.strftime("%FT%T") if status == "finished" else None,
        "seed": run.cfg.train.seed,
        "config": flatten(run.cfg),
        "model_path": run.model_path,
        "template": run.template_name,
        "trainable_parameters": run.trainable_params,
        "resumed_from": str(run.resume_from) if run.resume_from else None,
        "data": run.data_card,
        "machine": describe_machine(run.precision, run.threads, run.procs),
        "versions": versions(
            ("anxin", "torch", "transformers", "peft", "trl", "accelerate", "deepspeed")
        ),
    }
    if ddp is not None:
        card["ddp"] = ddp
    if result is not None:
        card["result"] = {
            k: v for k, v in asdict(result).items() if k not in ("files", "output_dir")
        }
    write_json(Path(run.cfg.output.output_dir) / RUN_CARD, card)


def _report(result: TrainResult) -> None:
    parts = [f"{result.global_step} steps in {result.train_runtime_s:.0f} s"]
    if result.tokens_per_s:
        parts.append(f"{result.tokens_per_s:.0f} tok/s")
    if result.train_loss is not None:
        parts.append(f"train_loss {result.train_loss:.4f}")
    if result.eval_loss is not None:
        parts.append(f"eval_loss {result.eval_loss:.4f}")
    print(f"anxin: done: {', '.join(parts)}; saved to {result.output_dir}", file=sys.stderr)


# --- the command ------------------------------------------------------------------------------

EPILOG = """\
examples:
  anxin train configs/smollm2-135m/lora_sft.yaml
  anxin train configs/smollm2-135m/lora_sft.yaml max_steps=5 output_dir=saves/try
  anxin train configs/smollm2-135m/lora_sft.yaml resume_from_checkpoint=true
  anxin train configs/smollm2-135m/dpo.yaml          # preference pairs, after SFT
  torchrun --nproc_per_node=2 -m anxin train configs/llama3-8b-instruct/lora_sft.yaml

The YAML file uses LLaMA-Factory's key names; key=value pairs after it override the file.
A run writes to output_dir: the adapter, checkpoint-N/, trainer_log.jsonl, train_results.json,
eval_results.json, run.json and (plot_loss: true) training_loss.png, training_eval_loss.png
(and training_rewards.png for dpo and kto); with do_predict generated_predictions.jsonl and
predict_results.json.

keys:
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "LoRA fine-tuning (stage sft, or dpo/kto on preference data) from a "
        "LLaMA-Factory-style YAML config."
    )
    parser.epilog = EPILOG + describe_config(TrainConfig)
    parser.add_argument("config", nargs="?", help="YAML config file (LLaMA-Factory key names)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="override a config key")


def main(args: argparse.Namespace) -> int:
    config, overrides = args.config, list(args.overrides)
    if config and "=" in config and not Path(config).is_file():
        config, overrides = None, [config, *overrides]  # only overrides were given
    cfg = load_train_config(config, overrides)
    result = train(cfg)
    _close_process_group()
    if os.environ.get("RANK", "0") == "0":
        print(result.output_dir)
    return 0


def _close_process_group() -> None:
    """Under torchrun, shut the gloo/NCCL group down before exit: left to interpreter teardown
    it can abort a rank ("terminate called without an active exception") after a good run."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
