"""Batched generation prefilled prompt by prompt (anxin.backends.batch_prefill): the same
tokens as generate() on the padded batch, the cache written in place, and where it stays off."""

from __future__ import annotations

import pytest
import torch

from anxin.backends.batch_prefill import (
    MIN_SHARED_TOKENS,
    GrowingLayer,
    left_padded,
    prefilled_cache,
    shared_length,
    supports_prefill,
)


@pytest.fixture(scope="module")
def model(talkative_model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(talkative_model_dir, dtype=torch.float32).eval()


def greedy(model, prompts, new_tokens, **kwargs):
    ids, mask = left_padded(prompts, pad_id=0)
    with torch.inference_mode():
        out = model.generate(
            input_ids=ids, attention_mask=mask, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
            do_sample=False, pad_token_id=0, **kwargs,
        )  # fmt: skip
    return out[:, ids.shape[1] :]


def test_same_tokens_as_the_padded_batch(model):
    torch.manual_seed(0)
    prompts = [torch.randint(3, 200, (n,)).tolist() for n in (5, 31, 1, 17, 31)]
    plain = greedy(model, prompts, 12)
    with torch.inference_mode():
        cache = prefilled_cache(model, prompts, room=13)
    assert all(type(layer) is GrowingLayer for layer in cache.layers)
    assert cache.get_seq_length() == 30  # the longest prompt but its last token
    assert torch.equal(greedy(model, prompts, 12, cache=cache), plain)


def test_the_prefilled_rows_are_each_prompt_run_alone(model):
    from transformers import DynamicCache

    prompts = [[5, 6, 7, 8, 9, 10], [11, 12, 13]]
    with torch.inference_mode():
        cache = prefilled_cache(model, prompts, room=4)
        alone = DynamicCache(config=model.config)
        model(input_ids=torch.tensor([prompts[1][:-1]]), cache=alone, use_cache=True)
    keys = cache.layers[0].keys
    assert keys.shape[2] == 5
    assert torch.allclose(keys[1, :, 3:], alone.layers[0].keys[0], atol=1e-6)
    assert torch.count_nonzero(keys[1, :, :3]) == 0  # the padded positions


def test_a_shared_beginning_runs_once_and_changes_nothing(model):
    torch.manual_seed(1)
    system = torch.randint(3, 200, (MIN_SHARED_TOKENS + 8,)).tolist()
    prompts = [system + torch.randint(3, 200, (n,)).tolist() for n in (4, 19, 9)]
    assert shared_length([p[:-1] for p in prompts]) == len(system)
    tokens_run = []
    embed = model.get_input_embeddings()
    handle = embed.register_forward_hook(lambda m, args, out: tokens_run.append(args[0].numel()))
    try:
        with torch.inference_mode():
            cache = prefilled_cache(model, prompts, room=9)
    finally:
        handle.remove()
    assert tokens_run == [len(system), 3, 18, 8]  # the beginning once, then each prompt's own
    assert torch.equal(greedy(model, prompts, 8, cache=cache), greedy(model, prompts, 8))


def test_shared_length_leaves_each_prompt_a_token_and_skips_short_beginnings():
    long = list(range(MIN_SHARED_TOKENS + 5))
    assert shared_length([long, long]) == len(long) - 1
    assert shared_length([long, long[:-2] + [999, 998]]) == len(long) - 2
    assert shared_length([long[:10] + [7] * 40, long[:10] + [8] * 40]) == 0  # too short to share
    assert shared_length([long]) == 0 and shared_length([long, []]) == 0


def test_left_padded_puts_each_prompt_at_the_right_end():
    ids, mask = left_padded([[7, 8, 9], [5]], pad_id=0)
    assert ids.tolist() == [[7, 8, 9], [0, 0, 5]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]


def test_decoding_writes_into_the_buffer_and_grows_past_it():
    keys, values = torch.zeros(2, 1, 4, 3), torch.zeros(2, 1, 4, 3)
    layer = GrowingLayer(keys, values, filled=2)
    step = torch.ones(2, 1, 1, 3)
    k, _ = layer.update(step, step)
    assert k.shape[2] == 3 and k.data_ptr() == keys.data_ptr()  # in place, no copy
    layer.update(2 * step, 2 * step)
    k, v = layer.update(3 * step, 3 * step)  # a fifth position: past the room foreseen
    assert k.shape[2] == 5 and layer.get_seq_length() == 5
    assert k[0, 0, :, 0].tolist() == [0, 0, 1, 2, 3] and torch.equal(k, v)


def test_off_for_sliding_window_caches():
    from transformers import MistralConfig, MistralForCausalLM

    config = MistralConfig(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, sliding_window=8,
    )  # fmt: skip
    assert not supports_prefill(MistralForCausalLM(config))


def test_on_for_llama_on_the_cpu_only(model):
    from types import SimpleNamespace

    assert supports_prefill(model)
    # A GPU prefills the padded batch in parallel: there generate() keeps its own path.
    assert not supports_prefill(SimpleNamespace(device=torch.device("meta"), config=model.config))
