"""The text generators behind the Engine, each implementing `anxin.generation.Backend`.

    hf.py        local transformers model (the default): prefix KV cache, batching, scoring
    llamacpp.py  local llama.cpp through llama-cpp-python, on a GGUF exported once
    upstream.py  another OpenAI-compatible server (vLLM, SGLang, llama.cpp server, Ollama)
    int8.py      weight-only int8 matmuls for CPU decoding (`--quantize int8`)
    prompts.py   the chat template as every backend uses it (set up and checked once)

`load_backend` picks a local one by name; modules are imported only when chosen, so a missing
optional dependency (llama-cpp-python) only matters to the backend that needs it.
"""

from __future__ import annotations

from anxin.errors import ModelError

LOCAL_BACKENDS = ("transformers", "llamacpp")


def load_backend(name: str, model: str | None, adapter: str | None = None, **options):
    """A local backend by name, with the model (and adapter) loaded and the template checked.

    `options` are the backend's own: device, dtype, template, allow_template_mismatch and
    quantize for transformers; template and allow_template_mismatch for llama.cpp.
    """
    if name == "transformers":
        from anxin.backends.hf import TransformersBackend

        return TransformersBackend.from_pretrained(model, adapter, **options)
    if name == "llamacpp":
        from anxin.backends.llamacpp import LlamaCppBackend

        if options.pop("quantize", None):
            raise ModelError("--quantize is for the transformers backend (llama.cpp: q8_0)")
        options.pop("device", None)  # llama.cpp runs where it was built (CPU here)
        options.pop("dtype", None)  # the GGUF export's dtype is the llama.cpp choice
        return LlamaCppBackend.from_model(model, adapter=adapter, **options)
    raise ModelError(f"unknown backend '{name}'; choose one of: {', '.join(LOCAL_BACKENDS)}")
