"""Typed configs: dataclasses filled from a YAML file, then `key=value` overrides.

A command's config is a dataclass whose fields are *sections* (themselves dataclasses, such as
`ModelArgs`). The YAML file is flat, like LLaMA-Factory's, so a user's existing file works: each
key is routed to the section that owns a field of that name. Every field carries a one-line
help text (`metadata["help"]`) that `describe_config` turns into `--help` output, and each
section validates its own values in `__post_init__`.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from anxin.errors import ConfigError


def arg(default: Any = dataclasses.MISSING, help: str = "", *, factory=None, **flag) -> Any:
    """A dataclass field with its help text; `factory` for mutable defaults. `flag` holds extra
    argparse options (metavar, type, choices) for commands whose flags come from the fields."""
    metadata = {"help": help, "flag": flag}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def add_flags(parser, config_cls: type) -> None:
    """One `--flag` per field of a flat config dataclass: name, type, default and help all come
    from the field, so `--help` and the Python API cannot disagree. A bool that defaults to True
    becomes `--no-NAME`; a field without a default is a required flag."""
    hints = typing.get_type_hints(config_cls)
    for f in dataclasses.fields(config_cls):
        options = dict(f.metadata.get("flag", {}))
        help_text = f.metadata.get("help", "")
        flag = "--" + f.name.replace("_", "-")
        if hints[f.name] is bool:
            flag = ("--no-" if f.default else "--") + f.name.replace("_", "-")
            action = "store_false" if f.default else "store_true"
            help_text = f"turn off: {help_text}" if f.default else help_text
            parser.add_argument(flag, dest=f.name, action=action, help=help_text)
            continue
        if f.default is dataclasses.MISSING:
            options["required"] = True
        else:
            options["default"] = f.default
            if f.default is not None:
                help_text += f" (default: {f.default})"
        options.setdefault("type", _scalar_type(hints[f.name]))
        parser.add_argument(flag, dest=f.name, help=help_text, **options)


def _scalar_type(type_: Any):
    options = [t for t in typing.get_args(type_) if t is not type(None)] or [type_]
    return options[0] if options[0] in (int, float) else str


def from_flags(config_cls: type, args) -> Any:
    """The config from parsed flags (see `add_flags`); bad values raise ConfigError."""
    names = {f.name for f in dataclasses.fields(config_cls)}
    try:
        return config_cls(**{k: v for k, v in vars(args).items() if k in names})
    except ValueError as error:
        raise ConfigError(str(error)) from None


def sections(config_cls: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(config_cls) if dataclasses.is_dataclass(f.type)]


def _section_types(config_cls: type) -> dict[str, type]:
    hints = typing.get_type_hints(config_cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(config_cls)}


def field_owners(config_cls: type) -> dict[str, tuple[str, dataclasses.Field, Any]]:
    """Map every flat key to (section name, field, resolved type)."""
    owners = {}
    for section_name, section_type in _section_types(config_cls).items():
        hints = typing.get_type_hints(section_type)
        for f in dataclasses.fields(section_type):
            owners[f.name] = (section_name, f, hints[f.name])
    return owners


def closest_key(key: str, valid: list[str]) -> str | None:
    matches = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    return matches[0] if matches else None


def coerce(value: Any, type_: Any, key: str) -> Any:
    """Convert a YAML/CLI value to the field's declared type, or explain why not."""
    origin = typing.get_origin(type_)
    if origin in (typing.Union, types.UnionType):
        options = [t for t in typing.get_args(type_) if t is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        errors = []
        for option in options:
            try:
                return coerce(value, option, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0])
    if origin is list:
        (item_type,) = typing.get_args(type_) or (str,)
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [coerce(v, item_type, key) for v in value]
    if type_ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if type_ in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        try:
            number = type_(value) if type_ is float else _to_int(value)
        except (TypeError, ValueError):
            raise ConfigError(
                f"{key}: expected {'an integer' if type_ is int else 'a number'}, got {value!r}"
            ) from None
        return number
    if type_ is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        if isinstance(value, bool):  # YAML 1.1 reads a bare no/off as false (eval_strategy: no)
            return "yes" if value else "no"
        return str(value)
    if type_ in (dict, typing.Any) or origin is dict:
        return value
    return value


def _to_int(value: Any) -> int:
    if isinstance(value, float) and not value.is_integer():
        raise ValueError(value)
    return int(float(value)) if isinstance(value, str) and "e" in value.lower() else int(value)


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """Turn `["lr=1e-4", "lora_target=q_proj,v_proj"]` into a dict; values parsed as YAML."""
    parsed = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {pair!r}: expected key=value")
        parsed[key.strip()] = yaml.safe_load(raw) if raw.strip() else ""
    return parsed


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = 1 + raw.count(b"\n", 0, e.start)
        raise ConfigError(f"{path}:{line}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: invalid YAML: {getattr(e, 'problem', e)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of key: value at the top level")
    return data


def build_config(
    config_cls: type,
    values: dict[str, Any],
    source: str = "config",
    key_sources: dict[str, str] | None = None,
):
    """Route flat `values` to their sections, coerce types, construct and validate.

    `key_sources` says where each key came from when not all came from `source` (a YAML file
    and command-line overrides), so an unknown key is blamed on the right one."""
    owners = field_owners(config_cls)
    per_section: dict[str, dict[str, Any]] = {name: {} for name in _section_types(config_cls)}
    # A config may know keys of another tool that it does not take as fields (LLaMA-Factory's):
    # `foreign_key(key, value)` returns True for one accepted as it is, raises ConfigError with
    # the reason for one refused, and returns False for a key it does not know either.
    foreign_key = getattr(config_cls, "foreign_key", None)
    for key, value in values.items():
        if key not in owners and foreign_key is not None and foreign_key(key, value):
            continue
        if key not in owners:
            hint = closest_key(key, list(owners))
            suggestion = f"; did you mean '{hint}'?" if hint else ""
            where = (key_sources or {}).get(key, source)
            raise ConfigError(f"{where}: unknown key '{key}'{suggestion}")
        section_name, f, type_ = owners[key]
        per_section[section_name][key] = coerce(value, type_, key)
    built = {}
    for section_name, section_type in _section_types(config_cls).items():
        try:
            built[section_name] = section_type(**per_section[section_name])
        except (ValueError, TypeError) as e:
            raise ConfigError(f"{source}: {e}") from None
    try:
        return config_cls(**built)
    except ValueError as e:
        raise ConfigError(f"{source}: {e}") from None


def load_config(config_cls: type, path: str | Path | None = None, overrides: list[str] = ()):
    """YAML defaults (if `path`), then `key=value` overrides, into a validated config."""
    values: dict[str, Any] = {}
    source = "command line"
    if path is not None:
        values.update(read_yaml(path))
        source = str(path)
    from_command_line = parse_overrides(list(overrides))
    values.update(from_command_line)
    key_sources = {key: "command line" for key in from_command_line}
    return build_config(config_cls, values, source, key_sources)


def flatten(config) -> dict[str, Any]:
    """The resolved config as one flat dict (what run.json records)."""
    flat = {}
    for f in dataclasses.fields(config):
        flat.update(dataclasses.asdict(getattr(config, f.name)))
    return flat


def describe_config(config_cls: type) -> str:
    """Every key with its type, default and meaning, grouped by section (for --help)."""
    lines = []
    for section_name, section_type in _section_types(config_cls).items():
        title = (section_type.__doc__ or section_name).strip().splitlines()[0]
        lines.append(f"{section_name} — {title}")
        hints = typing.get_type_hints(section_type)
        for f in dataclasses.fields(section_type):
            default = f.default if f.default is not dataclasses.MISSING else None
            if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
                default = f.default_factory()  # type: ignore[misc]
            type_name = getattr(hints[f.name], "__name__", str(hints[f.name]))
            type_name = type_name.replace("typing.", "")
            lines.append(f"  {f.name} ({type_name}, default {default!r})")
            lines.append(f"      {f.metadata.get('help', '')}")
        lines.append("")
    return "\n".join(lines)
