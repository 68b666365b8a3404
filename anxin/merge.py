"""`anxin merge`: fold a LoRA adapter into its base and save a standalone model.

peft's `merge_and_unload` does the arithmetic (in float32, then cast); this module loads the
pair and writes safetensors + the adapter's tokenizer (it carries the training chat template) +
the template card, atomically, so a crash never leaves a folder that looks complete.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from anxin.atomic import atomic_dir, write_json

DTYPES = ("float32", "bfloat16", "float16")


def merge_adapter(model: str, adapter: str, out: str | Path, dtype: str = "float32") -> Path:
    """Merge `adapter` into `model` and save the result to `out`; returns `out`."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from anxin.errors import ModelError
    from anxin.models import load_tokenizer, resolve_model
    from anxin.template import TEMPLATE_CARD, read_template_card

    if not (Path(adapter) / "adapter_config.json").is_file():
        raise ModelError(f"{adapter}: not a LoRA adapter folder (no adapter_config.json)")
    base_path = resolve_model(model)
    # Merge in float32 for exact arithmetic, then cast to the requested dtype to save.
    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
    merged = PeftModel.from_pretrained(base, adapter).merge_and_unload()
    merged = merged.to(getattr(torch, dtype))
    tokenizer = load_tokenizer(base_path, adapter)
    out = Path(out)
    with atomic_dir(out) as tmp:
        merged.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        card = read_template_card(adapter)
        if card is not None:
            write_json(tmp / TEMPLATE_CARD, card)
        write_json(
            tmp / "anxin_merge.json",
            {
                "base": str(model),
                "adapter": str(adapter),
                "dtype": dtype,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            },
        )
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "example:\n  anxin merge --model smollm2 --adapter saves/smollm2-135m/lora/sft "
        "--out merged/anxin-smollm2\n"
        "The merged folder loads anywhere transformers (or vLLM) does, with the training template."
    )
    parser.add_argument("--model", default="smollm2", help="base model: name, HF folder or .gguf")
    parser.add_argument("--adapter", required=True, help="LoRA adapter folder from `anxin train`")
    parser.add_argument("--out", required=True, help="folder for the merged model")
    parser.add_argument(
        "--dtype", default="float32", choices=DTYPES, help="dtype of the saved weights"
    )


def main(args: argparse.Namespace) -> int:
    started = time.time()
    out = merge_adapter(args.model, args.adapter, args.out, args.dtype)
    print(f"merged model saved to {out} ({time.time() - started:.1f} s)", file=sys.stderr)
    print(out)
    return 0
