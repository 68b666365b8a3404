"""generated_predictions.jsonl, as LLaMA-Factory writes it: one JSON object a line with the
prompt as the model saw it (the chat template applied, special tokens kept), the generated
reply and the reference reply:

    {"prompt": "<|im_start|>system\\n...<|im_start|>assistant\\n", "predict": "...", "label": "..."}

One writer for every command that predicts (`anxin eval --predict-out`, `anxin train` with
do_predict), so tools that read LLaMA-Factory's file read anxin's.
"""

from __future__ import annotations

from pathlib import Path

from anxin.atomic import write_jsonl
from anxin.errors import ContextTooLong
from anxin.generation import GenerationSettings
from anxin.template import with_system

PREDICTIONS_FILE = "generated_predictions.jsonl"


def rendered_prompt(engine, context: list[dict], max_new_tokens: int, cutoff_len: int) -> str:
    """The prompt the engine gives its model for `context`: the persona added, the history
    window applied as for the reply (cutoff_len, room kept for max_new_tokens), rendered by
    the chat template and decoded with its special tokens (LLaMA-Factory's "prompt")."""
    settings = GenerationSettings(max_new_tokens=max_new_tokens)
    try:
        messages, _ = engine.fit_context(context, settings, cutoff_len)
    except ContextTooLong:  # a crisis message the care layer answered without the model
        messages = with_system(context, engine.system_prompt)
    prompts = getattr(engine.backend, "prompts", None)
    if prompts is None:  # a backend without a local tokenizer (--upstream): the messages
        return "\n".join(f"{m['role']}: {m['content']}" for m in messages)
    return prompts.tokenizer.decode(prompts.ids(messages), skip_special_tokens=False)


def prediction_file(path: str | Path, label: str) -> Path:
    """Where one model's predictions go: `path` itself for the model under test, and
    NAME.LABEL.jsonl beside it for another (the --compare baseline)."""
    path = Path(path)
    if label == "model":
        return path
    return path.with_name(f"{path.stem}.{label}{path.suffix or '.jsonl'}")


def prediction_rows(prompts: list[str], predictions: list[str], turns) -> list[dict]:
    """One row per turn: its prompt, the generated reply and the turn's reference reply."""
    if not len(prompts) == len(predictions) == len(turns):
        raise ValueError(f"{len(prompts)} prompts, {len(predictions)} replies, {len(turns)} turns")
    return [
        {"prompt": prompt, "predict": predict, "label": turn.reference}
        for prompt, predict, turn in zip(prompts, predictions, turns)
    ]


def write_predictions(path: str | Path, prompts: list[str], predictions: list[str], turns) -> Path:
    """Write generated_predictions.jsonl for `turns` (anxin.evaluate.Turn) atomically."""
    path = Path(path)
    write_jsonl(path, prediction_rows(prompts, predictions, turns))
    return path
