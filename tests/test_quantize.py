"""Weight-only int8 for CPU generation: close to the original layer on both kernels."""

import pytest
import torch

from anxin.backends.int8 import DECODE_ROWS, Int8Linear, quantize_int8
from anxin.engine import Engine
from anxin.errors import ModelError
from anxin.generation import GenerationSettings


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_int8_layer_matches_the_original_on_decode_and_prompt_rows(dtype):
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 48, bias=True).to(dtype)
    quantized = Int8Linear(linear, dtype)
    assert quantized.weight_int8.dtype == torch.int8
    for rows in (1, DECODE_ROWS, DECODE_ROWS + 1, 37):  # the int8 kernel, then unpacked weights
        x = torch.randn(2, rows, 64, dtype=dtype)
        expected, got = linear(x).float(), quantized(x).float()
        assert got.shape == expected.shape
        error = (got - expected).abs().max() / expected.abs().max()
        assert error < (0.02 if dtype == torch.bfloat16 else 0.01), rows


def test_quantized_model_keeps_its_predictions(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    original = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    assert quantize_int8(model) == 2 * 7 + 1  # every matmul of 2 layers, and the output layer
    assert not any(isinstance(m, torch.nn.Linear) for m in model.modules())
    ids = torch.randint(
        0, model.config.vocab_size, (1, 30), generator=torch.Generator().manual_seed(1)
    )
    with torch.inference_mode():
        got, expected = model(ids).logits, original(ids).logits
        step = model(ids[:, :1]).logits  # one row: the int8 kernel
    assert torch.nn.functional.cosine_similarity(got, expected, dim=-1).min() > 0.999
    assert torch.allclose(step[0, 0], got[0, 0], atol=1e-3)


def test_engine_generates_with_int8_weights(tiny_model_dir):
    engine = Engine.from_pretrained(str(tiny_model_dir), quantize="int8", dtype="float32")
    assert any(isinstance(m, Int8Linear) for m in engine.backend.model.modules())
    reply = engine.chat(
        [{"role": "user", "content": "hello"}],
        **vars(GenerationSettings(max_new_tokens=8, temperature=0)),
    )
    assert 1 <= reply.completion_tokens <= 8
    assert (reply.finish_reason == "length") == (reply.completion_tokens == 8)


def test_int8_is_refused_where_it_does_not_apply(tiny_model_dir):
    with pytest.raises(ModelError, match="transformers backend"):
        Engine.from_pretrained(str(tiny_model_dir), backend="llamacpp", quantize="int8")
    with pytest.raises(ModelError, match="choose int8"):
        Engine.from_pretrained(str(tiny_model_dir), quantize="int4")
