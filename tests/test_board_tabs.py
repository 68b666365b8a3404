"""The board's tabs without a browser: the data preview marks exactly the trained tokens,
Start refuses what `anxin train` would refuse at the field concerned, presets load with the
bundled data, the run panel reads progress and curves from trainer_log.jsonl, and the page
builds in both languages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from anxin.board import data_tab, form, train_tab
from anxin.board.context import BUNDLED_DATA, Context
from anxin.config import field_owners
from anxin.errors import DataError
from anxin.train.config import TrainConfig

MESSAGES = [
    {"role": "system", "content": "You listen."},
    {"role": "user", "content": "I cannot sleep well at night."},
    {"role": "assistant", "content": "That sounds exhausting. What keeps you awake?"},
    {"role": "user", "content": "My exams are next week."},
    {"role": "assistant", "content": "It makes sense to feel anxious before exams."},
]


@pytest.fixture
def ctx(tmp_path):
    return Context.create(tmp_path, "en")


def test_the_preview_marks_exactly_the_tokens_the_loss_is_computed_on(tiny_tokenizer):
    from anxin.template import render_conversation

    rendered, pieces = data_tab.highlighted(tiny_tokenizer, MESSAGES, None, "trained")
    trained_text = "".join(text for text, category in pieces if category == "trained")
    assert trained_text == "".join(
        tiny_tokenizer.decode(ids) for ids in _runs(rendered.input_ids, rendered.labels)
    )
    assert "What keeps you awake?<|im_end|>" in trained_text  # the end-of-turn token trains
    assert "I cannot sleep" not in trained_text and "You listen." not in trained_text
    assert "".join(text for text, _ in pieces) == tiny_tokenizer.decode(rendered.input_ids)
    assert rendered.input_ids == render_conversation(tiny_tokenizer, MESSAGES).input_ids


def _runs(ids, labels):
    """Trained runs of ids, as the preview groups them."""
    from anxin.template import IGNORE_INDEX

    runs, current = [], []
    for token, label in zip(ids, labels):
        if label != IGNORE_INDEX:
            current.append(token)
        elif current:
            runs.append(current)
            current = []
    return runs + ([current] if current else [])


def test_the_preview_says_what_cutoff_len_dropped(tiny_tokenizer):
    records = [{"messages": MESSAGES[1:]}]
    pieces = data_tab.preview(tiny_tokenizer, records, 0, 1, "You listen.", 40, "en")
    header = pieces[0][0]
    assert "trained" in header and "oldest exchanges dropped" in header


def test_the_bundled_sample_reads_with_its_report(ctx):
    checked = data_tab.read_selection(ctx, str(BUNDLED_DATA), ["anxin_sample"], None, "auto")
    ((name, report),) = checked.reports
    assert name == "anxin_sample" and report.kept == len(checked.records) == 365
    assert "read 365, kept 365" in data_tab.report_markdown(checked, "en")
    assert data_tab.default_dataset_dir(ctx.workdir) == str(BUNDLED_DATA)  # an empty folder


def test_an_upload_is_checked_line_by_line_and_registered(ctx, tmp_path):
    upload = tmp_path / "mine.jsonl"
    good = {"messages": MESSAGES[1:3]}
    upload.write_text(json.dumps(good) + "\n" + '{"messages": [{"role": "user"}]}\n')
    checked = data_tab.read_selection(ctx, "data", [], [str(upload)], "auto")
    report_text = data_tab.report_markdown(checked, "en")
    assert f"{upload}:2" in report_text  # FILE:LINE of the bad record
    assert len(checked.records) == 1
    registry, kept, skipped = data_tab.register_upload(ctx, [str(upload)], "auto", "mine", "data")
    assert (kept, skipped) == (1, 1) and registry == ctx.workdir / "data" / "dataset_info.json"
    assert data_tab.dataset_names(ctx, "data") == ["mine"]
    with pytest.raises(DataError, match="use letters"):
        data_tab.register_upload(ctx, [str(upload)], "auto", "../escape", "data")
    assert not (ctx.workdir / "escape.jsonl").exists()


def test_presets_are_the_shipped_recipes_with_the_bundled_data(ctx):
    presets = train_tab.presets()
    assert {"smollm2-135m/lora_sft", "llama3-8b-instruct/lora_sft"} <= set(presets)
    values = dict(zip([s.name for s in train_tab.specs()],
                      train_tab.preset_values(ctx, presets["smollm2-135m/lora_sft"])))  # fmt: skip
    assert values["dataset_dir"] == str(BUNDLED_DATA)  # the board's folder has no data/
    assert values["model_name_or_path"] == "smollm2"


def test_start_refuses_a_non_empty_output_dir_at_that_field(ctx):
    specs = train_tab.specs()
    shown = train_tab.preset_values(ctx, train_tab.presets()["smollm2-135m/lora_sft"])
    names = [spec.name for spec in specs]
    shown[names.index("output_dir")] = "run"
    (ctx.workdir / "run").mkdir()
    (ctx.workdir / "run" / "old.txt").write_text("")
    checked = train_tab.start_training(ctx, shown)
    assert checked.config is None and checked.field == "output_dir"
    assert "is not empty" in checked.error
    assert ctx.runner.job("train") is None  # nothing started


def test_the_run_panel_reads_progress_and_curves_from_the_log():
    entries = [
        {"step": 1, "total_steps": 4, "loss": 2.0, "elapsed_s": 10.0},
        {"step": 2, "total_steps": 4, "loss": 1.8, "elapsed_s": 20.0},
        {"step": 2, "total_steps": 4, "eval_loss": 1.9, "elapsed_s": 25.0},
    ]
    fraction, caption = train_tab.progress_of(entries, "en")
    assert fraction == 0.5
    assert "step 2/4" in caption and "loss 1.8000" in caption and "eval_loss 1.9000" in caption
    assert "about 25s left" in caption  # 25 s for 2 steps, 2 to go
    loss, evals = train_tab.curves(entries)
    assert list(loss[loss.series == "loss"]["loss"]) == [2.0, 1.8]
    assert set(loss.series) == {"loss", "smoothed"}
    assert list(evals["eval_loss"]) == [1.9]
    assert train_tab.progress_of([], "en") == (None, "waiting for the first logged step...")


def test_the_page_builds_and_every_bound_text_switches_language(tmp_path):
    from anxin.board.app import build_board

    page, ctx = build_board(tmp_path, "zh")
    assert len(ctx.labels.switch("en")) == len(ctx.labels.components()) > 50
    fields = {c.elem_id for c in page.blocks.values() if str(c.elem_id).startswith("field-")}
    assert fields == {f"field-{name}" for name in field_owners(TrainConfig)}
    page.close()


def test_a_reopened_board_shows_the_last_runs_form(ctx):
    from anxin.board.app import _last_run_form

    specs = train_tab.specs()
    shown = train_tab.preset_values(ctx, train_tab.presets()["smollm2-135m/lora_sft"])
    shown[[s.name for s in specs].index("max_steps")] = 7
    config = ctx.home / "runs" / "train-x.yaml"
    config.parent.mkdir(parents=True)
    config.write_text(form.to_yaml(specs, form.form_values(specs, shown)))
    ctx.runner.start("train", ["true"], {"config": str(config), "output_dir": "run"})
    assert _last_run_form(ctx) == shown
    assert Path(config).is_file()


def test_the_board_binds_beyond_localhost_only_with_a_login(capsys, monkeypatch):
    from anxin.cli import main as anxin

    monkeypatch.delenv("ANXIN_WEB_AUTH", raising=False)
    assert anxin(["board", "--host", "0.0.0.0"]) == 2
    assert "set --auth USER:PASSWORD" in capsys.readouterr().err
    assert anxin(["board", "--auth", "nopassword"]) == 2
    assert "USER:PASSWORD" in capsys.readouterr().err


def test_chat_settings_are_generation_settings_and_an_empty_seed_is_none():
    from anxin.board.chat_tab import chosen_settings
    from anxin.generation import setting_defaults

    defaults = list(setting_defaults().values())
    assert chosen_settings(defaults[:-1] + [""]).seed is None
    assert chosen_settings([40.0, 0, 0.9, 50, 1.1, "7"]).max_new_tokens == 40
    with pytest.raises(ValueError, match="seed: expected a number"):
        chosen_settings(defaults[:-1] + ["x"])
    with pytest.raises(ValueError, match="max_new_tokens must be >= 1"):
        chosen_settings([0, *defaults[1:]])
