"""Where anxin keeps things on disk: one cache root, `$ANXIN_HOME` (default ~/.cache/anxin).

models/              pulled and converted models, GGUF exports for the llama.cpp backend
cache/tokenized/     training data rendered once per data + template + tokenizer + cutoff
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def anxin_home() -> Path:
    home = os.environ.get("ANXIN_HOME")
    if home:
        return Path(home).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "anxin"


def models_dir() -> Path:
    return anxin_home() / "models"


def tokenized_cache_dir() -> Path:
    return anxin_home() / "cache" / "tokenized"


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()
