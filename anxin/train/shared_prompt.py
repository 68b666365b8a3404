"""DPO with each pair's prompt read once: [prompt, chosen, rejected] packed in one row.

TRL (like LLaMA-Factory) runs a pair as two rows, prompt + chosen and prompt + rejected, so the
prompt (the persona and the history: about half the tokens of the bundled pairs) goes through
the model twice, in the policy's forward and backward and in the reference's forward. Here the
two answers follow the prompt in a single row; an attention mask keeps the rejected answer
from seeing the chosen one, and position ids restart after the prompt, so each answer sees
exactly what it sees in its own row and gets the same log-probabilities (tested against TRL's
two-row forward). The output layer runs only where an answer token is predicted.

The batch keeps TRL's two-row keys too (input_ids, attention_mask, completion_mask), so TRL's
loss, rewards and metrics run unchanged: the model's fused forward reads the packed keys below
and returns log-probabilities laid out as the two-row forward would.
"""

from __future__ import annotations

import types

import torch

PACKED_KEYS = ("packed_ids", "packed_positions", "packed_mask", "predict_from", "predict_ids")
PROMPT, CHOSEN, REJECTED, PADDING = 0, 1, 2, -1


def can_share_prompt(model) -> bool:
    """Whether the packed forward computes what the model's own output layer would: a plain
    linear head (no logit soft-capping or scaling) and an attention that takes a 4D mask."""
    config = model.config.get_text_config()
    plain_head = all(
        getattr(config, name, None) is None
        for name in (
            "final_logit_softcapping",
            "logit_scale",
            "output_multiplier",
            "logits_scaling",
        )
    )
    return plain_head and config._attn_implementation in ("sdpa", "eager")


class SharedPromptBatches:
    """TRL's preference batch plus the same pairs packed one row each (PACKED_KEYS)."""

    def __init__(self, two_rows, pad_id: int, multiple_of: int = 1):
        self.two_rows = two_rows  # TRL's DataCollatorForPreference
        self.pad_id = pad_id
        self.multiple_of = multiple_of

    def __call__(self, examples: list[dict]) -> dict:
        batch = self.two_rows(examples)
        batch.update(pack(examples, self.pad_id, self.multiple_of))
        return batch


def pack(examples: list[dict], pad_id: int, multiple_of: int = 1) -> dict:
    """Packed rows, their positions and block-causal mask, and which hidden state predicts
    each answer token (flat indices), ordered as TRL's two-row layout lists them: every
    chosen answer, row by row, then every rejected answer."""
    rows = [e["prompt_ids"] + e["chosen_ids"] + e["rejected_ids"] for e in examples]
    length = -(-max(map(len, rows)) // multiple_of) * multiple_of
    ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    positions = torch.zeros((len(rows), length), dtype=torch.long)
    segments = torch.full((len(rows), length), PADDING, dtype=torch.long)
    predict = {CHOSEN: ([], []), REJECTED: ([], [])}
    for row, (example, tokens) in enumerate(zip(examples, rows, strict=True)):
        p, c = len(example["prompt_ids"]), len(example["chosen_ids"])
        r = len(example["rejected_ids"])
        ids[row, : len(tokens)] = torch.tensor(tokens)
        positions[row, : p + c] = torch.arange(p + c)
        positions[row, p + c : p + c + r] = torch.arange(p, p + r)
        segments[row, :p], segments[row, p : p + c] = PROMPT, CHOSEN
        segments[row, p + c : p + c + r] = REJECTED
        base = row * length
        # The first token of either answer is predicted from the prompt's last position.
        for kind, start, answer in ((CHOSEN, p, example["chosen_ids"]), (REJECTED, p + c, example["rejected_ids"])):  # fmt: skip
            sources = [p - 1] + list(range(start, start + len(answer) - 1))
            predict[kind][0].extend(base + s for s in sources)
            predict[kind][1].extend(answer)
    return {
        "packed_ids": ids,
        "packed_positions": positions,
        "packed_mask": block_causal_mask(segments),
        "predict_from": torch.tensor(predict[CHOSEN][0] + predict[REJECTED][0]),
        "predict_ids": torch.tensor(predict[CHOSEN][1] + predict[REJECTED][1]),
    }


def block_causal_mask(segments: torch.Tensor) -> torch.Tensor:
    """(batch, 1, L, L) booleans, True where a query may attend: earlier or same position, in
    the prompt or in its own answer; padding attends only to itself (a row of all False would
    give NaN in softmax)."""
    length = segments.size(1)
    causal = torch.ones(length, length, dtype=torch.bool).tril()
    query, key = segments.unsqueeze(2), segments.unsqueeze(1)
    visible = (key == PROMPT) | (key == query)
    mask = causal & visible & (key != PADDING) & (query != PADDING)
    mask |= torch.eye(length, dtype=torch.bool)
    return mask.unsqueeze(1)


def add_shared_prompt_forward(model) -> None:
    """Let `model`'s fused forward (TRL's add_fused_lm_head, already applied) take packed
    batches; any other call goes to the forward it had."""
    from trl.kernels import ChunkedLogProbFunction
    from trl.trainer.utils import FusedCausalLMOutput

    fused = model.forward
    eager = model.config.get_text_config()._attn_implementation == "eager"

    def forward(self, *args, packed_ids=None, packed_positions=None, packed_mask=None,
                predict_from=None, predict_ids=None, **kwargs):  # fmt: skip
        if packed_ids is None or not kwargs.get("fused_lm_head"):
            return fused(*args, **kwargs)
        mask = packed_mask
        if eager:  # eager attention adds its mask to the scores
            mask = torch.zeros(mask.shape, dtype=self.dtype, device=mask.device).masked_fill(
                ~mask, torch.finfo(self.dtype).min
            )
        hidden = self.base_model(
            input_ids=packed_ids,
            attention_mask=mask,
            position_ids=packed_positions,
            use_cache=False,
        ).last_hidden_state
        hidden = hidden.reshape(-1, hidden.size(-1))[predict_from]
        head = self.get_output_embeddings()
        outputs = ("log_probs", "entropy", "mean_logits", "is_top1")
        per_token = ChunkedLogProbFunction.apply(
            hidden, head.weight, head.bias, predict_ids, 1.0, 32768, None, 1.0, outputs
        )
        # Laid out as TRL's two-row forward: one value per label that is not -100.
        where = kwargs["labels"][:, 1:] != -100
        log_probs, entropy, _, mean_logits, is_top1 = (
            None if x is None else x.new_zeros(where.shape).masked_scatter(where, x)
            for x in per_token
        )
        loss = -log_probs.sum() / where.sum().clamp(min=1)
        return FusedCausalLMOutput(
            loss=loss, log_probs=log_probs, entropy=entropy, mean_logits=mean_logits,
            is_top1=is_top1, label_mask=where,
        )  # fmt: skip

    model.forward = types.MethodType(forward, model)
