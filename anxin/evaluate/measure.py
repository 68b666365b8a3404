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
from anxin.template import with_system


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
    from anxin.data.record import check_records
    from anxin.data.split import select_samples
    from anxin.errors import DataError

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


def pick_turns(
    records: list[dict], max_turns: int | None, seed: int = 42, last_only: bool = False
) -> list[Turn]:
    """At most `max_turns` replies, chosen by seed from the content alone (so the same file
    and seed give the same turns on every machine, for every model), in dialogue order.
    `last_only` keeps only each dialogue's last reply (LLaMA-Factory's do_predict)."""
    turns = all_turns(records)
    if last_only:
        last = {turn.dialogue: turn for turn in turns}
        turns = list(last.values())
    if max_turns is None or max_turns >= len(turns):
        return turns

    def rank(turn: Turn) -> str:
        text = f"{seed}\n{turn.dialogue}\n{turn.position}\n{turn.reference}"
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    chosen = sorted(turns, key=rank)[:max_turns]
    return sorted(chosen, key=lambda t: (t.dialogue, t.position))


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
    score = getattr(engine.backend, "score", None)  # backends without logits cannot score
    if loss and score is not None:
        conversations = [with_system(r["messages"], engine.system_prompt) for r in records]
        result["loss"] = score(
            conversations,
            batch_size=batch_size,
            cutoff_len=cutoff_len,
            progress=progress,
            label=label,
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
