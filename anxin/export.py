"""`anxin export --format gguf`: the fine-tuned model as one GGUF file plus an Ollama Modelfile.

The adapter is merged first (`anxin.merge`), then written by `anxin.gguf`:

    DIR/model.gguf           weights + tokenizer + tokenizer.chat_template
    DIR/Modelfile            FROM ./model.gguf, TEMPLATE (Go syntax), SYSTEM persona, stop tokens
    DIR/anxin_template.json  the template card, so `anxin chat --model DIR/model.gguf` finds it
    DIR/anxin_export.json    where it came from, dtype, checksum

A GGUF run by Ollama or llama.cpp alone has no care layer; `anxin serve --upstream` in front of
it adds one (the Modelfile says so too).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from anxin.atomic import atomic_dir, write_json, write_text
from anxin.gguf import DTYPES, GGUF_NAME, modelfile_text, write_model_gguf


def export_gguf(
    model: str | None, out: str | Path, adapter: str | None = None, dtype: str = "f16"
) -> Path:
    """Merge `adapter` into `model` (if given) and write `out/` (see module doc); returns `out`."""
    from anxin.models import load_tokenizer, resolve_model, sha256_file
    from anxin.template import DEFAULT_SYSTEM_PROMPT, TEMPLATE_CARD, read_template_card

    card = read_template_card(adapter) or read_template_card(resolve_model(model))
    persona = (card or {}).get("system_prompt") or DEFAULT_SYSTEM_PROMPT
    out = Path(out)
    with atomic_dir(out) as tmp:
        gguf_file = write_model_gguf(model, adapter, tmp / GGUF_NAME, dtype)
        tokenizer = load_tokenizer(model, adapter)  # the adapter's copy carries its template
        write_text(tmp / "Modelfile", modelfile_text(tokenizer, persona))
        if card is not None:
            write_json(tmp / TEMPLATE_CARD, card)
        write_json(
            tmp / "anxin_export.json",
            {
                "model": str(model),
                "adapter": str(adapter) if adapter else None,
                "dtype": dtype,
                "gguf_sha256": sha256_file(gguf_file),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            },
        )
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "examples:\n"
        "  anxin export --model smollm2 --adapter saves/smollm2-135m/lora/sft --out export/anxin\n"
        "  anxin export --model merged/anxin-smollm2 --dtype q8_0 --out export/anxin-q8\n"
        "then:\n"
        "  ollama create anxin -f export/anxin/Modelfile && ollama run anxin\n"
        "  anxin chat --backend llamacpp --model export/anxin/model.gguf\n"
        "The GGUF holds the training chat template; the Modelfile adds the persona and stop tokens."
    )
    parser.add_argument("--model", default="smollm2", help="base model: name, HF folder or .gguf")
    parser.add_argument("--adapter", help="LoRA adapter folder to merge in first (optional)")
    parser.add_argument("--format", default="gguf", choices=["gguf"], help="export format")
    parser.add_argument("--out", required=True, help="folder for model.gguf and Modelfile")
    parser.add_argument(
        "--dtype",
        default="f16",
        choices=DTYPES,
        help="weight type: f16 (default), bf16, f32 (exact), q8_0 (half the size, near-lossless)",
    )


def main(args: argparse.Namespace) -> int:
    started = time.time()
    out = export_gguf(args.model, args.out, args.adapter, args.dtype)
    size = os.path.getsize(out / GGUF_NAME) / 1e6
    print(
        f"exported {out / GGUF_NAME} ({size:.0f} MB, {time.time() - started:.1f} s)",
        file=sys.stderr,
    )
    print(out)
    return 0
