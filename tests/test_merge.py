import pytest
import torch

from anxin.cli import main as anxin
from anxin.template import DEFAULT_SYSTEM_PROMPT, TEMPLATE_CARD, save_template_card


@pytest.fixture
def tiny_adapter(tiny_model_dir, tmp_path):
    """A LoRA adapter with random (non-zero) weights, saved as `anxin train` saves one."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    config = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False)
    model = get_peft_model(base, config)
    adapter = tmp_path / "adapter"
    model.save_pretrained(adapter)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.save_pretrained(adapter)
    save_template_card(adapter, tokenizer, "default", DEFAULT_SYSTEM_PROMPT)
    return adapter


def test_merged_equals_base_plus_adapter(tiny_model_dir, tiny_adapter, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out = tmp_path / "merged"
    assert (
        anxin(
            [
                "merge",
                "--model",
                str(tiny_model_dir),
                "--adapter",
                str(tiny_adapter),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert (out / "model.safetensors").is_file() and (out / TEMPLATE_CARD).is_file()
    assert (out / "tokenizer_config.json").is_file()

    unmerged = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir), tiny_adapter
    ).eval()
    merged = AutoModelForCausalLM.from_pretrained(out).eval()
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    ids = torch.tensor([[5, 17, 42, 99, 123, 7, 8]])
    with torch.no_grad():
        logits_unmerged = unmerged(ids).logits
        logits_merged = merged(ids).logits
        # The adapter really changes the model, so equality below is not trivial.
        assert (base(ids).logits - logits_unmerged).abs().max() > 1e-3
        assert (logits_merged - logits_unmerged).abs().max() < 1e-4
        greedy = dict(max_new_tokens=12, do_sample=False, pad_token_id=2)
        assert torch.equal(unmerged.generate(ids, **greedy), merged.generate(ids, **greedy))


def test_merge_bfloat16_and_bad_adapter(tiny_model_dir, tiny_adapter, tmp_path, capsys):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "bf16"
    assert (
        anxin(
            [
                "merge",
                "--model",
                str(tiny_model_dir),
                "--adapter",
                str(tiny_adapter),
                "--out",
                str(out),
                "--dtype",
                "bfloat16",
            ]
        )
        == 0
    )
    assert AutoModelForCausalLM.from_pretrained(out).dtype == torch.bfloat16
    assert (
        anxin(
            [
                "merge",
                "--model",
                str(tiny_model_dir),
                "--adapter",
                str(tmp_path),
                "--out",
                str(tmp_path / "x"),
            ]
        )
        == 2
    )
    assert "not a LoRA adapter folder" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_inference_merges_the_adapter_in_memory_with_the_same_numbers(tiny_model_dir, tiny_adapter):
    """Unmerged LoRA layers cost extra matmuls at every token; inference merges them at load."""
    from peft import PeftModel

    from anxin.backends.hf import TransformersBackend

    options = dict(device="cpu", dtype="float32")
    merged = TransformersBackend.from_pretrained(str(tiny_model_dir), str(tiny_adapter), **options)
    unmerged = TransformersBackend.from_pretrained(
        str(tiny_model_dir), str(tiny_adapter), merge_adapter=False, **options
    )
    assert not isinstance(merged.model, PeftModel) and isinstance(unmerged.model, PeftModel)
    ids = torch.tensor([merged.prompts.ids([{"role": "user", "content": "我最近压力很大"}])])
    with torch.no_grad():
        difference = (merged.model(ids).logits - unmerged.model(ids).logits).abs().max()
    assert difference < 1e-4
