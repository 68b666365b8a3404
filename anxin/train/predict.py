"""do_predict: the last reply of every validation conversation generated, as LLaMA-Factory does.

Writes OUTPUT_DIR/generated_predictions.jsonl (prompt, predict, label per line; the writer is
shared with `anxin eval --predict-out`) and predict_results.json (predict_bleu-4,
predict_rouge-1/2/l, runtime and speed, computed as LLaMA-Factory computes them). Replies come
from the Engine, so the persona, the history window and the care layer apply as they do in chat:
a crisis message gets the care layer's fixed reply, as a user would.

The prompt of each reply may be cutoff_len tokens long (as LLaMA-Factory cuts its inputs), and
the reply max_new_tokens more.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from anxin.atomic import write_json
from anxin.errors import ConfigError

PREDICT_RESULTS = "predict_results.json"


def last_reply_turns(records: list[dict]) -> list:
    """One turn per conversation: everything before its last answer, and that answer."""
    from anxin.evaluate.measure import Turn

    turns = []
    for index, record in enumerate(records):
        messages = record["messages"]
        position = sum(m["role"] == "assistant" for m in messages)
        turns.append(Turn(index, position, messages[:-1], messages[-1]["content"]))
    return turns


def predict(cfg, engine, records: list[dict], output_dir: str | Path) -> dict:
    """Generate, score and write the predictions; return predict_results.json's content."""
    from anxin import metrics
    from anxin.evaluate.measure import generate_replies
    from anxin.evaluate.predictions import PREDICTIONS_FILE, rendered_prompt, write_predictions

    if not records:
        raise ConfigError("do_predict: no validation conversations to answer")
    turns = last_reply_turns(records)
    p = cfg.predict
    window = cfg.data.cutoff_len + p.max_new_tokens
    settings = {"context_length": window, **p.generation_settings(cfg.train.seed)}
    batch = cfg.eval.per_device_eval_batch_size
    started = time.perf_counter()
    replies = generate_replies(engine, turns, batch, settings, progress=False, label="predict")
    runtime = time.perf_counter() - started
    texts = [reply.text for reply in replies]
    prompts = [rendered_prompt(engine, t.context, p.max_new_tokens, window) for t in turns]
    write_predictions(Path(output_dir) / PREDICTIONS_FILE, prompts, texts, turns)
    scores = metrics.similarity(texts, [turn.reference for turn in turns])
    results = {f"predict_{key}": round(value, 4) for key, value in scores.items()}
    results.update(
        predict_runtime=round(runtime, 4),
        predict_samples_per_second=round(len(turns) / runtime, 3),
        predict_steps_per_second=round(-(-len(turns) // batch) / runtime, 3),
    )
    write_json(Path(output_dir) / PREDICT_RESULTS, results)
    shown = ", ".join(f"{k} {v:.2f}" for k, v in results.items() if "rouge" in k or "bleu" in k)
    print(f"anxin: predicted {len(turns)} replies in {runtime:.0f} s: {shown}", file=sys.stderr)
    return results


def predict_only(cfg) -> dict:
    """do_predict without do_train: load the model (and adapter_name_or_path), answer the
    validation conversations, write the predictions into output_dir; return the scores."""
    from anxin.engine import Engine
    from anxin.train.checkpoints import prepare_output_dir
    from anxin.train.data import load_validation
    from anxin.train.environment import check_machine, uses_cuda

    check_machine(cfg)
    prepare_output_dir(cfg.output, is_main=True)
    records = load_validation(cfg.data, cfg.model.default_system, cfg.train.seed)
    engine = Engine.from_pretrained(
        cfg.model.model_name_or_path,
        cfg.model.adapter_name_or_path,
        device="auto" if uses_cuda(cfg) else "cpu",
        template=cfg.model.template,
        system_prompt=cfg.model.default_system,
    )
    output_dir = Path(cfg.output.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    return predict(cfg, engine, records, output_dir)
