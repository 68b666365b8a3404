"""The board's forms, generated from the config dataclasses, and their YAML and command lines.

No Gradio here: this module turns a config class into a list of `FieldSpec`s (one per field,
with its name, help, default and widget kind), widget values into a checked config, and a
config into YAML or an `anxin train key=value ...` line. The Train form is TrainConfig itself,
so a field added to the dataclass appears in the form, the YAML and the validation at once,
and a bad value is reported against the field its error message names.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from anxin.config import build_config, closest_key, coerce, field_owners, read_yaml
from anxin.errors import ConfigError

# Written even at their default values: LLaMA-Factory needs them in a file (its do_train
# defaults to false, it has no default model, template or output_dir), so a YAML saved here
# also runs under llamafactory-cli, and a reader sees the model and data at a glance.
ALWAYS_WRITTEN = ("model_name_or_path", "template", "stage", "do_train", "finetuning_type",
                  "dataset", "output_dir")  # fmt: skip


@dataclass(frozen=True)
class FieldSpec:
    """One form field: a config key and how to show it."""

    name: str
    section: str  # the config's section attribute (model, method, data...); "" for flat configs
    kind: str  # bool | int | float | choice | text
    type: Any  # the declared type (coerced to on the way back)
    default: Any
    help: str
    choices: tuple = ()
    required: bool = False
    flag: str = ""  # the command-line flag, for configs whose flags come from their fields
    convert: Any = None  # the flag's own parser (argparse `type=`), when it has one

    @property
    def optional(self) -> bool:
        return type(None) in typing.get_args(self.type)


def _default_of(f: dataclasses.Field) -> Any:
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None if f.default is dataclasses.MISSING else f.default


def _kind(type_: Any, choices: tuple) -> str:
    if choices:
        return "choice"
    if type_ is bool:
        return "bool"
    if type_ in (int, float):
        return type_.__name__
    return "text"


def train_fields(config_cls: type) -> list[FieldSpec]:
    """Every key of a sectioned config (TrainConfig), section by section, in declaration order."""
    specs = []
    for name, (section, f, type_) in field_owners(config_cls).items():
        choices = tuple(f.metadata.get("flag", {}).get("choices", ()))
        specs.append(
            FieldSpec(name, section, _kind(type_, choices), type_, _default_of(f),
                      f.metadata.get("help", ""), choices)
        )  # fmt: skip
    return specs


def flag_fields(config_cls: type) -> list[FieldSpec]:
    """The fields of a flat config whose flags come from its fields (EvalConfig, add_flags)."""
    hints = typing.get_type_hints(config_cls)
    specs = []
    for f in dataclasses.fields(config_cls):
        options = f.metadata.get("flag", {})
        type_ = hints[f.name]
        dashed = f.name.replace("_", "-")
        flag = f"--{dashed}"
        if type_ is bool:
            flag = f"--no-{dashed}" if f.default else flag
        specs.append(
            FieldSpec(
                f.name, "", _kind(type_, tuple(options.get("choices", ()))), type_,
                _default_of(f), f.metadata.get("help", ""), tuple(options.get("choices", ())),
                required=f.default is dataclasses.MISSING, flag=flag, convert=options.get("type"),
            )
        )  # fmt: skip
    return specs


# --- widget values <-> config values ----------------------------------------------------------


def _is_text(type_: Any) -> bool:
    """str or str | None: typed text is taken as it is, never parsed as YAML."""
    origin = typing.get_origin(type_)
    if origin in (typing.Union, types.UnionType):
        return {t for t in typing.get_args(type_) if t is not type(None)} == {str}
    return type_ is str


def as_text(value: Any) -> str:
    """How a value reads in a text box: lists comma-joined, booleans as YAML writes them."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def widget_value(spec: FieldSpec, value: Any) -> Any:
    """What the widget of `spec` shows for a config value."""
    if spec.kind in ("bool", "int", "float", "choice"):
        return value
    return as_text(value)


def config_value(spec: FieldSpec, shown: Any) -> Any:
    """The config value for what the widget shows; ConfigError naming the key if it is bad."""
    if spec.kind != "text":
        return coerce(shown, spec.type, spec.name)
    text = "" if shown is None else str(shown)
    if _is_text(spec.type):
        return None if text == "" and spec.optional else text
    if not text.strip():
        return coerce(None, spec.type, spec.name)
    try:
        parsed = yaml.safe_load(text)
    except yaml.YAMLError:
        parsed = text
    return coerce(parsed, spec.type, spec.name)


def form_values(specs: list[FieldSpec], shown: list[Any]) -> dict[str, Any]:
    """{key: config value} from the widgets, in form order."""
    return {spec.name: config_value(spec, value) for spec, value in zip(specs, shown, strict=True)}


def defaults(specs: list[FieldSpec]) -> list[Any]:
    return [widget_value(spec, spec.default) for spec in specs]


# --- errors, next to their field --------------------------------------------------------------


def field_named_in(message: str, names: list[str]) -> str | None:
    """The field an error message is about: the first key it mentions (the longest one where
    two start at the same place, so `eval_steps` wins over `steps`)."""
    found = []
    for name in names:
        for pattern in (name, name.replace("_", "-")):
            match = re.search(rf"(?<!\w){re.escape(pattern)}(?![\w-])", message)
            if match:
                found.append((match.start(), -len(name), name))
    return min(found)[2] if found else None


def without_source(message: str, source: str) -> str:
    return message.removeprefix(f"{source}: ")


@dataclass
class Checked:
    """A form's values checked against its config: the config, or the error and its field."""

    config: Any = None
    error: str | None = None
    field: str | None = None


def check_train_form(config_cls: type, specs: list[FieldSpec], shown: list[Any]) -> Checked:
    """Coerce and validate the Train form exactly as `anxin train` checks a YAML file."""
    names = [spec.name for spec in specs]
    try:
        values = form_values(specs, shown)
        return Checked(config=build_config(config_cls, values, source="form"))
    except ConfigError as error:
        message = without_source(str(error), "form")
        return Checked(error=message, field=field_named_in(message, names))


# --- YAML and the command line ----------------------------------------------------------------


def changed(specs: list[FieldSpec], values: dict[str, Any]) -> dict[str, Any]:
    """The keys that differ from their defaults (plus ALWAYS_WRITTEN), in form order."""
    return {
        spec.name: values[spec.name]
        for spec in specs
        if spec.name in ALWAYS_WRITTEN or values[spec.name] != spec.default
    }


def _yaml_ready(value: Any) -> Any:
    # Lists as LLaMA-Factory writes them (lora_target: q_proj,v_proj).
    return ",".join(str(v) for v in value) if isinstance(value, list) else value


def to_yaml(specs: list[FieldSpec], values: dict[str, Any]) -> str:
    """A YAML file in LLaMA-Factory's layout: `### section` blocks of the changed keys."""
    kept = changed(specs, values)
    blocks = []
    for section in dict.fromkeys(spec.section for spec in specs):
        entries = {s.name: _yaml_ready(kept[s.name]) for s in specs
                   if s.section == section and s.name in kept}  # fmt: skip
        if entries:
            body = yaml.safe_dump(entries, sort_keys=False, allow_unicode=True, width=10_000)
            blocks.append(f"### {section}\n{body}")
    return "\n".join(blocks)


def mapping_to_widgets(specs: list[FieldSpec], mapping: dict[str, Any], source: str) -> list[Any]:
    """Widget values for a YAML mapping: unknown keys and bad values raise ConfigError."""
    by_name = {spec.name: spec for spec in specs}
    check_keys_known(list(by_name), mapping, source)
    shown = []
    for spec in specs:
        value = mapping.get(spec.name, spec.default)
        try:
            shown.append(widget_value(spec, coerce(value, spec.type, spec.name)))
        except ConfigError as error:
            raise ConfigError(f"{source}: {error}") from None
    return shown


def check_keys_known(names: list[str], mapping: dict, source: str) -> None:
    for key in mapping:
        if key not in names:
            hint = closest_key(key, names)
            raise ConfigError(
                f"{source}: unknown key '{key}'" + (f"; did you mean '{hint}'?" if hint else "")
            )


def yaml_to_widgets(specs: list[FieldSpec], text: str, source: str = "YAML") -> list[Any]:
    try:
        mapping = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{source}: invalid YAML: {getattr(error, 'problem', error)}") from None
    if not isinstance(mapping, dict):
        raise ConfigError(f"{source}: expected a mapping of key: value at the top level")
    return mapping_to_widgets(specs, mapping, source)


def file_to_widgets(specs: list[FieldSpec], path: str | Path) -> list[Any]:
    return mapping_to_widgets(specs, read_yaml(path), str(path))


def override_text(value: Any) -> str:
    """A value as `key=value` needs it: YAML-quoted where YAML would misread it."""
    dumped = yaml.safe_dump(_yaml_ready(value), allow_unicode=True, width=10_000)
    return dumped.removesuffix("\n").removesuffix("\n...").strip()


def train_command(specs: list[FieldSpec], values: dict[str, Any], program="anxin train") -> str:
    """The shell command that trains what the form says, one key per line."""
    pairs = [f"{k}={override_text(v)}" for k, v in changed(specs, values).items()]
    return " \\\n    ".join([program, *(shlex.quote(pair) for pair in pairs)])


# --- flat configs driven by flags (anxin eval) ------------------------------------------------


def flag_value(spec: FieldSpec, shown: Any) -> Any:
    """The config value for a flag widget, parsed as argparse would parse the flag."""
    if spec.kind == "bool":
        return bool(shown)
    text = "" if shown is None else str(shown).strip()
    if not text:
        if spec.required:
            raise ConfigError(f"{spec.name}: required")
        return spec.default
    convert = spec.convert or _scalar(spec.type)
    try:
        return convert(text)
    except (TypeError, ValueError) as error:
        detail = str(error) or f"invalid value {text!r}"
        raise ConfigError(f"{spec.name}: {detail}") from None


def _scalar(type_: Any):
    options = [t for t in typing.get_args(type_) if t is not type(None)] or [type_]
    return options[0] if options[0] in (int, float) else str


def flag_widget_value(spec: FieldSpec) -> Any:
    """The widget's first value: the default, as the flag would be typed."""
    return as_text(spec.default) if spec.kind == "text" else spec.default


def check_flag_form(config_cls: type, specs: list[FieldSpec], shown: list[Any]) -> Checked:
    """Parse each flag widget as argparse would, then build the config (its checks run)."""
    try:
        values = {s.name: flag_value(s, v) for s, v in zip(specs, shown, strict=True)}
        return Checked(config=config_cls(**values))
    except (ConfigError, TypeError, ValueError) as error:
        names = [spec.name for spec in specs]
        return Checked(error=str(error), field=field_named_in(str(error), names))


def flag_arguments(specs: list[FieldSpec], shown: list[Any]) -> list[str]:
    """The command-line arguments for the widgets: required flags, and the rest when changed."""
    argv = []
    for spec, value in zip(specs, shown, strict=True):
        if spec.kind == "bool":
            if bool(value) != bool(spec.default):
                argv.append(spec.flag)
            continue
        text = "" if value is None else str(value).strip()
        if text and (spec.required or flag_value(spec, text) != spec.default):
            argv += [spec.flag, text]
    return argv
