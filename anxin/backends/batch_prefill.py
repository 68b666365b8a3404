"""Batched generation's KV cache, prefilled prompt by prompt and grown in place.

generate() on a left-padded batch computes every padded position of every prompt, and its
attention needs an explicit mask, so the causal kernel cannot skip the upper triangle; on
evaluation's SMILECHAT batches (prompts of 250-900 tokens) that is about 15 % more tokens
and twice the attention work. And its DynamicCache appends each decoded token with torch.cat: a
copy of the whole cache per token (a third of a GiB per step for SmolLM2 at batch 8).

Here each prompt but its last token runs alone (no padding, causal attention) and its keys and
values are copied, right-aligned as left padding places them, into one buffer per layer sized
for the whole generation; generate() then starts from that cache with only the last prompt
token to run, and each decoded token is written into the buffer. The positions generate()
derives from the attention mask are those each prompt had when it ran alone, so the result is
the padded batch's up to float rounding.

The prompts of a batch begin alike (the system prompt and the template's first header: 211
tokens of SmolLM2 for anxin's Chinese system prompt, a third of an evaluation's prompt tokens),
so that shared beginning runs once per batch and each prompt continues from its keys and values.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

# A shared beginning shorter than this runs with each prompt: one more forward call would cost
# more than it saves.
MIN_SHARED_TOKENS = 32


class GrowingLayer(DynamicLayer):
    """A DynamicLayer over buffers with room for the tokens still to come: appending writes
    into them instead of copying the cache, and keys/values are views of the filled part."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, filled: int):
        super().__init__()
        self._key_buffer, self._value_buffer, self._filled = keys, values, filled
        self.device, self.is_initialized = keys.device, True
        self._expose()

    def _expose(self) -> None:
        self.keys = self._key_buffer[:, :, : self._filled]
        self.values = self._value_buffer[:, :, : self._filled]

    def update(self, key_states, value_states, *args, **kwargs):
        start, stop = self._filled, self._filled + key_states.shape[-2]
        if stop > self._key_buffer.shape[-2]:  # past the room foreseen: grow as DynamicLayer
            self._key_buffer = torch.cat([self.keys, key_states], dim=-2)
            self._value_buffer = torch.cat([self.values, value_states], dim=-2)
        else:
            self._key_buffer[:, :, start:stop] = key_states
            self._value_buffer[:, :, start:stop] = value_states
        self._filled = stop
        self._expose()
        return self.keys, self.values


def left_padded(prompts: list[list[int]], pad_id: int, device=None):
    """(input_ids, attention_mask) of the prompts padded on the left to the longest, as
    generate() takes a batch."""
    width = max(len(prompt) for prompt in prompts)
    ids = [[pad_id] * (width - len(prompt)) + prompt for prompt in prompts]
    mask = [[0] * (width - len(prompt)) + [1] * len(prompt) for prompt in prompts]
    return torch.tensor(ids, device=device), torch.tensor(mask, device=device)


def supports_prefill(model) -> bool:
    """On the CPU, where it was measured (a GPU prefills a padded batch in parallel), and where
    every cache layer is a plain DynamicLayer (no sliding window, no linear attention)."""
    if model.device.type != "cpu":
        return False
    try:
        layers = DynamicCache(config=model.config).layers
    except (TypeError, ValueError, AttributeError):
        return False
    return bool(layers) and all(type(layer) is DynamicLayer for layer in layers)


def prefilled_cache(model, prompts: list[list[int]], room: int) -> DynamicCache:
    """The cache of every prompt but its last token, rows right-aligned to the longest prompt,
    with `room` more positions for the tokens generate() will add (its last prompt token and
    the new ones). Runs under the caller's inference_mode."""
    heads = [prompt[:-1] for prompt in prompts]  # what the cache holds of each prompt
    width = max(len(head) for head in heads)
    shared = shared_length(heads)
    prefix = _run(model, heads[0][:shared]) if shared else None
    cache = DynamicCache(config=model.config)
    buffers = None
    for row, head in enumerate(heads):
        if not head:
            continue  # a one-token prompt: nothing before its last token, the row stays padding
        alone = _run(model, head[shared:], prefix)
        if buffers is None:
            buffers = [
                _empty_like_rows(layer, len(prompts), width + room) for layer in alone.layers
            ]
        start = width - len(head)
        for layer, (keys, values) in zip(alone.layers, buffers, strict=True):
            keys[row, :, start:width] = layer.keys[0]
            values[row, :, start:width] = layer.values[0]
        del alone
    if buffers is not None:
        cache.layers = [GrowingLayer(keys, values, width) for keys, values in buffers]
    return cache


def shared_length(heads: list[list[int]]) -> int:
    """Tokens every non-empty head begins with, leaving each at least one of its own; 0 when
    that is under MIN_SHARED_TOKENS or there is no second prompt to share with."""
    heads = [head for head in heads if head]
    if len(heads) < 2:
        return 0
    most = min(len(head) for head in heads) - 1
    length = 0
    while length < most and all(head[length] == heads[0][length] for head in heads):
        length += 1
    return length if length >= MIN_SHARED_TOKENS else 0


def _run(model, ids: list[int], prefix: DynamicCache | None = None) -> DynamicCache:
    """The cache after running `ids` (a batch of one), continuing from `prefix` if given."""
    cache = DynamicCache(config=model.config)
    if prefix is not None:
        for layer, before in zip(cache.layers, prefix.layers, strict=True):
            layer.lazy_initialization(before.keys, before.values)
            # Shared, not copied: update() concatenates into new tensors, so the prefix's own
            # keys and values are never written.
            layer.keys, layer.values = before.keys, before.values
    ids = torch.tensor([ids], device=model.device)
    model(input_ids=ids, cache=cache, use_cache=True, logits_to_keep=1)
    return cache


def _empty_like_rows(layer, rows: int, length: int):
    _, heads, _, dim = layer.keys.shape
    shape = (rows, heads, length, dim)
    # Zeros, not garbage: padded positions are masked out, but a NaN there would still poison
    # the attention's weighted sum (0 * NaN).
    keys = layer.keys.new_zeros(shape)
    return keys, layer.values.new_zeros(shape)
