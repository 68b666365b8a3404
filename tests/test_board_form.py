"""`anxin board` forms: generated from the config dataclasses, round-tripping through YAML and
the command line, and reporting a bad value against its own field."""

from __future__ import annotations

import argparse
import dataclasses
import re
import shlex
from pathlib import Path

import pytest

from anxin.board import form
from anxin.board.labels import LANGUAGES, load_labels
from anxin.config import arg, build_config, field_owners, flatten, parse_overrides, read_yaml
from anxin.errors import ConfigError
from anxin.evaluate import EvalConfig, add_arguments
from anxin.train.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
PRESETS = sorted((ROOT / "configs").glob("*/*.yaml"))
SPECS = form.train_fields(TrainConfig)


def test_every_train_config_field_is_in_the_form_with_its_default():
    assert [spec.name for spec in SPECS] == list(field_owners(TrainConfig))
    shown = form.defaults(SPECS)
    for spec, value in zip(SPECS, shown):
        owner = field_owners(TrainConfig)[spec.name][1]
        expected = (
            owner.default_factory() if owner.default is dataclasses.MISSING else owner.default
        )
        assert form.config_value(spec, value) == expected, spec.name
    # and the defaults build the same config as an empty YAML file does
    values = {**form.form_values(SPECS, shown), "dataset": "toy"}
    assert flatten(build_config(TrainConfig, values)) == flatten(
        build_config(TrainConfig, {"dataset": "toy"})
    )


@dataclasses.dataclass
class Preference:
    """Preference training (a section the board has never heard of)."""

    pref_beta: float = arg(0.1, "how far the policy may move from the reference")
    pref_loss: str = arg("sigmoid", "the loss", choices=("sigmoid", "hinge"))


@dataclasses.dataclass
class Extended(TrainConfig):
    pref: Preference = dataclasses.field(default_factory=Preference)


def test_a_field_added_to_the_config_appears_in_the_form_by_itself():
    specs = {spec.name: spec for spec in form.train_fields(Extended)}
    assert specs["pref_beta"].kind == "float" and specs["pref_beta"].default == 0.1
    assert specs["pref_loss"].kind == "choice" and specs["pref_loss"].choices == (
        "sigmoid",
        "hinge",
    )
    assert specs["pref_beta"].section == "pref"


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_a_preset_round_trips_through_the_form_and_its_yaml(preset):
    shown = form.file_to_widgets(SPECS, preset)
    yaml_text = form.to_yaml(SPECS, form.form_values(SPECS, shown))
    assert form.yaml_to_widgets(SPECS, yaml_text) == shown  # form -> YAML -> the same form
    again = form.to_yaml(SPECS, form.form_values(SPECS, form.yaml_to_widgets(SPECS, yaml_text)))
    assert again == yaml_text
    from_file = build_config(TrainConfig, read_yaml(preset))
    from_form = build_config(TrainConfig, form.form_values(SPECS, shown))
    assert flatten(from_form) == flatten(from_file)
    assert "### model" in yaml_text and "do_train: true" in yaml_text  # LLaMA-Factory's layout


def test_the_command_preview_trains_what_the_form_says():
    shown = form.file_to_widgets(SPECS, ROOT / "configs/smollm2-135m/lora_sft.yaml")
    by_name = {spec.name: i for i, spec in enumerate(SPECS)}
    shown[by_name["default_system"]] = "你是: 一位倾听者 # not a comment"
    shown[by_name["lora_target"]] = "q_proj,v_proj"
    values = form.form_values(SPECS, shown)
    command = form.train_command(SPECS, values)
    words = shlex.split(command.replace("\\\n", " "))
    assert words[:2] == ["anxin", "train"]
    from_command = build_config(TrainConfig, parse_overrides(words[2:]))
    assert flatten(from_command) == flatten(build_config(TrainConfig, values))
    assert from_command.model.default_system == "你是: 一位倾听者 # not a comment"


def test_text_fields_take_yaml_values_and_optional_text_may_be_empty():
    spec = {s.name: s for s in SPECS}
    assert form.config_value(spec["bf16"], "true") is True
    assert form.config_value(spec["bf16"], "auto") == "auto"
    assert form.config_value(spec["lora_alpha"], "") is None
    assert form.config_value(spec["lora_target"], "q_proj, v_proj") == ["q_proj", "v_proj"]
    assert form.config_value(spec["resume_from_checkpoint"], "saves/x/checkpoint-2") == (
        "saves/x/checkpoint-2"
    )
    assert form.config_value(spec["dataset"], "") is None
    with pytest.raises(ConfigError, match="lora_alpha: expected an integer"):
        form.config_value(spec["lora_alpha"], "sixteen")


@pytest.mark.parametrize(
    "key, value, field, words",
    [
        ("lora_rank", 0, "lora_rank", "lora_rank must be > 0"),
        ("lora_alpha", "sixteen", "lora_alpha", "expected an integer"),
        ("eval_steps", "0", "eval_steps", "eval_steps must be > 0"),
        ("lr_scheduler_type", "sometimes", "lr_scheduler_type", "must be one of"),
        ("val_size", 1.5, "val_size", "val_size must be a fraction"),
    ],
)
def test_a_bad_value_is_reported_against_its_own_field(key, value, field, words):
    shown = form.file_to_widgets(SPECS, ROOT / "configs/smollm2-135m/lora_sft.yaml")
    shown[[spec.name for spec in SPECS].index(key)] = value
    checked = form.check_train_form(TrainConfig, SPECS, shown)
    assert checked.config is None
    assert checked.field == field and words in checked.error
    assert not checked.error.startswith("form:")  # one line, no traceback, no source prefix


def test_the_error_the_page_shows_names_its_field_and_nothing_when_all_is_well():
    from anxin.board.widgets import field_error

    shown = form.defaults(SPECS)
    shown[[spec.name for spec in SPECS].index("lora_rank")] = 0
    checked = form.check_train_form(TrainConfig, SPECS, shown)
    assert field_error(checked) == {"id": "field-lora_rank", "message": checked.error}
    shown[[spec.name for spec in SPECS].index("lora_rank")] = 8
    shown[[spec.name for spec in SPECS].index("dataset")] = "toy"
    assert field_error(form.check_train_form(TrainConfig, SPECS, shown)) == {}


def test_the_field_named_is_the_first_and_longest_key_in_the_message():
    names = ["steps", "eval_steps", "save_steps", "max_turns"]
    assert form.field_named_in("eval_steps must be > 0", names) == "eval_steps"
    assert form.field_named_in("save_steps (10) must be a multiple of eval_steps", names) == (
        "save_steps"
    )
    assert form.field_named_in("--max-turns: must be >= 0", names) == "max_turns"
    assert form.field_named_in("nothing here", names) is None


def test_unknown_keys_in_a_loaded_yaml_name_the_closest_one():
    with pytest.raises(ConfigError, match="unknown key 'lora_rnak'; did you mean 'lora_rank'"):
        form.yaml_to_widgets(SPECS, "lora_rnak: 8\n")


# --- the Evaluate form: EvalConfig's own flags ------------------------------------------------

EVAL_SPECS = form.flag_fields(EvalConfig)


def test_the_eval_form_is_every_eval_flag_and_builds_what_the_command_line_builds():
    assert [spec.name for spec in EVAL_SPECS] == [f.name for f in dataclasses.fields(EvalConfig)]
    shown = [form.flag_widget_value(spec) for spec in EVAL_SPECS]
    by_name = {spec.name: i for i, spec in enumerate(EVAL_SPECS)}
    shown[by_name["data"]] = "saves/run/validation.jsonl"
    shown[by_name["out"]] = "saves/run/eval"
    shown[by_name["max_turns"]] = "all"
    shown[by_name["temperature"]] = 0.7
    shown[by_name["progress"]] = False
    checked = form.check_flag_form(EvalConfig, EVAL_SPECS, shown)
    assert checked.config is not None, checked.error
    argv = form.flag_arguments(EVAL_SPECS, shown)
    assert "--no-progress" in argv and argv[argv.index("--max-turns") :][:2] == [
        "--max-turns",
        "all",
    ]
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    from_command = EvalConfig(
        **{k: v for k, v in vars(parser.parse_args(argv)).items() if k in by_name}
    )
    assert from_command == checked.config


def test_the_eval_form_names_a_missing_or_bad_flag():
    shown = [form.flag_widget_value(spec) for spec in EVAL_SPECS]
    checked = form.check_flag_form(EvalConfig, EVAL_SPECS, shown)
    assert checked.field == "data" and "required" in checked.error
    by_name = {spec.name: i for i, spec in enumerate(EVAL_SPECS)}
    shown[by_name["data"]], shown[by_name["out"]] = "v.jsonl", "out"
    shown[by_name["batch_size"]] = 0
    checked = form.check_flag_form(EvalConfig, EVAL_SPECS, shown)
    assert checked.field == "batch_size" and "batch_size must be >= 1" in checked.error


# --- the words --------------------------------------------------------------------------------


def test_every_label_has_both_languages():
    for key, words in load_labels().items():
        assert set(words) == set(LANGUAGES), key
        assert all(words[language].strip() for language in LANGUAGES), key


def test_every_label_the_code_names_exists():
    source = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "anxin/board").glob("*.py"))
    used = set(re.findall(r"[\"']((?:board|tab|section|phase|job|data|train|eval|chat|export)"
                          r"\.[a-z_]+)[\"']", source))  # fmt: skip
    used |= {f"phase.{p}" for p in ("none", "running", "stopping", "finished", "failed", "stopped")}
    used |= {"chat.base", "chat.tuned"}  # built as f"chat.{side}"
    used -= {"train.yaml"}  # a file name, not a label
    assert used - set(load_labels()) == set()
