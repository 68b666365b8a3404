"""`anxin export`: GGUF written by hand with the gguf package, read back by transformers and
(when installed) llama.cpp, and the Ollama Modelfile beside it."""

import json

import numpy as np
import pytest
import torch

from anxin.cli import main as anxin
from anxin.errors import ExportError
from anxin.gguf import (
    gguf_tensor_name,
    llamacpp_pretokenizer,
    modelfile_text,
    permute_for_llamacpp,
    template_family,
    write_gguf,
)
from anxin.template import TEMPLATE_CARD, apply_template, save_template_card

PERSONA = "You are Anxin, a calm listener."
TEXT = "我最近压力很大，晚上总是睡不着。 I cannot sleep well at night."


@pytest.fixture(scope="module")
def tiny_f32_gguf(tiny_model_dir, tmp_path_factory):
    return write_gguf(tiny_model_dir, tmp_path_factory.mktemp("gguf") / "model.gguf", "f32")


@pytest.fixture
def tiny_adapter(tiny_model_dir, tmp_path):
    """A LoRA adapter with random (non-zero) weights and its template card with a persona."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    config = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False)
    adapter = tmp_path / "adapter"
    get_peft_model(base, config).save_pretrained(adapter)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.save_pretrained(adapter)
    save_template_card(adapter, tokenizer, "default", PERSONA)
    return adapter


def load_gguf_model(gguf_file):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(
        gguf_file.parent, gguf_file=gguf_file.name, dtype=torch.float32
    ).eval()


def logits_of(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0]


# --- pieces -----------------------------------------------------------------------------------


def test_permute_matches_llamacpp_rotary_layout_and_transformers_undoes_it():
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    # One head of dimension 4: HF's halves [0 1 | 2 3] become llama.cpp's pairs (0 2)(1 3).
    rows = np.arange(4, dtype=np.float32).reshape(4, 1)
    assert permute_for_llamacpp(rows, 1).ravel().tolist() == [0, 2, 1, 3]
    # Grouped-query K (4 query heads, 2 KV heads): transformers' GGUF loader restores it.
    weights = np.random.default_rng(0).standard_normal((2 * 8, 5)).astype(np.float32)
    restored = LlamaTensorProcessor()._reverse_permute_weights(
        permute_for_llamacpp(weights, 4, 2), 4, 2
    )
    assert np.array_equal(restored, weights)


def test_tensor_names_follow_llamacpp():
    assert gguf_tensor_name("model.embed_tokens.weight", 12) == "token_embd.weight"
    assert gguf_tensor_name("model.layers.11.self_attn.k_proj.weight", 12) == "blk.11.attn_k.weight"
    assert gguf_tensor_name("model.layers.0.self_attn.q_proj.bias", 12) == "blk.0.attn_q.bias"
    assert (
        gguf_tensor_name("model.layers.3.post_attention_layernorm.weight", 12)
        == "blk.3.ffn_norm.weight"
    )
    assert gguf_tensor_name("lm_head.weight", 12) == "output.weight"
    with pytest.raises(ExportError, match="model.layers.0.mlp.experts.0.w1.weight"):
        gguf_tensor_name("model.layers.0.mlp.experts.0.w1.weight", 12)


def test_pretokenizer_names():
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}
    assert llamacpp_pretokenizer(byte_level) == "gpt-2"
    digits = {"type": "Digits", "individual_digits": True}
    sequence = {"type": "Sequence", "pretokenizers": [digits, byte_level]}
    assert llamacpp_pretokenizer(sequence) == "smollm"
    assert llamacpp_pretokenizer({"type": "Whitespace"}) == "default"


# --- the file ---------------------------------------------------------------------------------


def test_gguf_metadata_and_tensors(tiny_model_dir, tiny_f32_gguf, tiny_tokenizer, tmp_path):
    from gguf import GGMLQuantizationType, GGUFReader

    reader = GGUFReader(str(tiny_f32_gguf))
    field = {name: value.contents() for name, value in reader.fields.items()}
    assert field["general.architecture"] == "llama"
    assert field["llama.block_count"] == 2 and field["llama.attention.head_count_kv"] == 2
    assert field["tokenizer.ggml.model"] == "gpt2" and field["tokenizer.ggml.pre"] == "gpt-2"
    assert field["tokenizer.ggml.eot_token_id"] == tiny_tokenizer.convert_tokens_to_ids(
        "<|im_end|>"
    )
    assert field["tokenizer.ggml.add_bos_token"] is False
    assert field["tokenizer.chat_template"] == tiny_tokenizer.chat_template
    assert len(field["tokenizer.ggml.tokens"]) == len(tiny_tokenizer)
    names = {t.name for t in reader.tensors}
    assert "output.weight" not in names  # tied to token_embd, as in the HF model
    assert len(names) == 2 + 2 * 9  # token_embd, output_norm, 9 per layer

    q8 = write_gguf(tiny_model_dir, tmp_path / "q8.gguf", "q8_0")
    types = {t.name: t.tensor_type for t in GGUFReader(str(q8)).tensors}
    assert types["blk.0.attn_q.weight"] == GGMLQuantizationType.Q8_0
    assert types["blk.0.attn_norm.weight"] == GGMLQuantizationType.F32
    assert q8.stat().st_size < tiny_f32_gguf.stat().st_size / 2


def test_transformers_loads_the_export_back(
    tiny_model_dir, tiny_f32_gguf, tiny_tokenizer, tmp_path
):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    reference = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    ids = tiny_tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    expected = logits_of(reference, ids)
    assert (logits_of(load_gguf_model(tiny_f32_gguf), ids) - expected).abs().max() < 1e-5
    # Lossy types stay close (the logits of this random model are of order 1).
    q8 = write_gguf(tiny_model_dir, tmp_path / "q8.gguf", "q8_0")
    assert (logits_of(load_gguf_model(q8), ids) - expected).abs().max() < 0.05

    tokenizer = AutoTokenizer.from_pretrained(tiny_f32_gguf.parent, gguf_file=tiny_f32_gguf.name)
    assert tokenizer(TEXT, add_special_tokens=False)["input_ids"] == ids
    assert tokenizer.chat_template == tiny_tokenizer.chat_template


def test_rejects_a_non_llama_model(tiny_model_dir, tmp_path):
    folder = tmp_path / "gpt2ish"
    folder.mkdir()
    config = json.loads((tiny_model_dir / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "mistral"}))
    with pytest.raises(ExportError, match="config.json: model_type: 'mistral' is not llama"):
        write_gguf(folder, tmp_path / "x.gguf")
    with pytest.raises(ExportError, match="unknown GGUF dtype"):
        write_gguf(tiny_model_dir, tmp_path / "x.gguf", "q4_k")
    assert not (tmp_path / "x.gguf").exists()


# --- the Modelfile ----------------------------------------------------------------------------


def test_modelfile_for_chatml_and_llama3(tiny_tokenizer):
    text = modelfile_text(tiny_tokenizer, PERSONA)
    assert "\nFROM ./model.gguf\n" in text
    # Ollama alone runs no care layer: the file says so and shows how to add it.
    assert text.startswith("# ") and "NO care layer" in text and "anxin serve --upstream" in text
    assert "<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>" in text
    assert f'SYSTEM """{PERSONA}"""' in text
    assert 'PARAMETER stop "<|im_end|>"' in text
    assert "PARAMETER temperature 0.7" in text

    apply_template(tiny_tokenizer, "llama3")
    assert template_family(tiny_tokenizer) == "llama3"
    assert 'PARAMETER stop "<|eot_id|>"' in modelfile_text(tiny_tokenizer, PERSONA)

    tiny_tokenizer.chat_template = "{% for m in messages %}{{ m['content'] }}\n{% endfor %}"
    assert template_family(tiny_tokenizer) is None
    assert "TEMPLATE" not in modelfile_text(tiny_tokenizer, PERSONA)
    with pytest.raises(ExportError, match='"""'):
        modelfile_text(tiny_tokenizer, 'say """hi"""')


def test_ollama_chatml_template_renders_like_the_training_template(tiny_tokenizer):
    """Expand the Go template by hand for a conversation; it must equal the jinja rendering."""
    from anxin.gguf import OLLAMA_TEMPLATES, PROBE

    go = OLLAMA_TEMPLATES["chatml"]
    loop = go[go.index("}}") + 2 : go.index("{{ end }}")]
    after = go[go.index("{{ end }}") + len("{{ end }}") :]
    rendered = "".join(
        loop.replace("{{ .Role }}", m["role"]).replace("{{ .Content }}", m["content"])
        for m in PROBE
    )
    expected = tiny_tokenizer.apply_chat_template(PROBE, tokenize=False, add_generation_prompt=True)
    assert rendered + after == expected


# --- the command ------------------------------------------------------------------------------


def test_export_command_merges_the_adapter(tiny_model_dir, tiny_adapter, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out = tmp_path / "export"
    argv = ["export", "--model", str(tiny_model_dir), "--adapter", str(tiny_adapter)]
    assert anxin([*argv, "--out", str(out), "--dtype", "f32"]) == 0
    assert json.loads((out / TEMPLATE_CARD).read_text())["system_prompt"] == PERSONA
    assert f'SYSTEM """{PERSONA}"""' in (out / "Modelfile").read_text()
    record = json.loads((out / "anxin_export.json").read_text())
    assert record["dtype"] == "f32" and len(record["gguf_sha256"]) == 64

    ids = [5, 17, 42, 99, 123, 7, 8]
    exported = logits_of(load_gguf_model(out / "model.gguf"), ids)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    assert (exported - logits_of(base, ids)).abs().max() > 1e-3  # the adapter is in there
    tuned = PeftModel.from_pretrained(base, tiny_adapter).eval()
    assert (exported - logits_of(tuned, ids)).abs().max() < 1e-4


def test_export_command_bad_adapter(tiny_model_dir, tmp_path, capsys):
    argv = ["export", "--model", str(tiny_model_dir), "--adapter", str(tmp_path)]
    assert anxin([*argv, "--out", str(tmp_path / "out")]) == 2
    assert "not a LoRA adapter folder" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# --- llama.cpp --------------------------------------------------------------------------------


def test_llamacpp_greedy_tokens_equal_transformers(tiny_model_dir, tiny_f32_gguf, tiny_tokenizer):
    llama_cpp = pytest.importorskip("llama_cpp")
    from transformers import AutoModelForCausalLM

    from anxin.template import render_prompt

    prompt = render_prompt(tiny_tokenizer, [{"role": "user", "content": TEXT}])
    reference = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        ids = torch.tensor([prompt])
        output = reference.generate(  # no eos: compare all 24 tokens, even past <|im_end|>
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=24,
            do_sample=False,
            eos_token_id=None,
            pad_token_id=0,
        )
    expected = output[0, len(prompt) :].tolist()

    llm = llama_cpp.Llama(str(tiny_f32_gguf), n_ctx=256, n_threads=2, verbose=False)
    try:
        # llama.cpp splits text as the HF tokenizer does (the pre-tokenizer was mapped right).
        expected_ids = tiny_tokenizer(TEXT, add_special_tokens=False)["input_ids"]
        assert llm.tokenize(TEXT.encode(), add_bos=False) == expected_ids
        generated = []
        for token in llm.generate(prompt, temp=0.0, top_k=1, min_p=0.0, repeat_penalty=1.0):
            generated.append(token)
            if len(generated) == len(expected):
                break
        assert generated == expected
    finally:
        llm.close()
