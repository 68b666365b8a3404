"""A tiny random Llama and a small byte-level BPE tokenizer, built locally in under a second.

The tokenizer mimics SmolLM2's: ChatML special tokens, eos == pad == <|im_end|>, no bos added
automatically. It also knows Llama-3's header tokens so the llama3 template can be tested.
"""

from __future__ import annotations

from pathlib import Path

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|begin_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
]

CORPUS = [
    "I feel so tired after work every day and I cannot sleep well at night.",
    "That sounds exhausting. What has been keeping you awake?",
    "My exams are next week and I am worried I will fail.",
    "It makes sense to feel anxious before exams. What worries you most?",
    "我最近压力很大，晚上总是睡不着。",
    "听起来你这段时间很辛苦。是什么让你最放不下？",
    "考试快到了，我很担心自己考不好，家里人对我期望很高。",
    "这种担心很常见，也说明你很在乎。你愿意多说说家里人的期待吗？",
    "我和男朋友分手了，心里空落落的，不知道该怎么办。",
    "分手后的失落很难受。这几天你是怎么度过的？",
    "工作太忙了，每天加班到很晚，觉得自己快撑不住了。",
    "你已经坚持了很久。有没有哪怕一小段时间，能让你喘口气？",
]


def build_tokenizer(out_dir: str | Path, vocab_size: int = 600):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from anxin.template import CHATML

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 3, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
    )
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS[3:]})
    tokenizer.chat_template = CHATML
    tokenizer.model_max_length = 1024
    tokenizer.save_pretrained(out_dir)
    return tokenizer


def build_tiny_llama(out_dir: str | Path, seed: int = 0) -> Path:
    """Save a 2-layer, hidden-64 random LlamaForCausalLM with the tokenizer into `out_dir`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out_dir = Path(out_dir)
    tokenizer = build_tokenizer(out_dir)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out_dir, safe_serialization=True)
    return out_dir
