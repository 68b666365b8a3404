"""Measuring one model on held-out dialogues: teacher-forced loss, then generated replies.

Both go through what training and chatting use, so the numbers describe the real thing:
the loss renders each dialogue with `render_conversation` (labels only on assistant tokens,
the engine's persona prepended as in training), and replies come from `Engine.chat_batch`
(same template, history window and care layer as chat).
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from dataclasses import dataclass, field

from anxin import metrics
from anxin.template import IGNORE_INDEX, render_conversation, with_system

# Turn positions past this one share a bucket in the per-position loss ("8+"): few dialogues
# are that long, and their numbers would be noise.
LAST_POSITION_BUCKET = 8


@dataclass(frozen=True)
class Turn:
    """One assistant reply to regenerate: what came before it and what the counsellor said."""

    dialogue: int  # index of the dialogue among the evaluated records
    position: int  # 1 for the dialogue's first assistant reply, 2 for the next, ...
    context: list[dict]  # the messages before the reply (ends with the user's message)
    reference: str


@dataclass
class ModelRun:
    """What measuring one model produced: its metrics, and its replies for the samples."""

    metrics: dict
    replies: list[str] = field(default_factory=list)


# --- the data -------------------------------------------------------------------------------


def load_dialogues(path: str, max_samples: int | None = None, seed: int = 42) -> list[dict]:
    """Validated dialogues from any format `anxin data` reads (errors name FILE:LINE: field)."""
    from anxin.data.readers import read_records
    from anxin.data.record import DataError, check_records
    from anxin.data.split import select_samples

    records, _ = check_records(read_records(path), repair=True)
    if not records:
        raise DataError(path, None, "messages", "no dialogues to evaluate")
    return select_samples(records, max_samples, seed)


def all_turns(records: list[dict]) -> list[Turn]:
    """Every assistant reply of every dialogue, in order."""
    turns = []
    for index, record in enumerate(records):
        messages = record["messages"]
        position = 0
        for i, message in enumerate(messages):
            if message["role"] == "assistant" and i > 0 and messages[i - 1]["role"] == "user":
                position += 1
                turns.append(Turn(index, position, messages[:i], message["content"]))
    return turns


def pick_turns(records: list[dict], max_turns: int | None, seed: int = 42) -> list[Turn]:
    """At most `max_turns` replies, chosen by seed from the content alone (so the same file
    and seed give the same turns on every machine, for every model), in dialogue order."""
    turns = all_turns(records)
    if max_turns is None or max_turns >= len(turns):
        return turns

    def rank(turn: Turn) -> str:
        text = f"{seed}\n{turn.dialogue}\n{turn.position}\n{turn.reference}"
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    chosen = sorted(turns, key=rank)[:max_turns]
    return sorted(chosen, key=lambda t: (t.dialogue, t.position))


# --- teacher-forced loss ----------------------------------------------------------------------


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
    perplexity = None if loss is None else metrics.perplexity(loss)
    return {"loss": loss, "perplexity": perplexity, "tokens": tokens}


# --- generation -------------------------------------------------------------------------------


def generate_replies(
    engine,
    turns: list[Turn],
    batch_size: int = 8,
    settings: dict | None = None,
    progress: bool = True,
    label: str = "model",
) -> list:
    """The engine's Reply to each turn's context, batched by context length, in turn order."""
    from tqdm import tqdm

    settings = settings or {}
    order = sorted(
        range(len(turns)), key=lambda i: sum(len(m["content"]) for m in turns[i].context)
    )
    replies: list = [None] * len(turns)
    bar = tqdm(
        total=len(turns), desc=f"{label}: replies", unit="turn", disable=None if progress else True
    )
    for begin in range(0, len(order), batch_size):
        chosen = order[begin : begin + batch_size]
        batch = engine.chat_batch([turns[i].context for i in chosen], **settings)
        for i, reply in zip(chosen, batch, strict=True):
            replies[i] = reply
        bar.update(len(chosen))
    bar.close()
    return replies


def generation_metrics(turns: list[Turn], replies: list) -> dict:
    """Similarity to the references, diversity, length and problem shares of the replies."""
    texts = [reply.text for reply in replies]
    references = [turn.reference for turn in turns]
    tokens = [reply.completion_tokens for reply in replies]
    return {
        "turns": len(turns),
        **metrics.similarity(texts, references),
        **metrics.reply_quality(texts, references),
        "reply_tokens": sum(tokens) / len(tokens) if tokens else 0.0,
        "hit_max_new_tokens": metrics.share([r.finish_reason == "length" for r in replies]),
    }


def safety_metrics(replies: list) -> dict:
    """What the care layer did: counts by action, level and reason, and the main shares."""
    notes = [reply.safety for reply in replies if reply.safety is not None]
    actions = Counter(note.action for note in notes)
    return {
        "actions": dict(actions),
        "levels": dict(Counter(note.level for note in notes)),
        "reasons": dict(Counter(reason for note in notes for reason in note.reasons)),
        "replaced": actions["reply_replaced"] / len(replies) if replies else 0.0,
        "crisis_response": actions["crisis_response"] / len(replies) if replies else 0.0,
        "concern_footer": actions["concern_footer"] / len(replies) if replies else 0.0,
    }


# --- one model --------------------------------------------------------------------------------


def measure_model(
    engine,
    records: list[dict],
    turns: list[Turn],
    *,
    batch_size: int = 8,
    cutoff_len: int = 1024,
    settings: dict | None = None,
    loss: bool = True,
    progress: bool = True,
    label: str = "model",
) -> ModelRun:
    """Loss over `records` and replies to `turns`, with timings; `cutoff_len` bounds both the
    dialogues scored for loss and each reply's prompt plus reply, as in training."""
    result: dict = {"loss": None, "generation": None, "safety": None}
    backend = engine.backend
    if loss and getattr(backend, "name", "") == "transformers":  # others give no logits
        conversations = [with_system(r["messages"], engine.system_prompt) for r in records]
        result["loss"] = backend.call(  # on the model's own torch thread (see TransformersBackend)
            teacher_forced_loss,
            backend.model,
            backend.tokenizer,
            conversations,
            batch_size,
            cutoff_len,
            progress,
            label,
        )
    replies = []
    if turns:
        start = time.perf_counter()
        # A reply sees the context a training example of that turn kept (cutoff_len), not a
        # longer history the model never learned from; it also bounds long dialogues' cost.
        window = {"context_length": cutoff_len, **settings}
        replies = generate_replies(engine, turns, batch_size, window, progress, label)
        seconds = time.perf_counter() - start
        result["generation"] = generation_metrics(turns, replies)
        result["generation"]["seconds"] = round(seconds, 3)
        result["generation"]["tokens_per_second"] = round(
            sum(r.completion_tokens for r in replies) / max(seconds, 1e-9), 2
        )
        result["safety"] = safety_metrics(replies)
    return ModelRun(result, [reply.text for reply in replies])


def evaluate_model(
    engine,
    records: list[dict],
    max_turns: int | None = 100,
    batch_size: int = 8,
    seed: int = 42,
    *,
    cutoff_len: int = 1024,
    max_new_tokens: int = 128,
    temperature: float = 0.0,
    loss: bool = True,
    progress: bool = False,
) -> dict:
    """Metrics of one in-memory engine on canonical records (for `anxin train` to call).

    Returns {"loss": {...} | None, "generation": {...} | None, "safety": {...} | None}.
    Pass loss=False when the caller already has the validation loss.
    """
    turns = pick_turns(records, max_turns, seed)
    settings = {"max_new_tokens": max_new_tokens, "temperature": temperature, "seed": seed}
    run = measure_model(
        engine,
        records,
        turns,
        batch_size=batch_size,
        cutoff_len=cutoff_len,
        settings=settings,
        loss=loss,
        progress=progress,
    )
    return run.metrics
