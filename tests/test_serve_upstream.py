"""`anxin serve --upstream`: a second anxin server plays the upstream (vLLM, SGLang, Ollama...).

The proxy runs the Engine over `UpstreamBackend`, so its answers must equal the upstream model's
own, streamed or not; crisis messages must stop at the proxy; an upstream that is down or silent
must turn into a quick 502 or 504, never a hang.
"""

from __future__ import annotations

import argparse
import socket
import threading
import time

import httpx
import openai
import pytest
from test_serve_api import CRISIS, ScriptedBackend, client_for, user

from anxin.backends.upstream import UpstreamBackend, api_base, estimate_tokens
from anxin.engine import Engine
from anxin.errors import UpstreamError
from anxin.generation import GenerationSettings
from anxin.serve import add_engine_arguments, api, engine_from_args, model_label

GREEDY = GenerationSettings(max_new_tokens=8, temperature=0.0, repetition_penalty=1.0)


def proxy_for(url: str, model: str | None = None, **options) -> api.BackgroundServer:
    backend = UpstreamBackend.connect(url, model, **options)
    engine = Engine(backend, system_prompt="persona", settings=GREEDY)
    return api.BackgroundServer(api.create_app(engine, model_name="proxy"))


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


@pytest.fixture(scope="module")
def tiny_upstream(talkative_model_dir):
    """An anxin server on the tiny model, and a local Engine on the same model to compare."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from anxin.backends.hf import TransformersBackend

    model = AutoModelForCausalLM.from_pretrained(talkative_model_dir).eval()
    backend = TransformersBackend(model, AutoTokenizer.from_pretrained(talkative_model_dir))
    engine = Engine(backend, system_prompt="persona", settings=GREEDY)
    with api.BackgroundServer(api.create_app(engine, model_name="tiny-up")) as server:
        yield server, engine


def test_proxy_answers_like_the_upstream_model_streamed_or_not(tiny_upstream):
    upstream, local = tiny_upstream
    history = [*user("I feel tired."), {"role": "assistant", "content": "Tell me more."}]
    messages = history + user("Work never ends.")
    expected = local.chat(messages)
    with proxy_for(upstream.url) as proxy:
        client = client_for(proxy)
        plain = client.chat.completions.create(model="proxy", messages=messages)
        chunks = list(
            client.chat.completions.create(
                model="proxy",
                messages=messages,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
    assert plain.choices[0].message.content == expected.text != ""
    assert plain.usage.prompt_tokens == expected.prompt_tokens  # the upstream's exact count
    assert plain.usage.completion_tokens == expected.completion_tokens
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == expected.text
    assert chunks[-1].usage.completion_tokens == expected.completion_tokens


def test_connect_discovers_the_model_and_its_context_window(tiny_upstream):
    upstream, local = tiny_upstream
    backend = UpstreamBackend.connect(upstream.url.removesuffix("/v1"))
    assert backend.model == "tiny-up"
    assert backend.context_length == local.backend.context_length
    with pytest.raises(UpstreamError, match="does not serve 'other'"):
        UpstreamBackend.connect(upstream.url, "other")


def test_crisis_stops_at_the_proxy():
    scripted = ScriptedBackend("MODEL WORDS")
    with (
        api.BackgroundServer(api.create_app(Engine(scripted), model_name="up")) as upstream,
        proxy_for(upstream.url) as proxy,
    ):
        reply = client_for(proxy).chat.completions.create(model="x", messages=user(CRISIS))
        ordinary = client_for(proxy).chat.completions.create(model="x", messages=user("hi"))
    assert "12356" in reply.choices[0].message.content
    assert "MODEL WORDS" not in reply.choices[0].message.content
    assert ordinary.choices[0].message.content == "MODEL WORDS"
    assert len(scripted.prompts) == 1  # only the ordinary message went upstream


@pytest.mark.parametrize("stream", [False, True])
def test_upstream_down_answers_502_quickly(stream):
    with proxy_for(closed_port_url(), "gone") as proxy:
        started = time.monotonic()
        answer = httpx.post(
            proxy.url + "/v1/chat/completions",
            json={"messages": user("hello"), "stream": stream},
            timeout=10,
        )
    assert time.monotonic() - started < 3
    assert answer.status_code == 502
    error = answer.json()["error"]
    assert error["type"] == "upstream_error" and "unreachable" in error["message"]


@pytest.mark.parametrize("stream", [False, True])
def test_silent_upstream_answers_504_within_the_timeout(stream):
    slow = ScriptedBackend("late")
    slow.hold = threading.Event()  # the upstream never gets to its first token
    try:
        with (
            api.BackgroundServer(api.create_app(Engine(slow), model_name="slow")) as upstream,
            proxy_for(upstream.url, timeout=0.5) as proxy,
        ):
            started = time.monotonic()
            answer = httpx.post(
                proxy.url + "/v1/chat/completions",
                json={"messages": user("hello"), "stream": stream},
                timeout=10,
            )
            elapsed = time.monotonic() - started
            slow.hold.set()
    finally:
        slow.hold.set()
    assert answer.status_code == 504 and answer.json()["error"]["type"] == "upstream_timeout"
    assert 0.5 <= elapsed < 2.5


def test_upstream_refusal_is_reported_not_hidden():
    scripted = ScriptedBackend("x")
    with (
        api.BackgroundServer(
            api.create_app(Engine(scripted), model_name="up", api_key="their-key")
        ) as upstream,
        proxy_for(upstream.url, "up") as proxy,  # no key: the upstream says 401
        pytest.raises(openai.APIStatusError) as refused,
    ):
        client_for(proxy).chat.completions.create(model="x", messages=user("hi"))
    assert refused.value.status_code == 502
    assert "upstream answered 401" in refused.value.body["message"]


def test_base_url_and_token_estimate():
    assert api_base("http://h:8000") == api_base("http://h:8000/v1/") == "http://h:8000/v1"
    assert api_base("http://h:11434/api/v1") == "http://h:11434/api/v1"
    chinese, english = user("我最近压力很大" * 10), user("I feel tired " * 10)
    assert estimate_tokens(chinese) >= 2 * 70  # byte-level BPE: up to ~2 tokens per character
    assert 30 <= estimate_tokens(english) < 2 * 130  # about one token per 3-4 letters


def test_shared_flags_build_an_upstream_engine(tiny_upstream):
    upstream, _ = tiny_upstream
    parser = argparse.ArgumentParser()
    add_engine_arguments(parser)
    args = parser.parse_args(
        ["--upstream", upstream.url, "--temperature", "0", "--system", "be kind", "--top-k", "5"]
    )
    engine = engine_from_args(args)
    assert isinstance(engine.backend, UpstreamBackend) and engine.backend.model == "tiny-up"
    assert engine.system_prompt == "be kind"
    assert engine.settings.greedy and engine.settings.top_k == 5
    assert model_label(args, engine) == "tiny-up"
    args = parser.parse_args(["--upstream", closed_port_url()])
    with pytest.raises(UpstreamError, match="unreachable.*--upstream-model"):
        engine_from_args(args)
