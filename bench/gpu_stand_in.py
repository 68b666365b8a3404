"""A stand-in for Llama-3-8B-Instruct that needs no download: the exact shape, random weights.

    SHAPES                    llama3-8b (Meta-Llama-3-8B-Instruct's config) and tiny (tests/tiny.py's)
    build_tokenizer(folder)   tests/tiny.py's byte-level BPE with Llama-3's special tokens and template
    build_model(...)          a random LlamaForCausalLM of a shape, in bf16, built on the device
    synthetic_dialogues(...)  conversations with SMILECHAT's turn and message lengths

Speed depends on the shapes of the matrices and the number of tokens, not on what the weights
or the words are, so a random model of the right shape trained on filler dialogues of the right
lengths measures what the real recipe costs.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SMILECHAT_SHAPE = Path(__file__).resolve().parent / "smilechat_shape.json"

# Meta-Llama-3-8B-Instruct's config.json, the parts that decide the arithmetic.
LLAMA3_8B = {
    "vocab_size": 128256,
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "rope_theta": 500000.0,
    "max_position_embeddings": 8192,
    "rms_norm_eps": 1e-5,
    "tie_word_embeddings": False,
}
# tests/tiny.py's Llama; the vocabulary is larger than the stand-in tokenizer's, as the 8B one
# is, so the tiny run also covers the output rows no token of the tokenizer uses.
TINY = {
    **LLAMA3_8B,
    "vocab_size": 1024,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
}
SHAPES = {"llama3-8b": LLAMA3_8B, "tiny": TINY}

LLAMA3_SPECIALS = {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}


def parameter_count(shape: dict) -> int:
    """Weights of a Llama of this shape (embeddings, attention, MLP, norms, output head)."""
    d, layers = shape["hidden_size"], shape["num_hidden_layers"]
    head_dim = d // shape["num_attention_heads"]
    kv_out = shape["num_key_value_heads"] * head_dim
    attention = 2 * d * d + 2 * d * kv_out  # q and o square; k and v as wide as the KV heads
    mlp = 3 * d * shape["intermediate_size"]
    per_layer = attention + mlp + 2 * d  # two RMSNorm weights
    embeddings = shape["vocab_size"] * d
    head = 0 if shape["tie_word_embeddings"] else embeddings
    return embeddings + layers * per_layer + d + head  # + the final norm


def build_tokenizer(folder: str | Path):
    """tests/tiny.py's byte-level BPE, dressed as Llama-3's: <|begin_of_text|> as bos,
    <|eot_id|> as eos, no pad token, Llama-3's chat template. Saved into `folder`."""
    from anxin.template import LLAMA3

    sys.path.insert(0, str(ROOT / "tests"))
    from tiny import build_tokenizer as build_bpe

    tokenizer = build_bpe(folder)
    tokenizer.bos_token = LLAMA3_SPECIALS["bos_token"]
    tokenizer.eos_token = LLAMA3_SPECIALS["eos_token"]
    tokenizer.pad_token = None
    tokenizer.chat_template = LLAMA3
    tokenizer.model_max_length = LLAMA3_8B["max_position_embeddings"]
    tokenizer.save_pretrained(folder)
    return tokenizer


def llama_config(shape: dict, tokenizer):
    from transformers import LlamaConfig

    if shape["vocab_size"] < len(tokenizer):
        raise ValueError(f"vocab_size {shape['vocab_size']} < tokenizer's {len(tokenizer)}")
    return LlamaConfig(
        **shape,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )


def build_model(shape: dict, tokenizer, device: str):
    """A random bf16 LlamaForCausalLM of `shape`, initialised directly on `device`.

    Output rows of ids the tokenizer does not use, and of its special tokens, are zeroed: their
    logits are then 0 while some ordinary token's is always higher, so greedy decoding never
    ends a reply early and only emits tokens the tokenizer can decode. Every measured reply is
    max_new_tokens long, and the matrix shapes stay exactly the real model's.
    """
    import torch
    from transformers import LlamaForCausalLM

    config = llama_config(shape, tokenizer)
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM._from_config(config, dtype=torch.bfloat16)
    silent = [*range(len(tokenizer), shape["vocab_size"]), *tokenizer.all_special_ids]
    with torch.no_grad():
        model.lm_head.weight[silent] = 0
    model.generation_config.pad_token_id = tokenizer.eos_token_id
    return model


# --- dialogues --------------------------------------------------------------------------------


def from_deciles(deciles: list[float], u: float) -> float:
    """The value at rank `u` in [0, 1] of a distribution given by its 11 deciles (linear
    between them), so uniform `u` samples the distribution."""
    position = min(max(u, 0.0), 1.0) * (len(deciles) - 1)
    low = min(int(position), len(deciles) - 2)
    return deciles[low] + (position - low) * (deciles[low + 1] - deciles[low])


def filler_sentences(tokenizer) -> list[tuple[str, int]]:
    """The Chinese sentences of tests/tiny.py's corpus with their token counts."""
    sys.path.insert(0, str(ROOT / "tests"))
    from tiny import CORPUS

    chinese = [s for s in CORPUS if any("\u4e00" <= ch <= "\u9fff" for ch in s)]
    return [(s, len(tokenizer(s, add_special_tokens=False)["input_ids"])) for s in chinese]


def message(tokens: int, sentences: list[tuple[str, int]], rng: random.Random) -> str:
    """Sentences drawn at random until the message holds at least `tokens` tokens."""
    parts, count = [], 0
    while count < max(tokens, 1):
        text, length = rng.choice(sentences)
        parts.append(text)
        count += length
    return "".join(parts)


def synthetic_dialogues(count: int, tokenizer, seed: int, shape_file: Path = SMILECHAT_SHAPE):
    """`count` conversations whose turns and message lengths follow SMILECHAT's deciles.

    Each starts with its own number so none is dropped as a duplicate.
    """
    shape = json.loads(Path(shape_file).read_text(encoding="utf-8"))
    deciles, per_char = shape["deciles"], shape["tokens_per_char"]
    sentences = filler_sentences(tokenizer)
    rng = random.Random(seed)
    dialogues = []
    for index in range(count):
        turns = round(from_deciles(deciles["client_turns"], rng.random()))
        messages = []
        for _ in range(max(turns, 1)):
            for role, key in (("user", "client_chars"), ("assistant", "counselor_chars")):
                tokens = round(from_deciles(deciles[key], rng.random()) * per_char)
                messages.append({"role": role, "content": message(tokens, sentences, rng)})
        messages[0]["content"] = f"{index}. {messages[0]['content']}"
        dialogues.append({"messages": messages})
    return dialogues
