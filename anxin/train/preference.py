"""Stage dpo and kto: TRL's DPOTrainer and KTOTrainer, fed by anxin's template, set from TrainConfig.

The trainers are TRL's, with these changes:
- the data arrives tokenised by anxin (anxin.train.preference_data), so TRL's own tokenising is
  skipped and masking and template are SFT's;
- ORPO and SimPO (LLaMA-Factory's `pref_loss: orpo | simpo`, reference-free, on the mean log-
  probability per answer token) are computed here: TRL's DPOTrainer has no such loss types;
- the reference is the starting model itself, never a second copy in memory: the base with
  the adapter disabled for a new adapter, or a frozen copy of the adapter named in
  adapter_name_or_path (TRL keeps it as a second, "ref" adapter: a few MB) when training
  continues an SFT adapter, so the reference is the SFT model DPO is meant to stay near;
- only the trained adapter is saved (the "ref" copy is rebuilt from adapter_name_or_path);
- DPO reads each pair's prompt once (anxin.train.shared_prompt), with the same log-probabilities.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
import torch.nn.functional as F
from trl import DPOConfig, DPOTrainer, KTOConfig, KTOTrainer

REFERENCE_ADAPTER = "ref"  # the name TRL gives the frozen copy of a loaded adapter


def preference_arguments(cfg, training_kwargs: dict):
    """DPOConfig or KTOConfig: anxin's TrainingArguments plus the preference settings."""
    from anxin.train.data import LENGTH_MULTIPLE

    p = cfg.preference
    common = {
        **training_kwargs,
        "beta": p.pref_beta,
        "max_length": cfg.data.cutoff_len,
        "pad_to_multiple_of": LENGTH_MULTIPLE,
        # Full fine-tuning has no adapter to switch off: the reference log-probabilities are
        # computed once before training instead of keeping a second model in memory.
        "precompute_ref_log_probs": cfg.method.finetuning_type == "full",
        "disable_dropout": True,
    }
    if cfg.method.stage == "kto":
        return KTOConfig(
            **{
                **common,
                # KTO's KL term pairs each prompt with a neighbour's answer in a fixed order,
                # so the examples are shuffled once by seed (preference_data.unpaired) instead.
                "train_sampling_strategy": "sequential",
            },
            desirable_weight=p.kto_chosen_weight,
            undesirable_weight=p.kto_rejected_weight,
        )
    losses, weights = dpo_losses(p)
    return DPOConfig(
        **common,
        loss_type=losses,
        loss_weights=weights,
        label_smoothing=p.dpo_label_smoothing,
        ld_alpha=p.ld_alpha,
    )


def dpo_losses(p) -> tuple[list[str], list[float]]:
    """TRL's loss types and weights for pref_loss, dpo_label_smoothing and pref_ftx.

    Conservative DPO (LLaMA-Factory's dpo_label_smoothing ε) is (1-ε)·L(Δ) + ε·L(-Δ) with
    L = -log σ(β·). TRL's "robust" loss is ((1-ε)·L(Δ) - ε·L(-Δ)) / (1-2ε), so the same loss
    is 2(1-ε)·sigmoid - (1-2ε)·robust. pref_ftx adds TRL's "sft" loss (the mean negative log-
    likelihood of the chosen answers' tokens). ORPO and SimPO are computed by AnxinDPOTrainer;
    TRL only needs a placeholder there.
    """
    if p.pref_loss in REFERENCE_FREE:
        return ["sigmoid"], [1.0]
    losses, weights = [p.pref_loss], [1.0]
    if p.dpo_label_smoothing:
        eps = p.dpo_label_smoothing
        losses, weights = ["sigmoid", "robust"], [2 * (1 - eps), -(1 - 2 * eps)]
    if p.pref_ftx:
        losses, weights = [*losses, "sft"], [*weights, p.pref_ftx]
    return losses, weights


class _PreTokenized:
    """Keep anxin's rendering (TRL would tokenise again) and save only the trained adapter."""

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        return dataset

    def create_model_card(self, *args, **kwargs):
        """TRL writes a hub README into output_dir at each checkpoint; anxin never uploads."""

    def _save(self, output_dir: str | None = None, state_dict=None):
        super()._save(output_dir, state_dict)
        # PEFT saves every adapter; the frozen reference copy lives in a subfolder of its name.
        shutil.rmtree(Path(output_dir or self.args.output_dir) / REFERENCE_ADAPTER, True)


# --- DPO, with ORPO and SimPO ---------------------------------------------------------------

REFERENCE_FREE = ("orpo", "simpo")


class AnxinDPOTrainer(_PreTokenized, DPOTrainer):
    """TRL's DPOTrainer; `reference_free` ("orpo", "simpo" or None) picks LLaMA-Factory's losses
    that need no reference, with `simpo_gamma` and `pref_ftx` as there."""

    def __init__(self, *args, reference_free=None, simpo_gamma=0.5, pref_ftx=0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.reference_free = reference_free
        self.simpo_gamma = simpo_gamma
        self.pref_ftx = pref_ftx

    def _compute_loss(self, model, inputs, return_outputs):
        if self.reference_free is None:
            return super()._compute_loss(model, inputs, return_outputs)
        chosen, rejected = self._mean_answer_logps(model, inputs)
        if self.reference_free == "orpo":
            loss = orpo_loss(chosen, rejected, self.beta)
        else:
            loss = simpo_loss(chosen, rejected, self.beta, self.simpo_gamma)
        loss = loss - self.pref_ftx * chosen  # LLaMA-Factory's SFT term on the mean log-prob
        self._log_reward_metrics(chosen.detach(), rejected.detach())
        return loss.mean()

    def _mean_answer_logps(self, model, inputs):
        """Mean log-probability per answer token of each chosen and rejected answer."""
        completion = inputs["completion_mask"]
        labels = inputs["input_ids"].masked_fill(completion == 0, -100)
        from anxin.train.shared_prompt import PACKED_KEYS

        packed = {key: inputs[key] for key in PACKED_KEYS if key in inputs}
        outputs = model(
            input_ids=inputs["input_ids"],
            attention_mask=inputs["attention_mask"],
            labels=labels,
            fused_lm_head=True,
            use_cache=False,
            **packed,
        )
        mask = completion[:, 1:]
        per_token = outputs.log_probs[:, -mask.size(1) :]
        mean = (per_token * mask).sum(1) / mask.sum(1).clamp(min=1)
        return mean.chunk(2, dim=0)  # the batch is [chosen..., rejected...]

    def _log_reward_metrics(self, chosen, rejected):
        """The rewards LLaMA-Factory logs for these losses: β × mean log-probability."""
        mode = "train" if self.model.training else "eval"
        gather = self.accelerator.gather_for_metrics
        chosen_rewards, rejected_rewards = self.beta * chosen, self.beta * rejected
        metrics = self._metrics[mode]
        metrics["rewards/chosen"].append(gather(chosen_rewards).mean().item())
        metrics["rewards/rejected"].append(gather(rejected_rewards).mean().item())
        accuracy = (chosen_rewards > rejected_rewards).float()
        metrics["rewards/accuracies"].append(gather(accuracy).mean().item())
        metrics["rewards/margins"].append(gather(chosen_rewards - rejected_rewards).mean().item())
        metrics["logps/chosen"].append(gather(chosen).mean().item())
        metrics["logps/rejected"].append(gather(rejected).mean().item())


def orpo_loss(chosen, rejected, beta: float):
    """ORPO: the chosen answer's NLL plus β × -log σ(log odds ratio), on mean log-probs."""
    log_odds = (chosen - rejected) - (
        torch.log1p(-torch.exp(chosen)) - torch.log1p(-torch.exp(rejected))
    )
    return -chosen + beta * -F.logsigmoid(log_odds)


def simpo_loss(chosen, rejected, beta: float, gamma: float):
    """SimPO: -log σ(β·(mean log-prob margin) - γ)."""
    return -F.logsigmoid(beta * (chosen - rejected) - gamma)


# --- KTO --------------------------------------------------------------------------------------


class AnxinKTOTrainer(_PreTokenized, KTOTrainer):
    """TRL's KTOTrainer on anxin's examples. Its KL term scores each prompt with another
    example's answer; TRL takes that answer from the same batch, so it refuses batches of one.
    Here each example takes the previous example's answer in the (seeded, fixed) training
    order, as LLaMA-Factory does, which works for every batch size: its KTO recipes use 1."""

    def __init__(self, *args, **kwargs):
        training_args = kwargs["args"]
        batch = training_args.per_device_train_batch_size
        # TRL's guard is for its in-batch pairing, which _prepare_dataset replaces.
        training_args.per_device_train_batch_size = max(batch, 2)
        try:
            super().__init__(*args, **kwargs)
        finally:
            training_args.per_device_train_batch_size = batch
        self._train_batch_size = training_args.train_batch_size

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        if not self.calculate_KL or len(dataset) == 0:
            return dataset
        answers = dataset["completion_ids"]
        return dataset.add_column("KL_completion_ids", [answers[-1], *answers[:-1]])


# --- building ---------------------------------------------------------------------------------


def _dpo_trainer(cfg, args, tokenizer, model, common: dict):
    """AnxinDPOTrainer, reading each pair's prompt once when the model allows it."""
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    from anxin.train.shared_prompt import (
        SharedPromptBatches,
        add_shared_prompt_forward,
        can_share_prompt,
    )

    p = cfg.preference
    shared = p.shared_prompt and can_share_prompt(model)
    pad_id = (
        tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    )
    if shared:
        two_rows = DataCollatorForPreference(
            pad_token_id=pad_id, max_length=args.max_length,
            pad_to_multiple_of=args.pad_to_multiple_of,
        )  # fmt: skip
        common["data_collator"] = SharedPromptBatches(two_rows, pad_id, args.pad_to_multiple_of)
    trainer = AnxinDPOTrainer(
        **common,
        reference_free=p.pref_loss if p.pref_loss in REFERENCE_FREE else None,
        simpo_gamma=p.simpo_gamma,
        pref_ftx=p.pref_ftx,
    )
    if shared:
        unwrapped = trainer.accelerator.unwrap_model(trainer.model)
        base = unwrapped.get_base_model() if hasattr(unwrapped, "get_base_model") else unwrapped
        add_shared_prompt_forward(base)  # over the fused head TRL has just added
    return trainer


def build_preference_trainer(cfg, args, model, tokenizer, datasets, callbacks, fresh_adapter):
    """The TRL trainer for cfg's stage over pre-tokenised (train, validation) rows."""
    from datasets import Dataset

    train_rows, val_rows = datasets
    train_set = Dataset.from_list(train_rows)
    val_set = Dataset.from_list(val_rows) if val_rows else None
    common = dict(
        model=model,
        args=args,
        train_dataset=train_set,
        eval_dataset=val_set,
        processing_class=tokenizer,
        callbacks=list(callbacks),
    )
    if cfg.method.stage == "kto":
        trainer = AnxinKTOTrainer(**common)
    else:
        trainer = _dpo_trainer(cfg, args, tokenizer, model, common)
    peft_model = trainer.accelerator.unwrap_model(trainer.model)
    if fresh_adapter and REFERENCE_ADAPTER in getattr(peft_model, "peft_config", {}):
        # A new adapter starts as the base model: disabling it is the reference, at no cost.
        peft_model.delete_adapter(REFERENCE_ADAPTER)
    return trainer
