"""Training data: conversations in, token ids and labels out, tokenised once and cached.

Each conversation is rendered with the one chat template (`anxin.template.render_conversation`)
so labels are -100 everywhere but on assistant answers. The result is cached under
`$ANXIN_HOME/cache/tokenized/`, keyed by the data fingerprint, the template, the tokenizer and
cutoff_len, so a second run (or a resumed one) starts training at once. Batches are padded on
the right to their longest conversation, rounded up to a multiple of 64 tokens (see
LENGTH_MULTIPLE for why).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from anxin.atomic import atomic_path
from anxin.data.registry import load_datasets
from anxin.data.split import dataset_fingerprint, select_samples, split_validation
from anxin.errors import ConfigError
from anxin.paths import tokenized_cache_dir
from anxin.template import IGNORE_INDEX, render_conversation, template_fingerprint, with_system

# Bump when the rendering changes in a way the cache key cannot see.
RENDER_VERSION = 1


@dataclass
class Conversations:
    """The chosen training and validation records (persona already added)."""

    train: list[dict]
    validation: list[dict]

    def fingerprints(self) -> dict[str, str]:
        return {
            "train": dataset_fingerprint(self.train),
            "validation": dataset_fingerprint(self.validation),
        }


def load_conversations(data_args, default_system: str | None, seed: int) -> Conversations:
    """Read the datasets, keep max_samples, split off validation, add the persona.

    Raises anxin.data.DataError (an unknown dataset, a bad record) before any model loads.
    """
    records = _conversations(data_args.dataset, data_args.dataset_dir, seed)
    records = select_samples(records, data_args.max_samples, seed)
    if data_args.eval_dataset:
        validation = _conversations(data_args.eval_dataset, data_args.dataset_dir, seed)
        validation = select_samples(validation, data_args.max_samples, seed)
        train = records
    else:
        train, validation = split_validation(records, data_args.val_size, seed)
    return Conversations(
        train=[_with_persona(r, default_system) for r in train],
        validation=[_with_persona(r, default_system) for r in validation],
    )


def _conversations(names: str, dataset_dir: str, seed: int) -> list[dict]:
    """Conversations to fine-tune on; preference data would train on its bad answers too."""
    from anxin.data.preference import is_kto_example, is_pair

    records = load_datasets(names, dataset_dir, seed=seed)
    if any(is_pair(r) or is_kto_example(r) for r in records):
        raise ConfigError(
            f"dataset {names} holds preference data (ranking pairs or kto_tag answers), which "
            "stage sft cannot use: train on it with stage: dpo or kto"
        )
    return records


def load_validation(data_args, default_system: str | None, seed: int) -> list[dict]:
    """Only the validation conversations (do_predict without training): eval_dataset, or the
    val_size split of dataset, chosen exactly as a training run would choose them."""
    if data_args.dataset:
        return load_conversations(data_args, default_system, seed).validation
    records = _conversations(data_args.eval_dataset, data_args.dataset_dir, seed)
    records = select_samples(records, data_args.max_samples, seed)
    return [_with_persona(r, default_system) for r in records]


def _with_persona(record: dict, default_system: str | None) -> dict:
    return {"messages": with_system(record["messages"], default_system)}


# --- tokenising, with a cache ---------------------------------------------------------------


@dataclass
class TokenizeStats:
    conversations: int
    skipped_no_answer: int  # nothing left to train on after truncation
    dropped_pairs: int  # oldest turn pairs dropped to fit cutoff_len
    truncated: int  # conversations whose last exchange was cut
    tokens: int
    trained_tokens: int
    from_cache: bool


def tokenizer_fingerprint(tokenizer) -> str:
    """Identify a vocabulary cheaply: its size plus the ids of a fixed mixed-language probe."""
    probe = "Hello, 你好！I feel 有点难过 today. <|im_end|> 123"
    ids = tokenizer(probe, add_special_tokens=False)["input_ids"]
    text = f"{len(tokenizer)}|{ids}|{tokenizer.eos_token}|{tokenizer.bos_token}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class Labels:
    """Which tokens train (LLaMA-Factory's keys): by default every assistant answer.

    train_on_prompt trains every token, prompts and persona included; mask_history trains
    only the last answer of each conversation (earlier answers become context). Together, as
    in LLaMA-Factory: the prompts and the last answer.
    """

    train_on_prompt: bool = False
    mask_history: bool = False

    def apply(self, input_ids: list[int], labels: list[int]) -> list[int]:
        answers = [label != IGNORE_INDEX for label in labels]
        if self.mask_history:
            answers = _last_run_only(answers)
        if self.train_on_prompt:
            prompt = [label == IGNORE_INDEX for label in labels]
            return [t if a or p else IGNORE_INDEX for t, a, p in zip(input_ids, answers, prompt)]
        return [t if a else IGNORE_INDEX for t, a in zip(input_ids, answers)]


def _last_run_only(flags: list[bool]) -> list[bool]:
    """Keep only the last run of True values (the last answer's tokens)."""
    end = max((i + 1 for i, flag in enumerate(flags) if flag), default=0)
    start = end
    while start and flags[start - 1]:
        start -= 1
    return [start <= i < end for i in range(len(flags))]


def cache_key(records: list[dict], tokenizer, cutoff_len: int, labels: Labels = Labels()) -> str:
    parts = [
        f"v{RENDER_VERSION}",
        dataset_fingerprint(records),
        template_fingerprint(tokenizer),
        tokenizer_fingerprint(tokenizer),
        str(cutoff_len),
    ]
    if labels != Labels():  # keys of existing caches stay as they were
        parts.append(f"prompt={labels.train_on_prompt},history={labels.mask_history}")
    return hashlib.sha256("|".join(parts).encode("utf-8")).hexdigest()[:24]


class TokenizedDataset:
    """Token ids and labels of many conversations, stored flat (cheap to save and load)."""

    def __init__(self, input_ids, labels, offsets):
        self.input_ids = input_ids  # torch int32, all conversations end to end
        self.labels = labels
        self.offsets = offsets  # torch int64, len(self) + 1 boundaries

    @classmethod
    def from_lists(cls, ids: list[list[int]], labels: list[list[int]]) -> TokenizedDataset:
        import torch

        lengths = torch.tensor([0] + [len(x) for x in ids], dtype=torch.int64)
        flat_ids = [token for row in ids for token in row]
        flat_labels = [token for row in labels for token in row]
        return cls(
            torch.tensor(flat_ids, dtype=torch.int32),
            torch.tensor(flat_labels, dtype=torch.int32),
            torch.cumsum(lengths, 0),
        )

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def length(self, index: int) -> int:
        return int(self.offsets[index + 1] - self.offsets[index])

    def __getitem__(self, index: int) -> dict:
        start, end = int(self.offsets[index]), int(self.offsets[index + 1])
        return {"input_ids": self.input_ids[start:end], "labels": self.labels[start:end]}

    def save(self, path: Path) -> None:
        import torch

        with atomic_path(path) as tmp:
            state = {"input_ids": self.input_ids, "labels": self.labels, "offsets": self.offsets}
            torch.save(state, tmp)

    @classmethod
    def load(cls, path: Path) -> TokenizedDataset:
        import torch

        state = torch.load(path, weights_only=True)
        return cls(state["input_ids"], state["labels"], state["offsets"])

    def sorted_by_length(self) -> TokenizedDataset:
        """A copy in order of length: evaluation batches then pad very little."""
        order = sorted(range(len(self)), key=self.length)
        rows = [self[i] for i in order]
        return TokenizedDataset.from_lists(
            [r["input_ids"].tolist() for r in rows], [r["labels"].tolist() for r in rows]
        )


def tokenize(
    records: list[dict],
    tokenizer,
    cutoff_len: int,
    overwrite_cache: bool = False,
    labels: Labels = Labels(),
) -> tuple[TokenizedDataset, TokenizeStats]:
    """Render every conversation (or load the cached result) for training."""
    key = cache_key(records, tokenizer, cutoff_len, labels)
    path = tokenized_cache_dir() / f"{key}.pt"
    meta_path = path.with_suffix(".json")
    if path.is_file() and meta_path.is_file() and not overwrite_cache:
        stats = TokenizeStats(**{**json.loads(meta_path.read_text()), "from_cache": True})
        return TokenizedDataset.load(path), stats
    dataset, stats = _render_all(records, tokenizer, cutoff_len, labels)
    dataset.save(path)
    with atomic_path(meta_path) as tmp:
        meta = {k: v for k, v in stats.__dict__.items() if k != "from_cache"}
        tmp.write_text(json.dumps(meta))
    return dataset, stats


def _render_all(
    records, tokenizer, cutoff_len, policy: Labels
) -> tuple[TokenizedDataset, TokenizeStats]:
    ids, labels = [], []
    skipped = dropped = truncated = 0
    for record in records:
        rendered = render_conversation(tokenizer, record["messages"], cutoff_len)
        if rendered.trained_tokens == 0:
            skipped += 1
            continue
        dropped += rendered.dropped_pairs
        truncated += int(rendered.truncated)
        ids.append(rendered.input_ids)
        labels.append(policy.apply(rendered.input_ids, rendered.labels))
    dataset = TokenizedDataset.from_lists(ids, labels)
    stats = TokenizeStats(
        conversations=len(ids),
        skipped_no_answer=skipped,
        dropped_pairs=dropped,
        truncated=truncated,
        tokens=len(dataset.input_ids),
        trained_tokens=int((dataset.labels != IGNORE_INDEX).sum()),
        from_cache=False,
    )
    return dataset, stats


# --- batching -----------------------------------------------------------------------------


# Training pads every batch up to a multiple of this many tokens. Tensors then come in a few
# sizes that the C allocator can reuse; with every length different, glibc's heap fragments
# and the process grows step after step (SmolLM2 LoRA on CPU, 80 conversations: peak memory
# 2.49 GB unpadded, 1.77 GB padded to 64; tokens/s 306 vs 330, the aligned shapes suit the bf16
# kernels). The padding is masked, so the loss is the same.
LENGTH_MULTIPLE = 64


class PaddedBatches:
    """Collate conversations into a right-padded batch, rounded up to `multiple_of` tokens.

    The padding itself is transformers' `DataCollatorForSeq2Seq`: attention_mask 0 and label
    -100 on padding positions, so the pad id never decides a label (pad == eos in many
    tokenizers, and eos must be trained).

    With `trained_logits_only`, the batch also says which positions predict a trained token
    (`logits_to_keep`, a boolean mask) and their targets (`shift_labels`), so the model runs its
    output layer (vocabulary-sized: the largest single matrix of a small model) only there.
    Prompts and persona are about two thirds of the tokens, so this skips most of that work;
    the loss is the same.
    """

    def __init__(self, tokenizer, trained_logits_only: bool = False, multiple_of: int = 1):
        from transformers import DataCollatorForSeq2Seq

        tokenizer.padding_side = "right"  # training pads on the right; generation pads itself
        self.pad = DataCollatorForSeq2Seq(
            tokenizer,
            padding=True,
            pad_to_multiple_of=multiple_of if multiple_of > 1 else None,
            label_pad_token_id=IGNORE_INDEX,
            return_tensors="pt",
        )
        self.trained_logits_only = trained_logits_only

    def __call__(self, features: list[dict]) -> dict:
        import torch

        lists = [{k: [int(t) for t in v] for k, v in f.items()} for f in features]
        batch = dict(self.pad(lists))
        batch = {k: v.to(torch.long) for k, v in batch.items()}
        if self.trained_logits_only:
            # Position i predicts token i + 1.
            targets = torch.nn.functional.pad(batch["labels"][:, 1:], (0, 1), value=IGNORE_INDEX)
            keep = targets != IGNORE_INDEX
            batch["logits_to_keep"] = keep
            batch["shift_labels"] = targets[keep]
        return batch


def accepts_trained_logits_only(model) -> bool:
    """Whether the model's forward can skip logits by mask and take ready-shifted labels."""
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    parameters = inspect.signature(base.forward).parameters
    takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    return "logits_to_keep" in parameters and takes_kwargs
