"""What every text generator shares: settings, statistics, the Backend protocol, detokenising.

This module is a leaf (it imports nothing from anxin), so the Engine, the backends, the GGUF
exporter and the command-line flags can all read the same defaults without importing each
other.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, fields
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class GenerationSettings:
    """Sampling defaults chosen for supportive dialogue: varied but calm, no loops."""

    max_new_tokens: int = 256
    temperature: float = 0.7  # 0 means greedy decoding
    top_p: float = 0.9
    top_k: int = 50
    repetition_penalty: float = 1.1
    seed: int | None = None

    def __post_init__(self):
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        if self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


# One line of help per setting, for every command that exposes them as flags.
SETTING_HELP = {
    "max_new_tokens": "longest reply in tokens",
    "temperature": "0 means greedy",
    "top_p": "nucleus sampling: keep the smallest set of tokens with this much probability",
    "top_k": "sample among the k most likely tokens (0: no limit)",
    "repetition_penalty": "above 1 discourages loops",
    "seed": "fix sampling for reproducible replies",
}


def setting_defaults() -> dict:
    """GenerationSettings' defaults by field name: the one source for flags and help."""
    return {f.name: f.default for f in fields(GenerationSettings)}


@dataclass
class GenerationStats:
    """Filled in by a backend while it generates."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"  # "stop" | "length"
    cached_tokens: int = 0  # prompt tokens whose KV cache was reused from the previous turn


@runtime_checkable
class Backend(Protocol):
    """What the Engine needs from a text generator.

    Backends return reply text as generated (no stripping: the Engine tidies every reply the
    same way). A backend that can compute teacher-forced losses also has `score` (see
    `anxin.backends.hf.TransformersBackend.score`); evaluation asks with `hasattr`.
    """

    name: str
    context_length: int

    def count_tokens(self, messages: list[dict]) -> int: ...

    def stream(
        self,
        messages: list[dict],
        settings: GenerationSettings,
        stats: GenerationStats,
        stop: threading.Event | None = None,
    ) -> Iterator[str]: ...

    def generate_batch(
        self, conversations: list[list[dict]], settings: GenerationSettings
    ) -> list[tuple[str, GenerationStats]]: ...


REPLACEMENT_CHARACTER = "\ufffd"  # what decoding half of a multi-byte character gives


class IncrementalDetokenizer:
    """Text deltas from a growing list of token ids, never splitting a multi-byte character.

    Only a short window is decoded each time (the ids since the last emitted delta, plus the
    ones just before them for context, which byte-level BPE needs to place spaces), so a long
    reply costs the same per token as a short one.
    """

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.prefix = 0  # start of the context window
        self.read = 0  # ids up to here have been emitted as text

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def add(self, token_id: int) -> str:
        """The new text this token completes ("" while a character is still partial)."""
        self.ids.append(token_id)
        before = self._decode(self.ids[self.prefix : self.read])
        after = self._decode(self.ids[self.prefix :])
        if len(after) <= len(before) or after.endswith(REPLACEMENT_CHARACTER):
            return ""  # a partial character: wait for the bytes that complete it
        self.prefix, self.read = self.read, len(self.ids)
        return after[len(before) :]

    def finish(self) -> str:
        """Whatever is left; a character still incomplete at the end is dropped."""
        before = self._decode(self.ids[self.prefix : self.read])
        after = self._decode(self.ids[self.prefix :])
        self.prefix = self.read = len(self.ids)
        return after[len(before) :].replace(REPLACEMENT_CHARACTER, "")


def decode_reply(tokenizer, ids: list[int]) -> str:
    """Reply text without special tokens or a dangling partial character at the end."""
    return tokenizer.decode(ids, skip_special_tokens=True).rstrip(REPLACEMENT_CHARACTER)
