"""Linear layers over a few rows as weight @ xᵀ (anxin.backends.few_rows): the same numbers as
F.linear for any number of rows, and which layers get it."""

from __future__ import annotations

import pytest
import torch

from anxin.backends.few_rows import FEW_ROWS, use_few_rows_linear


@pytest.mark.parametrize("shape", [(1, 1, 24), (4, 1, 24), (2, 3, 24), (8, 24), (40, 24), (0, 24)])
@pytest.mark.parametrize("bias", [True, False])
def test_same_numbers_as_linear_for_any_number_of_rows(shape, bias):
    torch.manual_seed(0)
    layer = torch.nn.Linear(24, 17, bias=bias)
    x = torch.randn(*shape)
    expected = layer(x)
    assert use_few_rows_linear(layer) == 1
    out = layer(x)
    assert out.shape == expected.shape
    assert torch.allclose(out, expected, atol=1e-6)


def test_the_few_rows_path_is_the_one_taken_for_a_decoding_batch(monkeypatch):
    layer = torch.nn.Linear(8, 8)
    use_few_rows_linear(layer)
    calls = []
    monkeypatch.setattr(torch.nn.functional, "linear", lambda *a: calls.append(a) or a[0])
    layer(torch.randn(FEW_ROWS.start, 1, 8))  # a batch of decoding rows: W @ xᵀ
    assert calls == []
    layer(torch.randn(FEW_ROWS.stop, 8))  # past it: F.linear
    assert len(calls) == 1


def test_only_float32_plain_linear_layers_change():
    class Custom(torch.nn.Linear):
        pass

    model = torch.nn.Sequential(
        torch.nn.Linear(4, 4), Custom(4, 4), torch.nn.Linear(4, 4).to(torch.bfloat16),
        torch.nn.Embedding(5, 4),
    )  # fmt: skip
    assert use_few_rows_linear(model) == 1


def test_a_loaded_model_decodes_a_batch_to_the_same_replies(talkative_model_dir):
    from anxin.backends.hf import TransformersBackend
    from anxin.generation import GenerationSettings

    # float32 explicitly: `auto` is bf16 on a CPU with native bf16, and only float32 layers
    # take the few-rows path
    backend = TransformersBackend.from_pretrained(str(talkative_model_dir), dtype="float32")
    linears = [m for m in backend.model.modules() if type(m) is torch.nn.Linear]
    assert linears and all("forward" in m.__dict__ for m in linears)  # every one given it
    settings = GenerationSettings(max_new_tokens=8, temperature=0.0, repetition_penalty=1.0)
    chats = [[{"role": "user", "content": text}] for text in ("hello", "a longer message here")]
    batch = [text for text, _ in backend.generate_batch(chats, settings)]
    plain = TransformersBackend(backend.model, backend.tokenizer, str(talkative_model_dir))
    for module in plain.model.modules():  # back to F.linear everywhere
        module.__dict__.pop("forward", None)
    assert [text for text, _ in plain.generate_batch(chats, settings)] == batch
