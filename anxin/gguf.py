"""Hugging Face Llama -> GGUF (llama.cpp, Ollama), and the Ollama Modelfile that goes with it.

The merged Llama is written with the `gguf` package's writer under llama.cpp's tensor names
(gguf's own name map), in llama.cpp's rotary layout for Q and K, with the byte-level BPE
tokenizer and the training chat template inside. The result loads in llama.cpp,
llama-cpp-python, Ollama, and back into transformers (`gguf_file=`). `anxin export` is the verb
over this module; the llama.cpp backend uses it to export a model once into its cache.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterator
from pathlib import Path

from anxin.atomic import atomic_path
from anxin.errors import ExportError
from anxin.generation import GenerationSettings

GGUF_NAME = "model.gguf"
DTYPES = ("f16", "bf16", "f32", "q8_0")
Q8_BLOCK = 32  # q8_0 quantises rows in blocks of 32 values

# --- weights ----------------------------------------------------------------------------------


def permute_for_llamacpp(weights, n_head: int, n_head_kv: int | None = None):
    """HF's rotary layout -> llama.cpp's (the same permute as convert_hf_to_gguf.py).

    HF stores each head's rotary halves as [first half | second half]; llama.cpp rotates
    interleaved pairs, so the rows of each head are reordered (0, d/2, 1, d/2+1, ...).
    """
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    shape = weights.shape
    return (
        weights.reshape(n_head, 2, shape[0] // n_head // 2, *shape[1:])
        .swapaxes(1, 2)
        .reshape(shape)
    )


def gguf_tensor_name(hf_name: str, block_count: int) -> str:
    """`model.layers.3.self_attn.q_proj.weight` -> `blk.3.attn_q.weight`, by gguf's own map."""
    from gguf import MODEL_ARCH, get_tensor_name_map

    name = get_tensor_name_map(MODEL_ARCH.LLAMA, block_count).get_name(
        hf_name, try_suffixes=(".weight", ".bias")
    )
    if name is None:
        raise ExportError(
            f"{hf_name}: no llama.cpp tensor for this parameter (only Llama is supported)"
        )
    return name


def read_state_dict(model_dir: Path) -> Iterator[tuple[str, object]]:
    """(name, float32 numpy array) for every tensor in the folder's safetensors files."""
    from safetensors import safe_open

    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise ExportError(f"{model_dir}: no *.safetensors weights to export")
    for file in files:
        with safe_open(str(file), framework="pt") as f:
            for name in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
                yield name, f.get_tensor(name).float().numpy()


def encode_tensor(name: str, array, dtype: str):
    """The array as written to the file, and its GGML type. Norms and biases stay float32."""
    import numpy as np
    from gguf import GGMLQuantizationType, quants

    if array.ndim == 1 or dtype == "f32":
        return array.astype(np.float32), GGMLQuantizationType.F32
    if dtype == "f16":
        return array.astype(np.float16), GGMLQuantizationType.F16
    if dtype == "bf16":
        return quants.quantize(array, GGMLQuantizationType.BF16), GGMLQuantizationType.BF16
    if array.shape[-1] % Q8_BLOCK:  # q8_0 needs whole blocks per row; keep this one at f16
        return array.astype(np.float16), GGMLQuantizationType.F16
    return quants.quantize(array, GGMLQuantizationType.Q8_0), GGMLQuantizationType.Q8_0


def file_type(dtype: str) -> int:
    from gguf import LlamaFileType

    return {
        "f32": LlamaFileType.ALL_F32,
        "f16": LlamaFileType.MOSTLY_F16,
        "bf16": LlamaFileType.MOSTLY_BF16,
        "q8_0": LlamaFileType.MOSTLY_Q8_0,
    }[dtype]


def llama3_rope_factors(config) -> list[float]:
    """Llama 3.1's frequency-dependent RoPE scaling, as llama.cpp's `rope_freqs` tensor."""
    rope = rope_parameters(config)
    head_dim = head_dimension(config)
    base = float(rope.get("rope_theta", 10000.0))
    factor = float(rope.get("factor", 8.0))
    low, high = float(rope.get("low_freq_factor", 1.0)), float(rope.get("high_freq_factor", 4.0))
    old_context = float(rope.get("original_max_position_embeddings", 8192))
    factors = []
    for i in range(0, head_dim, 2):
        wavelength = 2 * math.pi * base ** (i / head_dim)
        if wavelength < old_context / high:
            factors.append(1.0)
        elif wavelength > old_context / low:
            factors.append(factor)
        else:
            smooth = (old_context / wavelength - low) / (high - low)
            factors.append(1 / ((1 - smooth) / factor + smooth))
    return factors


def rope_parameters(config) -> dict:
    # transformers 5 keeps rope_theta and the scaling in one dict; older configs split them.
    params = dict(getattr(config, "rope_parameters", None) or {})
    params.setdefault("rope_theta", getattr(config, "rope_theta", 10000.0))
    scaling = getattr(config, "rope_scaling", None) or {}
    for key, value in scaling.items():
        params.setdefault(key, value)
    params.setdefault("rope_type", params.get("type", "default"))
    return params


def head_dimension(config) -> int:
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


# --- the writer -------------------------------------------------------------------------------


def write_gguf(model_dir: str | Path, out_file: str | Path, dtype: str = "f16") -> Path:
    """Write the HF Llama folder `model_dir` (weights + tokenizer) as one GGUF file."""
    import numpy as np
    from gguf import GGUFWriter
    from transformers import AutoConfig, AutoTokenizer

    if dtype not in DTYPES:
        raise ExportError(f"unknown GGUF dtype '{dtype}'; choose one of: {', '.join(DTYPES)}")
    model_dir, out_file = Path(model_dir), Path(out_file)
    config = AutoConfig.from_pretrained(model_dir)
    if config.model_type != "llama":
        raise ExportError(
            f"{model_dir}/config.json: model_type: '{config.model_type}' is not llama"
        )
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    with atomic_path(out_file, suffix=".gguf") as tmp:
        writer = GGUFWriter(str(tmp), "llama")
        add_hyperparameters(writer, config, model_dir.name, dtype)
        add_tokenizer(writer, tokenizer, config.vocab_size)
        heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
        tied = bool(getattr(config, "tie_word_embeddings", False))
        for hf_name, array in read_state_dict(model_dir):
            if hf_name.endswith("rotary_emb.inv_freq") or (tied and hf_name == "lm_head.weight"):
                continue  # recomputed by llama.cpp / shared with token_embd
            name = gguf_tensor_name(hf_name, config.num_hidden_layers)
            if ".attn_q." in name:
                array = permute_for_llamacpp(array, heads, heads)
            elif ".attn_k." in name:
                array = permute_for_llamacpp(array, heads, kv_heads)
            data, ggml_type = encode_tensor(name, array, dtype)
            writer.add_tensor(name, data, raw_dtype=ggml_type)
        if rope_parameters(config)["rope_type"] == "llama3":
            writer.add_tensor(
                "rope_freqs.weight", np.array(llama3_rope_factors(config), np.float32)
            )
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    return out_file


def add_hyperparameters(writer, config, name: str, dtype: str) -> None:
    from gguf import RopeScalingType

    writer.add_name(name)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)
    head_dim = head_dimension(config)
    writer.add_rope_dimension_count(head_dim)
    if head_dim != config.hidden_size // config.num_attention_heads:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    rope = rope_parameters(config)
    writer.add_rope_freq_base(float(rope["rope_theta"]))
    if rope["rope_type"] == "linear":
        writer.add_rope_scaling_type(RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(rope["factor"]))
    elif rope["rope_type"] not in ("default", "llama3"):
        raise ExportError(f"rope type '{rope['rope_type']}' is not supported by this exporter")
    writer.add_file_type(file_type(dtype))
    writer.add_quantization_version(2)


def add_tokenizer(writer, tokenizer, vocab_size: int) -> None:
    """A byte-level BPE tokenizer as llama.cpp's `gpt2` model, with the training template."""
    from gguf import TokenType

    from anxin.template import end_of_turn_id

    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    if spec["model"]["type"] != "BPE" or (spec.get("decoder") or {}).get("type") != "ByteLevel":
        raise ExportError("only byte-level BPE tokenizers (Llama 3, SmolLM2, GPT-2 style) export")
    by_id = {index: token for token, index in tokenizer.get_vocab().items()}
    added = {index: entry for index, entry in tokenizer.added_tokens_decoder.items()}
    tokens, types = [], []
    for index in range(max(vocab_size, len(by_id))):
        if index not in by_id:  # the embedding matrix is padded past the tokenizer
            tokens.append(f"[PAD{index}]")
            types.append(TokenType.UNUSED)
        elif index in added:
            tokens.append(by_id[index])
            types.append(TokenType.CONTROL if added[index].special else TokenType.USER_DEFINED)
        else:
            tokens.append(by_id[index])
            types.append(TokenType.NORMAL)
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(llamacpp_pretokenizer(spec.get("pre_tokenizer")))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    for token_id, add in (
        (tokenizer.bos_token_id, writer.add_bos_token_id),
        (tokenizer.eos_token_id, writer.add_eos_token_id),
        (tokenizer.unk_token_id, writer.add_unk_token_id),
        (tokenizer.pad_token_id, writer.add_pad_token_id),
    ):
        if token_id is not None:
            add(token_id)
    writer.add_eot_token_id(end_of_turn_id(tokenizer))
    # The template writes every special token itself (bos too, where it wants one).
    writer.add_add_bos_token(False)
    if tokenizer.chat_template:
        writer.add_chat_template(tokenizer.chat_template)


def llamacpp_pretokenizer(pre: dict | None) -> str:
    """llama.cpp's name for the HF pre-tokenizer, so llama.cpp (and Ollama) split text alike."""
    steps = (pre or {}).get("pretokenizers", [pre] if pre else [])
    kinds = [step.get("type") for step in steps]
    if kinds == ["ByteLevel"] and steps[0].get("use_regex", True):
        return "gpt-2"
    if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits"):
        return "smollm"
    if kinds == ["Split", "ByteLevel"] and r"\p{N}{1,3}" in json.dumps(steps[0].get("pattern")):
        return "llama-bpe"
    print(
        f"anxin export: unknown pre-tokenizer {kinds}; llama.cpp will use its default",
        file=sys.stderr,
    )
    return "default"


# --- the Ollama Modelfile ---------------------------------------------------------------------

# Go-template twins of anxin.template's CHATML and LLAMA3 (Ollama puts SYSTEM in .Messages).
OLLAMA_TEMPLATES = {
    "chatml": (
        "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n"
        "{{ end }}<|im_start|>assistant\n"
    ),
    "llama3": (
        "{{- range $i, $_ := .Messages }}{{ if eq $i 0 }}<|begin_of_text|>{{ end }}"
        "<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n{{ .Content }}<|eot_id|>"
        "{{ end }}<|start_header_id|>assistant<|end_header_id|>\n\n"
    ),
}
PROBE = [
    {"role": "system", "content": "S"},
    {"role": "user", "content": "U1"},
    {"role": "assistant", "content": "A1"},
    {"role": "user", "content": "U2"},
]


def template_family(tokenizer) -> str | None:
    """Which built-in template the tokenizer's own one renders like (with a system message)."""
    from anxin.template import BUILTIN_TEMPLATES

    ours = tokenizer.apply_chat_template(PROBE, tokenize=False, add_generation_prompt=True)
    for name in OLLAMA_TEMPLATES:
        builtin = tokenizer.apply_chat_template(
            PROBE, chat_template=BUILTIN_TEMPLATES[name], tokenize=False, add_generation_prompt=True
        )
        if builtin == ours:
            return name
    return None


def modelfile_text(tokenizer, system_prompt: str, gguf_name: str = GGUF_NAME) -> str:
    """An Ollama Modelfile that chats exactly as anxin does: template, persona, stop tokens."""
    from anxin.template import stop_token_ids

    if '"""' in system_prompt:
        raise ExportError('the system prompt contains """, which a Modelfile cannot quote')
    lines = [
        "# Made by `anxin export`. Ollama alone has NO care layer: a crisis message reaches the",
        "# model and nothing checks its reply. To keep anxin's crisis replies and help lines, put",
        "# anxin in front:  anxin serve --upstream http://127.0.0.1:11434/v1 --upstream-model NAME",
        "",
        f"FROM ./{gguf_name}",
        "",
    ]
    family = template_family(tokenizer)
    if family:
        lines += [f'TEMPLATE """{OLLAMA_TEMPLATES[family]}"""', ""]
    else:
        print(
            "anxin export: the chat template is neither ChatML nor Llama 3; the Modelfile "
            "has no TEMPLATE and Ollama will guess one from the GGUF",
            file=sys.stderr,
        )
    lines += [f'SYSTEM """{system_prompt}"""', ""]
    for token in tokenizer.convert_ids_to_tokens(stop_token_ids(tokenizer)):
        lines.append(f'PARAMETER stop "{token}"')
    defaults = GenerationSettings()
    lines += [
        f"PARAMETER temperature {defaults.temperature}",
        f"PARAMETER top_p {defaults.top_p}",
        f"PARAMETER top_k {defaults.top_k}",
        f"PARAMETER repeat_penalty {defaults.repetition_penalty}",
    ]
    return "\n".join(lines) + "\n"


def write_model_gguf(
    model: str | None, adapter: str | None, out_file: str | Path, dtype: str = "f16"
) -> Path:
    """A model reference (plus an adapter, merged first in float32) as one GGUF file."""
    import tempfile

    from anxin.merge import merge_adapter
    from anxin.models import resolve_model

    source = Path(resolve_model(model))
    if not source.is_dir():
        raise ExportError(f"{model}: export needs a local model (a name, HF folder or .gguf)")
    if not adapter:
        return write_gguf(source, out_file, dtype)
    with tempfile.TemporaryDirectory(prefix="anxin-export-") as scratch:
        merged = merge_adapter(str(source), adapter, Path(scratch) / "merged", "float32")
        return write_gguf(merged, out_file, dtype)
