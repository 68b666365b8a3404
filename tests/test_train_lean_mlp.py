"""The lean MLP activation (anxin.train.lean_mlp) on the tiny Llama: the same loss and LoRA
gradients as HF's MLP, less kept for backward, and what it leaves alone."""

from __future__ import annotations

import pytest
import torch

from anxin.train.lean_mlp import SiluMul, lean_mlps


def lora_model(model_dir, targets):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    # init_lora_weights=False: B is not zero, so every LoRA matrix has a gradient to compare.
    return get_peft_model(model, LoraConfig(r=4, target_modules=targets, init_lora_weights=False))


def loss_and_grads(model, ids):
    model.zero_grad()
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return loss.item(), grads


def saved_bytes(model, ids) -> int:
    """Bytes of activations the forward keeps for backward (parameters and repeats left out)."""
    params = {p.data_ptr() for p in model.parameters()}
    storages: dict[int, int] = {}

    def pack(tensor):
        pointer = tensor.untyped_storage().data_ptr()
        if tensor.data_ptr() not in params:
            storages[pointer] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model(input_ids=ids, labels=ids)
    return sum(storages.values())


@pytest.mark.parametrize("targets", [["q_proj", "v_proj"], "all-linear"])
def test_same_loss_and_gradients_as_hf(tiny_model_dir, targets):
    ids = torch.randint(10, 500, (2, 24), generator=torch.Generator().manual_seed(3))
    plain = loss_and_grads(lora_model(tiny_model_dir, targets), ids)
    model = lora_model(tiny_model_dir, targets)
    assert lean_mlps(model) == model.config.num_hidden_layers
    lean = loss_and_grads(model, ids)
    assert lean[0] == pytest.approx(plain[0], rel=1e-6)
    assert plain[1].keys() == lean[1].keys() and plain[1]
    for name, grad in plain[1].items():
        scale = grad.abs().max().item()
        assert scale > 0, name
        assert (lean[1][name] - grad).abs().max().item() <= 1e-5 * scale, name


def test_keeps_one_intermediate_activation_less_per_layer(tiny_model_dir):
    ids = torch.randint(10, 500, (1, 32), generator=torch.Generator().manual_seed(4))
    model = lora_model(tiny_model_dir, ["q_proj", "v_proj"])
    before = saved_bytes(model, ids)
    lean_mlps(model)
    config = model.config
    one_activation = ids.numel() * config.intermediate_size * 4  # float32
    assert before - saved_bytes(model, ids) == config.num_hidden_layers * one_activation


def test_gradient_of_the_activation_itself():
    gate = torch.randn(3, 7, dtype=torch.float64, requires_grad=True)
    up = torch.randn(3, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(SiluMul.apply, (gate, up))


def test_leaves_other_modules_alone_and_applies_once(tiny_model_dir):
    model = lora_model(tiny_model_dir, ["q_proj", "v_proj"])
    assert lean_mlps(model) == model.config.num_hidden_layers
    assert lean_mlps(model) == 0  # already lean
    other = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.GELU())
    assert lean_mlps(other) == 0
