"""LLaMA-Factory's YAML keys that are not fields of anxin's TrainConfig: accepted or refused.

A user's `llamafactory-cli train` file should load unchanged or fail with a reason, never with
"unknown key". The keys, the values that change nothing in anxin, and the reason for refusing
the others live in anxin/resources/llamafactory_keys.yaml (reviewable data); this module only
reads and applies it. `anxin.config.build_config` calls `llamafactory_key` for every key that
is not a field.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from anxin.errors import ConfigError

KEYS_FILE = Path(__file__).resolve().parent.parent / "resources" / "llamafactory_keys.yaml"
ANY = "any"


@dataclass(frozen=True)
class ForeignKey:
    """One LLaMA-Factory key: the values anxin accepts (or ANY) and why it refuses the rest."""

    name: str
    accepted: tuple | str
    why: str

    def accepts(self, value: Any) -> bool:
        return self.accepted == ANY or any(_same(value, ok) for ok in self.accepted)

    def refusal(self) -> str:
        return f"LLaMA-Factory's `{self.name}` is not supported by anxin: {self.why}"


def _same(value: Any, accepted: Any) -> bool:
    """YAML and `key=value` spell values loosely: auto and "auto", 2 and 2.0 are the same."""
    if isinstance(value, bool) or isinstance(accepted, bool):
        return value is accepted
    if isinstance(value, str) and isinstance(accepted, str):
        return value.strip().lower() == accepted.lower()
    return value == accepted


@functools.cache
def foreign_keys() -> dict[str, ForeignKey]:
    """Every key of the data file, by name."""
    table: dict[str, ForeignKey] = {}
    for group in yaml.safe_load(KEYS_FILE.read_text(encoding="utf-8")):
        for name, accepted in group["keys"].items():
            if name in table:
                raise ValueError(f"{KEYS_FILE.name}: {name} is listed twice")
            accepted = accepted if accepted == ANY else tuple(accepted)
            table[name] = ForeignKey(name, accepted, group["why"])
    return table


def llamafactory_key(key: str, value: Any) -> bool:
    """True when `key` is LLaMA-Factory's and `value` changes nothing in anxin; ConfigError
    with the reason when anxin cannot do what it asks; False when LLaMA-Factory has no such
    key either."""
    known = foreign_keys().get(key)
    if known is None:
        return False
    if known.accepts(value):
        return True
    raise ConfigError(known.refusal())
