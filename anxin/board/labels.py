"""The board's words in Chinese and English (labels.json), and the language toggle.

labels.json maps each key to {"zh": ..., "en": ...}; a test checks that every key has both.
Config keys (lora_rank, cutoff_len...) are shown as they are in YAML, in both languages, with
the help text their dataclass gives; section titles are translated where labels.json has
`section.NAME`, else the section's own docstring is shown.

`Labels` hands out the text for the page's language and remembers which component shows which
key, so the toggle can return one update per component.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

LANGUAGES = ("zh", "en")
LABELS_FILE = Path(__file__).with_name("labels.json")


@cache
def load_labels(path: Path = LABELS_FILE) -> dict[str, dict[str, str]]:
    return json.loads(path.read_text(encoding="utf-8"))


def text(key: str, language: str) -> str:
    return load_labels()[key][language]


class Labels:
    """Text in the page's language, and the components to update when it changes."""

    def __init__(self, language: str = "zh"):
        if language not in LANGUAGES:
            raise ValueError(f"language must be one of {', '.join(LANGUAGES)}")
        self.language = language
        self.bound: list[tuple[Any, str, Callable[[str], str]]] = []

    def __call__(self, key: str) -> str:
        return text(key, self.language)

    def bind(self, component, prop: str, key: str | Callable[[str], str]):
        """Show `key` (or `key(language)`) as the component's `prop`; returns the component.
        (A status note binds `lambda language: ""`: the toggle clears it, not leaving a line
        in the other language.)"""
        words = key if callable(key) else (lambda language, key=key: text(key, language))
        self.bound.append((component, prop, words))
        return component

    def make(self, cls, key: str, prop: str = "label", **options):
        """`cls(**{prop: text of key}, **options)`, bound for the toggle."""
        return self.bind(cls(**{prop: self(key)}, **options), prop, key)

    def components(self) -> list:
        return [component for component, _, _ in self.bound]

    def switch(self, language: str) -> list[dict]:
        """One update per bound component, in `components()` order."""
        import gradio as gr

        return [gr.update(**{prop: words(language)}) for _, prop, words in self.bound]
