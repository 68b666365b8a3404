"""do_predict: generated_predictions.jsonl and predict_results.json as LLaMA-Factory writes them,
after training and on its own with adapter_name_or_path."""

from __future__ import annotations

import json

from test_train import make_toy_dataset, tiny_overrides

from anxin.train import load_train_config, train

PREDICT = {"do_predict": True, "predict_with_generate": True, "max_new_tokens": 4}
TRAIN_AND_PREDICT = {"do_train": True, **PREDICT}


def read_predictions(folder):
    lines = (folder / "generated_predictions.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def test_predict_after_training_and_alone_with_the_adapter(tiny_model_dir, tmp_path):
    data = make_toy_dataset(tmp_path / "data")
    out = tmp_path / "run"
    result = train(
        load_train_config(
            None, tiny_overrides(tiny_model_dir, data, out, max_steps=2, **TRAIN_AND_PREDICT)
        )
    )
    rows = read_predictions(out)
    held_out = [json.loads(line) for line in (out / "validation.jsonl").read_text().splitlines()]
    assert len(rows) == len(held_out) == 5
    for row, record in zip(rows, held_out, strict=True):
        assert set(row) == {"prompt", "predict", "label"}
        assert row["label"] == record["messages"][-1]["content"]  # the last answer is predicted
        assert row["prompt"].startswith("<|im_start|>system\n你是安心")  # template and persona
        assert row["prompt"].endswith("<|im_start|>assistant\n")
        assert record["messages"][-2]["content"] in row["prompt"]
    scores = json.loads((out / "predict_results.json").read_text())
    for key in ("predict_bleu-4", "predict_rouge-1", "predict_rouge-2", "predict_rouge-l"):
        assert 0 <= scores[key] <= 100, key
    assert scores["predict_runtime"] > 0 and scores["predict_samples_per_second"] > 0
    assert result.predict_metrics == scores

    # LLaMA-Factory's predict recipe: no do_train, the adapter and an eval_dataset.
    alone = tmp_path / "predict"
    overrides = [
        f"model_name_or_path={tiny_model_dir}", f"adapter_name_or_path={out}", "stage=sft",
        "eval_dataset=toy", f"dataset_dir={data}", "max_samples=3", f"output_dir={alone}",
        "per_device_eval_batch_size=2", "do_sample=false", *[f"{k}={v}" for k, v in PREDICT.items()],
    ]  # fmt: skip
    result = train(load_train_config(None, overrides))
    assert result.global_step == 0 and not (alone / "adapter_model.safetensors").exists()
    rows = read_predictions(alone)
    assert len(rows) == 3 and all(set(r) == {"prompt", "predict", "label"} for r in rows)
    assert (alone / "predict_results.json").is_file()
