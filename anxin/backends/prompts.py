"""The chat template as every backend uses it: set up and checked once, then rendered to ids.

Backends never apply a template of their own: the prompt is the training template rendered by
the HF tokenizer (`anxin.template.render_prompt`), so training, chat, evaluation and every
backend see the same tokens, and generation stops at the template's end-of-turn token.
"""

from __future__ import annotations

from pathlib import Path

from anxin.generation import IncrementalDetokenizer
from anxin.template import apply_template, check_template, render_prompt, stop_token_ids


class ChatPrompts:
    """A tokenizer with its chat template in place: prompt ids, stop ids, token counts."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.stop_ids = stop_token_ids(tokenizer)
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else self.stop_ids[0]

    @classmethod
    def prepare(
        cls,
        tokenizer,
        template: str | None = None,
        trained_in: str | Path | None = None,
        allow_template_mismatch: bool = False,
    ) -> ChatPrompts:
        """Apply a named template (None: the tokenizer's own, which must exist), then refuse one
        that differs from the template the model in `trained_in` was trained with (its
        `anxin_template.json`)."""
        apply_template(tokenizer, template)
        check_template(tokenizer, trained_in, allow_template_mismatch)
        return cls(tokenizer)

    def ids(self, messages: list[dict]) -> list[int]:
        """The inference prompt: the conversation plus the assistant's header."""
        return render_prompt(self.tokenizer, messages)

    def count_tokens(self, messages: list[dict]) -> int:
        return len(self.ids(messages))

    def detokenizer(self) -> IncrementalDetokenizer:
        return IncrementalDetokenizer(self.tokenizer)
