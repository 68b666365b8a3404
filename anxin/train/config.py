"""The `anxin train` config: one dataclass per section, LLaMA-Factory's key names, checked early.

Every check here runs when the config is built, before any data or model is read, so a bad
value costs the user one clear line instead of a model load. Checks that depend on the machine
(a GPU for QLoRA, an installed DeepSpeed) live in `anxin.train.environment`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from anxin.config import arg, load_config
from anxin.template import DEFAULT_SYSTEM_PROMPT
from anxin.train.llamafactory import llamafactory_key

SCHEDULERS = (
    "linear",
    "cosine",
    "cosine_with_restarts",
    "cosine_with_min_lr",
    "polynomial",
    "constant",
    "constant_with_warmup",
    "inverse_sqrt",
    "warmup_stable_decay",
)
STRATEGIES = ("no", "steps", "epoch")
STAGES = ("sft", "dpo", "kto")
PREF_LOSSES = ("sigmoid", "hinge", "ipo", "orpo", "simpo")
DEFAULT_VAL_SIZE = 0.1
REPORTERS = ("none", "tensorboard", "wandb", "mlflow", "all")


def _positive(name: str, value: float) -> None:
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")


def _at_least(name: str, value: float, low: float) -> None:
    if value < low:
        raise ValueError(f"{name} must be ≥ {low}, got {value}")


def _one_of(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


@dataclass
class ModelArgs:
    """The base model, its chat template and the persona."""

    model_name_or_path: str = arg(
        "smollm2", "base model: a known name (smollm2), an HF folder, a .gguf file or a hub id"
    )
    template: str = arg("default", "chat template: default (the tokenizer's own), llama3 or chatml")
    default_system: str | None = arg(
        DEFAULT_SYSTEM_PROMPT,
        "system prompt added to conversations that have none (null: add nothing); "
        "chat uses the same one, so training and inference see the same prefix",
    )
    trust_remote_code: bool = arg(False, "allow model code from the model folder or hub")
    adapter_name_or_path: str | None = arg(
        None,
        "a LoRA adapter folder to start from (an SFT adapter before dpo or kto): training "
        "continues it (its rank and targets are its own; lora_* keys shape new adapters), "
        "do_predict without do_train generates with it",
    )
    quantization_bit: int | None = arg(
        None, "4 or 8: QLoRA, base weights quantised by bitsandbytes (CUDA GPU only)"
    )
    quantization_method: str = arg(
        "bnb", "how quantization_bit quantises: bnb (bitsandbytes, the only one anxin has)"
    )
    quantization_type: str = arg("nf4", "4-bit data type for quantization_bit 4: nf4 or fp4")
    double_quantization: bool = arg(True, "4-bit: quantise the quantisation constants too")

    def __post_init__(self):
        if not self.model_name_or_path:
            raise ValueError("model_name_or_path is empty")
        if self.adapter_name_or_path is not None and "," in self.adapter_name_or_path:
            raise ValueError(
                "adapter_name_or_path: anxin starts from one adapter; merge the others into the "
                "base first (anxin merge) and name the merged folder as model_name_or_path"
            )
        if self.quantization_bit not in (None, 4, 8):
            raise ValueError(f"quantization_bit must be 4 or 8, got {self.quantization_bit}")
        if self.quantization_method == "bitsandbytes":  # LLaMA-Factory's examples spell it so
            self.quantization_method = "bnb"
        if self.quantization_method != "bnb":
            raise ValueError(
                f"quantization_method {self.quantization_method!r}: anxin quantises with "
                "bitsandbytes only (bnb, with quantization_bit 4 or 8)"
            )
        _one_of("quantization_type", self.quantization_type, ("nf4", "fp4"))
        if self.default_system == "":
            self.default_system = None


@dataclass
class LoraArgs:
    """The method: supervised fine-tuning with LoRA (or all weights)."""

    stage: str = arg(
        "sft",
        "sft (supervised fine-tuning on conversations), dpo (preference pairs: DPO, ORPO, "
        "SimPO by pref_loss) or kto (replies tagged good or bad)",
    )
    do_train: bool | None = arg(
        None, "train (null: true, unless do_predict asks only for predictions)"
    )
    finetuning_type: str = arg("lora", "lora (train small adapters) or full (every weight)")
    lora_rank: int = arg(8, "LoRA rank r")
    lora_alpha: int | None = arg(None, "LoRA scaling alpha (default: 2 × lora_rank)")
    lora_dropout: float = arg(0.0, "dropout on the LoRA input, in [0, 1)")
    lora_target: list[str] = arg(
        help="modules that get adapters: all (every linear layer but the output head) "
        "or a list such as q_proj,v_proj",
        factory=lambda: ["all"],
    )
    use_rslora: bool = arg(False, "rank-stabilised LoRA: scale by alpha/sqrt(r) instead of alpha/r")
    use_dora: bool = arg(False, "DoRA: train each weight's magnitude and direction apart")
    pissa_init: bool = arg(
        False,
        "PiSSA: start the adapter from the principal singular vectors of each weight; the "
        "saved adapter is converted to plain LoRA, so it loads on the original base model",
    )
    pissa_iter: int = arg(16, "PiSSA: fast-SVD iterations (-1: exact SVD, slow)")
    loraplus_lr_ratio: float | None = arg(
        None, "LoRA+: lora_B learns this many times faster than lora_A (16 in the paper)"
    )
    loraplus_lr_embedding: float = arg(1e-6, "LoRA+: learning rate of embedding adapters")

    def __post_init__(self):
        _one_of("stage", self.stage, STAGES)
        _one_of("finetuning_type", self.finetuning_type, ("lora", "full"))
        _positive("lora_rank", self.lora_rank)
        if self.lora_alpha is None:
            self.lora_alpha = 2 * self.lora_rank
        _positive("lora_alpha", self.lora_alpha)
        if not 0 <= self.lora_dropout < 1:
            raise ValueError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if not self.lora_target:
            raise ValueError("lora_target is empty: use all or name modules (q_proj,v_proj)")
        if "all" in self.lora_target and len(self.lora_target) > 1:
            raise ValueError("lora_target: use all on its own, or a list of module names")
        if self.use_dora and self.pissa_init:
            raise ValueError("use_dora and pissa_init are different adapters: choose one")
        if self.pissa_iter < -1 or self.pissa_iter == 0:
            raise ValueError(f"pissa_iter must be > 0 or -1 (exact SVD), got {self.pissa_iter}")
        if self.loraplus_lr_ratio is not None:
            _positive("loraplus_lr_ratio", self.loraplus_lr_ratio)


@dataclass
class PrefArgs:
    """Preference training (stage dpo or kto): how strongly to prefer, and from what."""

    pref_loss: str = arg(
        "sigmoid",
        "stage dpo: sigmoid (DPO), hinge, ipo, orpo or simpo (the last two need no reference)",
    )
    pref_beta: float = arg(
        0.1, "how far the model may move from the reference (higher: stay closer); DPO's beta"
    )
    pref_ftx: float = arg(
        0.0,
        "stage dpo: weight of the SFT loss on the chosen replies added to the preference "
        "loss, against forgetting (0: none)",
    )
    simpo_gamma: float = arg(0.5, "pref_loss simpo: the target reward margin")
    dpo_label_smoothing: float = arg(
        0.0, "pref_loss sigmoid: the share of pairs assumed mislabelled (robust cDPO), in [0, 0.5)"
    )
    ld_alpha: float | None = arg(
        None, "LD-DPO: weight of reply tokens past the shorter reply's length, in [0, 1]"
    )
    shared_prompt: bool = arg(
        True,
        "stage dpo: read each pair's prompt once, its two answers packed after it in one row "
        "(the same log-probabilities, fewer tokens); false: TRL's two rows per pair",
    )
    kto_chosen_weight: float = arg(1.0, "stage kto: weight of the losses on good replies")
    kto_rejected_weight: float = arg(1.0, "stage kto: weight of the losses on bad replies")

    def __post_init__(self):
        _one_of("pref_loss", self.pref_loss, PREF_LOSSES)
        _positive("pref_beta", self.pref_beta)
        _at_least("pref_ftx", self.pref_ftx, 0)
        _at_least("simpo_gamma", self.simpo_gamma, 0)
        if not 0 <= self.dpo_label_smoothing < 0.5:
            raise ValueError(
                f"dpo_label_smoothing must be in [0, 0.5), got {self.dpo_label_smoothing}"
            )
        if self.dpo_label_smoothing and self.pref_loss != "sigmoid":
            raise ValueError("dpo_label_smoothing applies to pref_loss: sigmoid only")
        if self.ld_alpha is not None and not 0 <= self.ld_alpha <= 1:
            raise ValueError(f"ld_alpha must be in [0, 1], got {self.ld_alpha}")
        if self.ld_alpha is not None and self.pref_loss in ("orpo", "simpo"):
            raise ValueError("ld_alpha applies to the losses with a reference, not orpo or simpo")
        _positive("kto_chosen_weight", self.kto_chosen_weight)
        _positive("kto_rejected_weight", self.kto_rejected_weight)


@dataclass
class DataArgs:
    """The conversations: which datasets, how many, how long."""

    dataset: str | None = arg(
        None, "dataset name(s) from DATASET_DIR/dataset_info.json, comma-separated"
    )
    dataset_dir: str = arg("data", "folder holding dataset_info.json and the data files")
    eval_dataset: str | None = arg(
        None, "dataset name(s) for validation instead of splitting off val_size"
    )
    val_size: float | None = arg(
        None,
        "fraction of the data held out for validation, in [0, 1) (null: 0.1, or 0 when "
        "eval_dataset is given)",
    )
    max_samples: int | None = arg(
        None, "use at most this many conversations (chosen by seed; null: all)"
    )
    cutoff_len: int = arg(
        2048, "max tokens per conversation; longer ones lose their oldest whole turns"
    )
    train_on_prompt: bool = arg(
        False, "stage sft: train on every token, the prompt and persona too (not only answers)"
    )
    mask_history: bool = arg(
        False, "stage sft: train only each conversation's last answer (earlier ones are context)"
    )
    overwrite_cache: bool = arg(False, "tokenise again even if a cached copy exists")
    preprocessing_num_workers: int | None = arg(
        None, "accepted for LLaMA-Factory files; anxin tokenises once and caches the result"
    )

    def __post_init__(self):
        if self.val_size is None:  # the mission's default: a 10 % validation split
            self.val_size = 0.0 if self.eval_dataset else DEFAULT_VAL_SIZE
        if not 0 <= self.val_size < 1:
            raise ValueError(f"val_size must be a fraction in [0, 1), got {self.val_size}")
        if self.val_size and self.eval_dataset:
            raise ValueError("set val_size or eval_dataset, not both")
        if self.max_samples is not None:
            _positive("max_samples", self.max_samples)
        _at_least("cutoff_len", self.cutoff_len, 16)

    @property
    def has_validation(self) -> bool:
        return bool(self.val_size or self.eval_dataset)


@dataclass
class TrainArgs:
    """Optimisation: batch, learning rate, schedule, precision, hardware."""

    per_device_train_batch_size: int = arg(1, "conversations per batch on each device")
    gradient_accumulation_steps: int = arg(8, "batches added up before each optimizer step")
    learning_rate: float = arg(5e-5, "peak learning rate (AdamW)")
    lr_scheduler_type: str = arg("cosine", f"learning rate schedule: {', '.join(SCHEDULERS)}")
    warmup_steps: int = arg(0, "optimizer steps of linear warmup")
    warmup_ratio: float = arg(0.0, "warmup as a fraction of all steps (instead of warmup_steps)")
    num_train_epochs: float = arg(3.0, "passes over the training data")
    max_steps: int = arg(-1, "stop after this many optimizer steps (-1: use num_train_epochs)")
    weight_decay: float = arg(0.0, "AdamW weight decay")
    max_grad_norm: float = arg(1.0, "gradient clipping norm (0: no clipping)")
    seed: int = arg(42, "seed for sampling, the split, LoRA initialisation and data order")
    bf16: bool | str = arg(
        "auto",
        "bfloat16 mixed precision: true, false, or auto (on with a CUDA GPU that has it, "
        "and on CPUs with native bf16; float32 otherwise)",
    )
    fp16: bool = arg(False, "float16 mixed precision (CUDA GPU only)")
    gradient_checkpointing: bool = arg(False, "recompute activations to save memory")
    group_by_length: bool = arg(
        False, "batch conversations of similar length together (less padding when batch > 1)"
    )
    disable_shuffling: bool = arg(False, "train on the conversations in file order")
    optim: str | None = arg(
        None, "optimizer, by transformers' name (adamw_torch, adafactor, ...; null: its default)"
    )
    adam_beta1: float = arg(0.9, "AdamW beta1")
    adam_beta2: float = arg(0.999, "AdamW beta2")
    adam_epsilon: float = arg(1e-8, "AdamW epsilon")
    lr_scheduler_kwargs: dict | None = arg(
        None, "extra scheduler settings, e.g. {min_lr_rate: 0.1} for cosine_with_min_lr"
    )
    neftune_noise_alpha: float | None = arg(
        None, "NEFTune: noise added to the input embeddings while training (5 in the paper)"
    )
    use_cpu: bool = arg(False, "train on the CPU even when a GPU is present")
    torch_threads: int | None = arg(
        None, "CPU threads per process (default: physical cores / processes on this machine)"
    )
    dataloader_num_workers: int = arg(0, "worker processes that feed batches")
    deepspeed: str | None = arg(
        None, "DeepSpeed config JSON (configs/deepspeed/zero2.json or zero3.json)"
    )
    ddp_timeout: int = arg(1800, "seconds a process waits for the others in multi-process runs")

    def __post_init__(self):
        _positive("per_device_train_batch_size", self.per_device_train_batch_size)
        _positive("gradient_accumulation_steps", self.gradient_accumulation_steps)
        _positive("learning_rate", self.learning_rate)
        _one_of("lr_scheduler_type", self.lr_scheduler_type, SCHEDULERS)
        _at_least("warmup_steps", self.warmup_steps, 0)
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.warmup_steps and self.warmup_ratio:
            raise ValueError("set warmup_steps or warmup_ratio, not both")
        _positive("num_train_epochs", self.num_train_epochs)
        if self.max_steps == 0 or self.max_steps < -1:
            raise ValueError(f"max_steps must be > 0 or -1, got {self.max_steps}")
        _at_least("weight_decay", self.weight_decay, 0)
        _at_least("max_grad_norm", self.max_grad_norm, 0)
        if isinstance(self.bf16, str) and self.bf16 != "auto":
            raise ValueError(f"bf16 must be true, false or auto, got {self.bf16!r}")
        if self.fp16 and self.bf16 is True:
            raise ValueError("set bf16 or fp16, not both")
        if self.group_by_length and self.disable_shuffling:
            raise ValueError("set group_by_length or disable_shuffling, not both")
        for name in ("adam_beta1", "adam_beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        _positive("adam_epsilon", self.adam_epsilon)
        if self.neftune_noise_alpha is not None:
            _positive("neftune_noise_alpha", self.neftune_noise_alpha)
        if self.torch_threads is not None:
            _positive("torch_threads", self.torch_threads)
        _at_least("dataloader_num_workers", self.dataloader_num_workers, 0)
        if self.deepspeed and not Path(self.deepspeed).is_file():
            raise ValueError(f"deepspeed: config file not found: {self.deepspeed}")
        _positive("ddp_timeout", self.ddp_timeout)


@dataclass
class EvalArgs:
    """Validation during and after training."""

    per_device_eval_batch_size: int = arg(
        8, "conversations per evaluation batch (padded per batch)"
    )
    eval_strategy: str = arg(
        "steps", "when to evaluate: steps (every eval_steps), epoch, or no (only at the end)"
    )
    eval_steps: int | None = arg(None, "evaluate every this many steps (default: save_steps)")
    load_best_model_at_end: bool = arg(
        False, "finish with the checkpoint of lowest eval_loss (needs validation data)"
    )
    do_eval_generation: bool = arg(
        False,
        "at the end, generate replies for some validation turns and score them against the "
        "references (BLEU-4, ROUGE, Distinct; as `anxin eval`)",
    )
    eval_generation_turns: int = arg(20, "validation turns to generate for do_eval_generation")
    early_stopping_steps: int | None = arg(
        None,
        "stop when eval_loss has not improved for this many evaluations "
        "(needs load_best_model_at_end)",
    )

    def __post_init__(self):
        _positive("per_device_eval_batch_size", self.per_device_eval_batch_size)
        if self.early_stopping_steps is not None:
            _positive("early_stopping_steps", self.early_stopping_steps)
        _one_of("eval_strategy", self.eval_strategy, STRATEGIES)
        _positive("eval_generation_turns", self.eval_generation_turns)
        if self.eval_steps is not None:
            _positive("eval_steps", self.eval_steps)


@dataclass
class PredictArgs:
    """Predictions (do_predict): replies generated for the validation conversations, as
    LLaMA-Factory writes them. Defaults are LLaMA-Factory's generation settings."""

    do_predict: bool = arg(
        False,
        "generate the last reply of every validation conversation (eval_dataset or the "
        "val_size split) into generated_predictions.jsonl, scored in predict_results.json",
    )
    predict_with_generate: bool = arg(False, "must be true with do_predict (replies are generated)")
    do_sample: bool = arg(True, "sample replies (false: greedy)")
    temperature: float = arg(0.95, "sampling temperature")
    top_p: float = arg(0.7, "nucleus sampling: keep the smallest set of tokens with this mass")
    top_k: int = arg(50, "sample among the k most likely tokens (0: no limit)")
    max_new_tokens: int = arg(1024, "longest generated reply in tokens")
    repetition_penalty: float = arg(1.0, "above 1 discourages loops")

    def __post_init__(self):
        if self.do_predict and not self.predict_with_generate:
            raise ValueError(
                "do_predict needs predict_with_generate: true (the loss alone is the "
                "validation eval_loss, which training reports)"
            )
        _positive("temperature", self.temperature)
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        _at_least("top_k", self.top_k, 0)
        _positive("max_new_tokens", self.max_new_tokens)
        _positive("repetition_penalty", self.repetition_penalty)

    def generation_settings(self, seed: int) -> dict:
        """The Engine's settings for these values (temperature 0 is its greedy)."""
        return {
            "max_new_tokens": self.max_new_tokens,
            "temperature": self.temperature if self.do_sample else 0.0,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "repetition_penalty": self.repetition_penalty,
            "seed": seed,
        }


@dataclass
class OutputArgs:
    """What a run leaves behind, and resuming it."""

    output_dir: str = arg("saves/sft", "where the adapter, checkpoints, logs and plots go")
    overwrite_output_dir: bool = arg(
        False, "train into a non-empty output_dir (its checkpoints and log are removed first)"
    )
    logging_steps: int = arg(10, "log loss, learning rate and speed every this many steps")
    save_strategy: str = arg("steps", "when to write checkpoint-N/: steps, epoch or no")
    save_steps: int = arg(500, "write a checkpoint every this many steps")
    save_total_limit: int | None = arg(
        None, "keep only the newest this many checkpoints (the best one is kept too)"
    )
    save_only_model: bool = arg(
        False, "checkpoints without optimizer state (smaller, but cannot be resumed)"
    )
    plot_loss: bool = arg(False, "draw training_loss.png and training_eval_loss.png at the end")
    report_to: str = arg("none", f"where else logs go: {', '.join(REPORTERS)}")
    run_name: str | None = arg(None, "the run's name in wandb or mlflow (default: output_dir)")
    resume_from_checkpoint: bool | str | None = arg(
        None, "true: continue from the newest complete checkpoint in output_dir; or a path"
    )

    def __post_init__(self):
        if not self.output_dir:
            raise ValueError("output_dir is empty")
        _positive("logging_steps", self.logging_steps)
        _one_of("save_strategy", self.save_strategy, STRATEGIES)
        _positive("save_steps", self.save_steps)
        if self.save_total_limit is not None:
            _positive("save_total_limit", self.save_total_limit)
        self.report_to = str(self.report_to).lower()
        _one_of("report_to", self.report_to, REPORTERS)
        if self.resume_from_checkpoint is False:
            self.resume_from_checkpoint = None


@dataclass
class TrainConfig:
    """Everything `anxin train` needs; build it with `load_train_config` or directly."""

    model: ModelArgs = field(default_factory=ModelArgs)
    method: LoraArgs = field(default_factory=LoraArgs)
    preference: PrefArgs = field(default_factory=PrefArgs)
    data: DataArgs = field(default_factory=DataArgs)
    train: TrainArgs = field(default_factory=TrainArgs)
    eval: EvalArgs = field(default_factory=EvalArgs)
    predict: PredictArgs = field(default_factory=PredictArgs)
    output: OutputArgs = field(default_factory=OutputArgs)

    # LLaMA-Factory's keys that are not fields here: accepted or refused with the reason.
    foreign_key = staticmethod(llamafactory_key)

    def __post_init__(self):
        if self.method.do_train is None:
            self.method.do_train = not self.predict.do_predict
        if not (self.method.do_train or self.predict.do_predict):
            raise ValueError("do_train and do_predict are both false: nothing to do")
        if self.method.do_train and not self.data.dataset:
            raise ValueError(
                "dataset is missing: name a dataset registered in DATASET_DIR/dataset_info.json"
            )
        self._check_stage()
        if self.eval.eval_steps is None:
            self.eval.eval_steps = self.output.save_steps
        if self.eval.load_best_model_at_end:
            self._check_best_model()
        if self.output.resume_from_checkpoint and self.output.overwrite_output_dir:
            raise ValueError(
                "resume_from_checkpoint and overwrite_output_dir contradict each other"
            )
        if self.model.quantization_bit and self.method.finetuning_type != "lora":
            raise ValueError("quantization_bit needs finetuning_type: lora (QLoRA)")

    def _check_stage(self) -> None:
        stage, method = self.method.stage, self.method
        if stage != "sft" and (self.data.train_on_prompt or self.data.mask_history):
            raise ValueError("train_on_prompt and mask_history apply to stage sft")
        if stage != "sft" and self.predict.do_predict:
            raise ValueError("do_predict applies to stage sft (replies to conversations)")
        if stage != "sft" and self.eval.do_eval_generation:
            raise ValueError("do_eval_generation applies to stage sft")
        if stage == "kto" and self.preference.pref_ftx:
            raise ValueError("pref_ftx applies to stage dpo")
        if self.model.adapter_name_or_path and method.finetuning_type != "lora":
            raise ValueError("adapter_name_or_path needs finetuning_type: lora")
        if self.predict.do_predict and not method.do_train and not self.data.has_validation:
            raise ValueError(
                "do_predict needs eval_dataset or val_size: the conversations to answer"
            )
        if method.pissa_init and method.finetuning_type != "lora":
            raise ValueError("pissa_init needs finetuning_type: lora")
        if self.eval.early_stopping_steps and not self.eval.load_best_model_at_end:
            raise ValueError("early_stopping_steps needs load_best_model_at_end: true")

    def _check_best_model(self) -> None:
        if not self.data.has_validation:
            raise ValueError("load_best_model_at_end needs validation data: set val_size")
        if self.eval.eval_strategy == "no":
            raise ValueError("load_best_model_at_end needs eval_strategy steps or epoch")
        if self.output.save_strategy != self.eval.eval_strategy:
            raise ValueError(
                "load_best_model_at_end needs save_strategy equal to eval_strategy "
                f"(got {self.output.save_strategy} and {self.eval.eval_strategy})"
            )
        if self.eval.eval_strategy == "steps" and self.output.save_steps % self.eval.eval_steps:
            raise ValueError(
                f"load_best_model_at_end needs save_steps ({self.output.save_steps}) to be a "
                f"multiple of eval_steps ({self.eval.eval_steps})"
            )


def load_train_config(path: str | Path | None = None, overrides: list[str] = ()) -> TrainConfig:
    """YAML file (LLaMA-Factory keys), then `key=value` overrides, into a checked TrainConfig."""
    return load_config(TrainConfig, path, overrides)
