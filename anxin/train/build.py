"""The HF pieces of a run, built from a TrainConfig: TrainingArguments, the model with its LoRA
adapters, and the Trainer with anxin's callbacks. The only place our config's vocabulary meets
transformers' and peft's.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from anxin.errors import ConfigError
from anxin.train.config import TrainConfig


def training_arguments(cfg: TrainConfig, precision, has_validation: bool):
    """HF TrainingArguments from our config (TRL's DPOConfig or KTOConfig for dpo and kto)."""
    from transformers import TrainingArguments

    kwargs = training_kwargs(cfg, precision, has_validation)
    if cfg.method.stage != "sft":
        from anxin.train.preference import preference_arguments

        return preference_arguments(cfg, kwargs)
    return TrainingArguments(**kwargs)


def training_kwargs(cfg: TrainConfig, precision, has_validation: bool) -> dict:
    """TrainingArguments' values from our config: the only place the two vocabularies meet."""
    from anxin.train.environment import uses_cuda

    t, e, o = cfg.train, cfg.eval, cfg.output
    cuda = uses_cuda(cfg)
    evaluate = has_validation and e.eval_strategy != "no"
    report_to = [] if o.report_to == "none" else [o.report_to]
    optimizer = {"optim": t.optim} if t.optim else {}
    return dict(
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
        **optimizer,
        adam_beta1=t.adam_beta1,
        adam_beta2=t.adam_beta2,
        adam_epsilon=t.adam_epsilon,
        lr_scheduler_kwargs=t.lr_scheduler_kwargs or {},
        neftune_noise_alpha=t.neftune_noise_alpha,
        seed=t.seed,
        bf16=precision.bf16,
        fp16=precision.fp16,
        use_cpu=not cuda,
        **_checkpointing(t.gradient_checkpointing),
        train_sampling_strategy=_sampling(t),
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
        run_name=o.run_name,
        disable_tqdm=True,  # anxin's own progress display (callbacks.TrainerLog)
        prediction_loss_only=True,  # evaluation needs the loss, not every logit kept in memory
        remove_unused_columns=False,
        label_names=["labels"],
        include_num_input_tokens_seen="non_padding",
    )


def _sampling(t) -> str:
    if t.group_by_length:
        return "group_by_length"
    return "sequential" if t.disable_shuffling else "random"


def _checkpointing(enabled: bool) -> dict:
    """Activation (gradient) checkpointing, under the name transformers 5 uses."""
    if not enabled:
        return {"activation_checkpointing": False}
    return {
        "activation_checkpointing": True,
        "activation_checkpointing_kwargs": {"use_reentrant": False},
    }


def load_model(cfg: TrainConfig, model_path: str, precision, procs):
    """The base model, quantised for QLoRA if asked, with its LoRA adapter: a new one, or the
    one named by adapter_name_or_path (trainable when training)."""
    import torch
    from transformers import AutoModelForCausalLM

    from anxin.train.environment import uses_cuda
    from anxin.train.lean_mlp import lean_mlps

    lora = cfg.method.finetuning_type == "lora"
    kwargs: dict[str, Any] = {"trust_remote_code": cfg.model.trust_remote_code}
    # Frozen base weights can live in the compute dtype on a GPU (half the memory); the CPU
    # keeps the float32 residual stream and casts only the frozen matmul weights (below).
    # Trained weights stay float32.
    half = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision.mode)
    on_gpu = uses_cuda(cfg)
    kwargs["dtype"] = half if (lora and half is not None and on_gpu) else torch.float32
    if cfg.model.quantization_bit:
        kwargs["quantization_config"] = quantization_config(cfg.model, half)
        kwargs["device_map"] = {"": procs.local_rank}
    model = AutoModelForCausalLM.from_pretrained(model_path, **kwargs)
    model.config.use_cache = False  # the KV cache only helps generation
    lean_mlps(model)  # a third less MLP activation kept for backward, same numbers
    if lora and precision.mode == "bf16" and kwargs["dtype"] == torch.float32:
        frozen_linear_weights_in_bf16(model)
    if cfg.model.quantization_bit:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=cfg.train.gradient_checkpointing
        )
    if not lora:
        return model
    if cfg.train.gradient_checkpointing:
        model.enable_input_require_grads()
    if cfg.model.adapter_name_or_path:
        return load_adapter(model, cfg.model.adapter_name_or_path, cfg.method.do_train)
    return new_adapter(model, cfg)


def new_adapter(model, cfg: TrainConfig):
    """Wrap `model` with a new LoRA adapter as cfg.method says (DoRA, rsLoRA, PiSSA)."""
    from peft import LoraConfig, get_peft_model
    from transformers import set_seed

    m = cfg.method
    targets = m.lora_target
    init = True
    if m.pissa_init:
        init = "pissa" if m.pissa_iter == -1 else f"pissa_niter_{m.pissa_iter}"
    set_seed(cfg.train.seed)  # the same initialisation for the same seed (PiSSA's too)
    lora_config = LoraConfig(
        task_type="CAUSAL_LM",
        r=m.lora_rank,
        lora_alpha=m.lora_alpha,
        lora_dropout=m.lora_dropout,
        target_modules="all-linear" if targets == ["all"] else list(targets),
        use_rslora=m.use_rslora,
        use_dora=m.use_dora,
        init_lora_weights=init,
    )
    try:
        return get_peft_model(model, lora_config)
    except ValueError as error:  # peft names the missing module; add where to look
        raise ConfigError(f"lora_target: {error}") from None


def load_adapter(model, folder: str, trainable: bool):
    """`model` with the LoRA adapter saved in `folder` (an SFT run's output_dir)."""
    from peft import PeftModel

    if not (Path(folder) / "adapter_config.json").is_file():
        raise ConfigError(
            f"adapter_name_or_path: {folder} holds no adapter_config.json (name the output_dir "
            "of a LoRA training run)"
        )
    return PeftModel.from_pretrained(model, folder, is_trainable=trainable)


PISSA_INIT = "pissa_init"  # the untrained PiSSA adapter, kept to convert the trained one


def save_pissa_init(model, output_dir: str | Path) -> Path:
    """Keep the adapter as PiSSA initialised it: the final adapter is saved as its difference
    from this one, a plain LoRA adapter that loads on the original base model."""
    folder = Path(output_dir) / PISSA_INIT
    model.save_pretrained(folder)
    return folder


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


def quantization_config(model_args, compute_dtype):
    """bitsandbytes settings for quantization_bit (quantization_method bnb)."""
    import torch
    from transformers import BitsAndBytesConfig

    if model_args.quantization_bit == 8:
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=model_args.quantization_type,
        bnb_4bit_use_double_quant=model_args.double_quantization,
        bnb_4bit_compute_dtype=compute_dtype or torch.bfloat16,
    )


def build_trainer(cfg, args, model, tokenizer, template_name, datasets, resume_from, callbacks):
    """The Trainer for cfg's stage (HF's for sft, TRL's for dpo and kto) with anxin's callbacks."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    anxin_callbacks = [
        *run_callbacks(cfg, tokenizer, template_name, resume_from),
        *callbacks,
    ]
    if cfg.method.stage == "sft":
        trainer = _sft_trainer(args, model, tokenizer, datasets, anxin_callbacks)
    else:
        from anxin.train.preference import build_preference_trainer

        fresh = cfg.model.adapter_name_or_path is None and not cfg.method.pissa_init
        trainer = build_preference_trainer(
            cfg, args, model, tokenizer, datasets, anxin_callbacks, fresh_adapter=fresh
        )
    if cfg.method.loraplus_lr_ratio:
        trainer.optimizer = loraplus_optimizer(cfg, trainer.model)
    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    return trainer


def _sft_trainer(args, model, tokenizer, datasets, callbacks):
    from anxin.train.data import LENGTH_MULTIPLE, PaddedBatches, accepts_trained_logits_only
    from anxin.train.fused_loss import FusedLossTrainer, plain_loss_reason

    train_set, val_set = datasets
    reason = plain_loss_reason(model, args)
    if reason and args.process_index == 0:
        print(f"anxin: loss from full logits ({reason})", file=sys.stderr, flush=True)
    return FusedLossTrainer(
        model=model,
        args=args,
        train_dataset=train_set,
        eval_dataset=val_set.sorted_by_length() if len(val_set) else None,
        data_collator=PaddedBatches(tokenizer, accepts_trained_logits_only(model), LENGTH_MULTIPLE),
        processing_class=tokenizer,
        callbacks=callbacks,
        plain_loss_reason=reason,
    )


def run_callbacks(cfg, tokenizer, template_name, resume_from) -> list:
    """anxin's callbacks: checkpoints marked complete, the run log, memory, early stopping."""
    from transformers import EarlyStoppingCallback

    from anxin.template import save_template_card
    from anxin.train.callbacks import CheckpointCompletion, ReturnFreedMemory, TrainerLog

    system = cfg.model.default_system

    def template_card(folder: Path) -> None:
        save_template_card(folder, tokenizer, template_name, system)

    callbacks = [
        CheckpointCompletion(cfg.output.save_total_limit, extras=template_card),
        TrainerLog(cfg.output.output_dir, _elapsed_at(cfg, resume_from)),
        ReturnFreedMemory(),
    ]
    if cfg.eval.early_stopping_steps:
        callbacks.append(EarlyStoppingCallback(cfg.eval.early_stopping_steps))
    return callbacks


def loraplus_optimizer(cfg, model):
    """LoRA+: AdamW whose lora_B matrices learn loraplus_lr_ratio times faster than lora_A.

    Set as the trainer's optimizer before training starts, so the Trainer builds the learning
    rate schedule around it and saves and restores its state with every checkpoint.
    """
    import torch
    from peft.optimizers import create_loraplus_optimizer

    t = cfg.train
    return create_loraplus_optimizer(
        model,
        torch.optim.AdamW,
        lr=t.learning_rate,
        loraplus_lr_ratio=cfg.method.loraplus_lr_ratio,
        loraplus_lr_embedding=cfg.method.loraplus_lr_embedding,
        weight_decay=t.weight_decay,
        betas=(t.adam_beta1, t.adam_beta2),
        eps=t.adam_epsilon,
    )


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
