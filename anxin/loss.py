"""Teacher-forced loss on assistant tokens: how well a model predicts the counsellor's replies.

Each conversation is rendered with the one chat template (`render_conversation`: labels only on
assistant tokens, oldest pairs dropped to fit `cutoff_len`, as in training), so the loss means
the same thing here as in training. Backends that hold a model expose it as `score()`.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass

from anxin.template import IGNORE_INDEX, render_conversation

# Turn positions past this one share a bucket in the per-position loss ("8+"): few dialogues
# are that long, and their numbers would be noise.
LAST_POSITION_BUCKET = 8


def answer_positions(labels: list[int], first: int = 1) -> list[int]:
    """For each token, the position of the assistant turn it belongs to (0: not trained).

    Every assistant answer is one unbroken run of labels (prompt pieces between them are
    masked), so the runs count the turns; `first` is the position of the first kept turn
    (later than 1 when render_conversation dropped the oldest pairs).
    """
    positions, current, inside = [], first - 1, False
    for label in labels:
        trained = label != IGNORE_INDEX
        if trained and not inside:
            current += 1
        inside = trained
        positions.append(current if trained else 0)
    return positions


def position_bucket(position: int) -> str:
    return str(position) if position < LAST_POSITION_BUCKET else f"{LAST_POSITION_BUCKET}+"


@dataclass
class _LossRow:
    input_ids: list[int]
    labels: list[int]
    positions: list[int]


def _render_rows(tokenizer, conversations: list[list[dict]], cutoff_len: int) -> list[_LossRow]:
    rows = []
    for messages in conversations:
        rendered = render_conversation(tokenizer, messages, cutoff_len)
        if rendered.trained_tokens:
            positions = answer_positions(rendered.labels, rendered.dropped_pairs + 1)
            rows.append(_LossRow(rendered.input_ids, rendered.labels, positions))
    return rows


def _pad(rows: list[list[int]], value: int, device):
    import torch

    width = max(len(row) for row in rows)
    return torch.tensor([row + [value] * (width - len(row)) for row in rows], device=device)


def _token_losses(model, batch: list[_LossRow], pad_id: int):
    """(loss, turn position) of every trained token in a right-padded batch.

    Only the hidden states of trained tokens go through the output layer: full logits of a
    batch (8 × 1024 × 49k vocabulary) would take gigabytes for nothing.
    """
    import torch

    device = model.device
    input_ids = _pad([row.input_ids for row in batch], pad_id, device)
    attention = _pad([[1] * len(row.input_ids) for row in batch], 0, device)
    labels = _pad([row.labels for row in batch], IGNORE_INDEX, device)
    positions = _pad([row.positions for row in batch], 0, device)
    hidden = model.get_decoder()(input_ids=input_ids, attention_mask=attention).last_hidden_state
    # Token t is predicted from the hidden state at t - 1.
    targets, keep = labels[:, 1:], labels[:, 1:] != IGNORE_INDEX
    logits = model.get_output_embeddings()(hidden[:, :-1][keep]).float()
    losses = torch.nn.functional.cross_entropy(logits, targets[keep], reduction="none")
    return losses, positions[:, 1:][keep]


def teacher_forced_loss(
    model,
    tokenizer,
    conversations: list[list[dict]],
    batch_size: int = 8,
    cutoff_len: int = 1024,
    progress: bool = True,
    label: str = "model",
) -> dict:
    """Mean loss per assistant token (and perplexity), overall and by turn position.

    Conversations are batched by length, padded on the right with labels -100 on the padding,
    and run under inference_mode. The mean is over tokens, so long replies weigh more.
    """
    import torch
    from tqdm import tqdm

    start = time.perf_counter()
    rows = sorted(
        _render_rows(tokenizer, conversations, cutoff_len), key=lambda r: len(r.input_ids)
    )
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    sums: Counter = Counter()
    counts: Counter = Counter()
    bar = tqdm(
        total=len(rows), desc=f"{label}: loss", unit="dialogue", disable=None if progress else True
    )
    with torch.inference_mode():
        for begin in range(0, len(rows), batch_size):
            batch = rows[begin : begin + batch_size]
            losses, positions = _token_losses(model, batch, pad_id)
            for loss, position in zip(losses.tolist(), positions.tolist()):
                bucket = position_bucket(position)
                sums[bucket] += loss
                counts[bucket] += 1
            bar.update(len(batch))
    bar.close()
    tokens = sum(counts.values())
    mean = sum(sums.values()) / tokens if tokens else None
    by_turn = {
        bucket: _loss_entry(sums[bucket] / counts[bucket], counts[bucket])
        for bucket in sorted(counts, key=lambda b: int(b.rstrip("+")))
    }
    return {
        **_loss_entry(mean, tokens),
        "dialogues": len(rows),
        "skipped_dialogues": len(conversations) - len(rows),
        "by_turn": by_turn,
        "seconds": round(time.perf_counter() - start, 3),
    }


def _loss_entry(loss: float | None, tokens: int) -> dict:
    perplexity = None if loss is None else math.exp(min(loss, 700.0))  # no overflow
    return {"loss": loss, "perplexity": perplexity, "tokens": tokens}
