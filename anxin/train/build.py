"""The HF pieces of a run, built from a TrainConfig: TrainingArguments, the model with its LoRA
adapters, and the Trainer with anxin's callbacks. The only place our config's vocabulary meets
transformers' and peft's.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from anxin.errors import ConfigError
from anxin.train.config import TrainConfig


def training_arguments(cfg: TrainConfig, precision, has_validation: bool):
    """HF TrainingArguments from our config: the only place the two vocabularies meet."""
    import torch
    from transformers import TrainingArguments

    t, e, o = cfg.train, cfg.eval, cfg.output
    cuda = torch.cuda.is_available()
    evaluate = has_validation and e.eval_strategy != "no"
    report_to = [] if o.report_to == "none" else [o.report_to]
    return TrainingArguments(
        output_dir=o.output_dir,
        per_device_train_batch_size=t.per_device_train_batch_size,
        per_device_eval_batch_size=e.per_device_eval_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        learning_rate=t.learning_rate,
        lr_scheduler_type=t.lr_scheduler_type,
        warmup_steps=t.warmup_steps or t.warmup_ratio,
        num_train_epochs=t.num_train_epochs,
        max_steps=t.max_steps,
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        seed=t.seed,
        bf16=precision.bf16,
        fp16=precision.fp16,
        use_cpu=not cuda,
        **_checkpointing(t.gradient_checkpointing),
        train_sampling_strategy="group_by_length" if t.group_by_length else "random",
        dataloader_num_workers=t.dataloader_num_workers,
        deepspeed=t.deepspeed,
        ddp_timeout=t.ddp_timeout,
        ddp_backend="gloo" if not cuda and int(os.environ.get("WORLD_SIZE", 1)) > 1 else None,
        ddp_find_unused_parameters=False,
        logging_strategy="steps",
        logging_steps=o.logging_steps,
        eval_strategy=e.eval_strategy if evaluate else "no",
        eval_steps=e.eval_steps,
        save_strategy=o.save_strategy,
        save_steps=o.save_steps,
        save_total_limit=None,  # anxin rotates after marking a checkpoint complete
        save_only_model=o.save_only_model,
        load_best_model_at_end=e.load_best_model_at_end and evaluate,
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        report_to=report_to,
        disable_tqdm=True,  # anxin's own progress display (callbacks.TrainerLog)
        prediction_loss_only=True,  # evaluation needs the loss, not every logit kept in memory
        remove_unused_columns=False,
        label_names=["labels"],
        include_num_input_tokens_seen="non_padding",
    )


def _checkpointing(enabled: bool) -> dict:
    """Activation (gradient) checkpointing, under the name transformers 5 uses."""
    if not enabled:
        return {"activation_checkpointing": False}
    return {
        "activation_checkpointing": True,
        "activation_checkpointing_kwargs": {"use_reentrant": False},
    }


def load_model(cfg: TrainConfig, model_path: str, precision, procs):
    """The base model, quantised for QLoRA if asked, wrapped with LoRA adapters."""
    import torch
    from transformers import AutoModelForCausalLM, set_seed

    lora = cfg.method.finetuning_type == "lora"
    kwargs: dict[str, Any] = {"trust_remote_code": cfg.model.trust_remote_code}
    # Frozen base weights can live in the compute dtype on a GPU (half the memory); the CPU
    # keeps the float32 residual stream and casts only the frozen matmul weights (below).
    # Trained weights stay float32.
    half = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision.mode)
    kwargs["dtype"] = (
        half if (lora and half is not None and torch.cuda.is_available()) else torch.float32
    )
    if cfg.model.quantization_bit:
        kwargs["quantization_config"] = quantization_config(cfg.model.quantization_bit, half)
        kwargs["device_map"] = {"": procs.local_rank}
    model = AutoModelForCausalLM.from_pretrained(model_path, **kwargs)
    model.config.use_cache = False  # the KV cache only helps generation
    if lora and precision.mode == "bf16" and kwargs["dtype"] == torch.float32:
        frozen_linear_weights_in_bf16(model)
    if cfg.model.quantization_bit:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=cfg.train.gradient_checkpointing
        )
    if not lora:
        return model
    from peft import LoraConfig, get_peft_model

    if cfg.train.gradient_checkpointing:
        model.enable_input_require_grads()
    targets = cfg.method.lora_target
    set_seed(cfg.train.seed)  # the same LoRA initialisation for the same seed
    lora_config = LoraConfig(
        task_type="CAUSAL_LM",
        r=cfg.method.lora_rank,
        lora_alpha=cfg.method.lora_alpha,
        lora_dropout=cfg.method.lora_dropout,
        target_modules="all-linear" if targets == ["all"] else list(targets),
    )
    try:
        return get_peft_model(model, lora_config)
    except ValueError as error:  # peft names the missing module; add where to look
        raise ConfigError(f"lora_target: {error}") from None


def frozen_linear_weights_in_bf16(model) -> None:
    """Store the frozen matmul weights in bf16 for a CPU LoRA run under bf16 autocast.

    Autocast casts every float32 weight to bf16 at each forward anyway (and keeps the copy for
    the backward), so storing them in bf16 gives the same numbers without the casts and with
    half their memory: measured on SmolLM2, peak memory 2.37 -> 1.83 GB and the step no
    slower. Embeddings, norms and the output layer (tied to the embeddings in small models)
    stay float32, so the residual stream keeps its precision.
    """
    import torch

    output_layer = model.get_output_embeddings()
    for module in model.modules():
        if isinstance(module, torch.nn.Linear) and module is not output_layer:
            module.to(torch.bfloat16)


def quantization_config(bits: int, compute_dtype):
    import torch
    from transformers import BitsAndBytesConfig

    if bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute_dtype or torch.bfloat16,
    )


def build_trainer(cfg, args, model, tokenizer, template_name, datasets, resume_from, callbacks):
    from transformers import Trainer
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from anxin.template import save_template_card
    from anxin.train.callbacks import CheckpointCompletion, ReturnFreedMemory, TrainerLog
    from anxin.train.data import LENGTH_MULTIPLE, PaddedBatches, accepts_trained_logits_only

    train_set, val_set = datasets
    elapsed_before = _elapsed_at(cfg, resume_from)
    system = cfg.model.default_system

    def template_card(folder: Path) -> None:
        save_template_card(folder, tokenizer, template_name, system)

    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train_set,
        eval_dataset=val_set.sorted_by_length() if len(val_set) else None,
        data_collator=PaddedBatches(tokenizer, accepts_trained_logits_only(model), LENGTH_MULTIPLE),
        processing_class=tokenizer,
        callbacks=[
            CheckpointCompletion(cfg.output.save_total_limit, extras=template_card),
            TrainerLog(cfg.output.output_dir, elapsed_before),
            ReturnFreedMemory(),
            *callbacks,
        ],
    )
    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    return trainer


def _elapsed_at(cfg: TrainConfig, resume_from: Path | None) -> float:
    """Seconds the run had trained before its checkpoint (from the trimmed log)."""
    from anxin.plot import read_log

    if resume_from is None:
        return 0.0
    try:
        entries = read_log(cfg.output.output_dir)
    except FileNotFoundError:
        return 0.0
    return max((e.get("elapsed_s", 0.0) for e in entries), default=0.0)
