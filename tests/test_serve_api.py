"""The OpenAI-compatible API, driven by the official `openai` client and by raw HTTP.

A scripted backend makes replies deterministic (and lets a test hold a reply open); one test
runs the tiny random Llama to prove the whole path with real generation.
"""

from __future__ import annotations

import argparse
import json
import logging
import threading
import time

import httpx
import openai
import pytest

from anxin import safety
from anxin.engine import Engine
from anxin.errors import ConfigError
from anxin.generation import GenerationSettings, GenerationStats
from anxin.serve import api

CRISIS = "我不想活了，今晚就想结束一切"


class ScriptedBackend:
    """Streams a fixed reply in pieces; records prompts; can hold a reply until released."""

    name = "scripted"
    context_length = 4096

    def __init__(self, reply: str = "I hear you. That sounds hard.", piece: int = 4, delay=0.0):
        self.reply, self.piece, self.delay = reply, piece, delay
        self.prompts: list[list[dict]] = []
        self.hold: threading.Event | None = None  # set() it to let held replies go on
        self.started = threading.Event()
        self.stopped_early = threading.Event()

    def count_tokens(self, messages):
        return sum(len(m["content"]) for m in messages)

    def stream(self, messages, settings, stats, stop=None):
        self.prompts.append(messages)
        self.started.set()
        if self.hold is not None:
            self.hold.wait(timeout=20)
        stats.prompt_tokens = self.count_tokens(messages)
        for i in range(0, len(self.reply), self.piece):
            if stop is not None and stop.is_set():
                self.stopped_early.set()
                return
            time.sleep(self.delay)
            stats.completion_tokens += 1
            yield self.reply[i : i + self.piece]

    def generate_batch(self, conversations, settings):
        self.prompts.extend(conversations)
        return [(self.reply, GenerationStats(1, 1)) for _ in conversations]


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


@pytest.fixture
def scripted():
    return ScriptedBackend()


def serve(backend, **options) -> api.BackgroundServer:
    engine = Engine(backend, system_prompt="persona")
    return api.BackgroundServer(api.create_app(engine, model_name="anxin-test", **options))


def client_for(server, key: str = "none") -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0, timeout=20)


@pytest.fixture(scope="module")
def tiny_engine(talkative_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from anxin.backends.hf import TransformersBackend

    model = AutoModelForCausalLM.from_pretrained(talkative_model_dir).eval()
    backend = TransformersBackend(model, AutoTokenizer.from_pretrained(talkative_model_dir))
    greedy = GenerationSettings(max_new_tokens=16, temperature=0.0, repetition_penalty=1.0)
    return Engine(backend, settings=greedy)


def test_openai_client_plain_and_streaming_on_the_tiny_model(tiny_engine):
    messages = user("I feel tired after work.")
    expected = tiny_engine.chat(messages, max_new_tokens=8)
    with api.BackgroundServer(api.create_app(tiny_engine, model_name="tiny")) as server:
        client = client_for(server)
        plain = client.chat.completions.create(model="tiny", messages=messages, max_tokens=8)
        chunks = list(
            client.chat.completions.create(
                model="tiny",
                messages=messages,
                max_tokens=8,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
    assert plain.choices[0].message.content == expected.text != ""
    assert plain.choices[0].finish_reason == expected.finish_reason
    assert plain.usage.completion_tokens == expected.completion_tokens == 8
    assert plain.usage.total_tokens == expected.prompt_tokens + 8
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == expected.text
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == expected.finish_reason
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 8
    assert len({c.id for c in chunks}) == 1


def test_sse_stream_ends_with_done_and_carries_the_care_note(scripted):
    with serve(scripted) as server:
        body = {"messages": user("hello"), "stream": True}
        with httpx.stream("POST", server.url + "/v1/chat/completions", json=body) as answer:
            assert answer.headers["content-type"].startswith("text/event-stream")
            data = [line[5:].strip() for line in answer.iter_lines() if line.startswith("data:")]
    assert data[-1] == "[DONE]"
    events = [json.loads(d) for d in data[:-1]]
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in events)
    assert text == scripted.reply
    assert events[-1]["anxin"] == {
        "level": "none",
        "action": "none",
        "categories": [],
        "dropped_pairs": 0,
    }
    assert "usage" not in events[-1]  # only when stream_options.include_usage asks for it


def test_models_card_carries_the_disclaimer_and_health_answers(scripted):
    with serve(scripted) as server:
        models = client_for(server).models.list()
        health = httpx.get(server.url + "/health").json()
    assert [m.id for m in models.data] == ["anxin-test"]
    assert models.data[0].disclaimer == safety.disclaimer("zh")
    assert models.data[0].max_model_len == scripted.context_length
    assert health["status"] == "ok" and health["backend"] == "scripted"


@pytest.mark.parametrize("stream", [False, True])
def test_crisis_message_never_reaches_the_model_over_the_api(stream):
    backend = ScriptedBackend("MODEL WORDS")
    with serve(backend) as server:
        client = client_for(server)
        if stream:
            pieces = client.chat.completions.create(model="x", messages=user(CRISIS), stream=True)
            text = "".join(c.choices[0].delta.content or "" for c in pieces if c.choices)
        else:
            reply = client.chat.completions.create(model="x", messages=user(CRISIS))
            text = reply.choices[0].message.content
            assert reply.model_extra["anxin"]["action"] == "crisis_response"
    assert "MODEL WORDS" not in text and "12356" in text
    assert backend.prompts == []


def test_full_queue_answers_429_at_once(scripted):
    scripted.hold = threading.Event()
    results: dict[str, int] = {}

    def post(name):
        answer = httpx.post(
            server.url + "/v1/chat/completions", json={"messages": user(name)}, timeout=20
        )
        results[name] = answer.status_code

    with serve(scripted, concurrency=1, queue_size=1) as server:
        running = threading.Thread(target=post, args=("first",))
        running.start()
        assert scripted.started.wait(5)
        waiting = threading.Thread(target=post, args=("second",))
        waiting.start()
        deadline = time.monotonic() + 5
        while httpx.get(server.url + "/health").json()["waiting"] < 1:
            assert time.monotonic() < deadline, "the second request never queued"
            time.sleep(0.01)
        started = time.monotonic()
        with pytest.raises(openai.RateLimitError) as refused:
            client_for(server).chat.completions.create(model="x", messages=user("third"))
        assert time.monotonic() - started < 1
        # The care layer does not queue: a crisis is answered at once, full queue or not,
        # plain and streamed, while the model is still busy with the first request.
        for stream in (False, True):
            started = time.monotonic()
            body = {"messages": user(CRISIS), "stream": stream}
            crisis = httpx.post(server.url + "/v1/chat/completions", json=body, timeout=5)
            assert crisis.status_code == 200 and "12356" in crisis.text
            assert time.monotonic() - started < 1
        scripted.hold.set()
        running.join(10)
        waiting.join(10)
    assert refused.value.body["code"] == "queue_full"
    assert int(refused.value.response.headers["retry-after"]) >= 1
    assert results == {"first": 200, "second": 200}
    assert [m["content"] for p in scripted.prompts for m in p if m["role"] == "user"] == [
        "first",
        "second",
    ]  # the crises never reached the model


def test_too_large_max_tokens_or_body_answer_400(scripted):
    with serve(scripted, max_tokens_limit=64, max_request_bytes=2000) as server:
        client = client_for(server)
        with pytest.raises(openai.BadRequestError) as too_many:
            client.chat.completions.create(model="x", messages=user("hi"), max_tokens=65)
        with pytest.raises(openai.BadRequestError) as too_big:
            client.chat.completions.create(model="x", messages=user("长" * 1000))
        ok = client.chat.completions.create(model="x", messages=user("hi"), max_tokens=64)
        malformed = httpx.post(
            server.url + "/v1/chat/completions",
            content=b"{not json",
            headers={"Content-Type": "application/json"},
        )
        no_user = httpx.post(
            server.url + "/v1/chat/completions",
            json={"messages": [{"role": "assistant", "content": "hi"}]},
        )
    assert too_many.value.body["param"] == "max_tokens"
    assert too_many.value.body["type"] == "invalid_request_error"
    assert too_big.value.body["code"] == "too_large"
    assert ok.choices[0].message.content == scripted.reply
    assert malformed.status_code == 400
    assert malformed.json()["error"]["message"].startswith("the request body is not valid JSON")
    assert no_user.status_code == 400 and no_user.json()["error"]["param"] == "messages"
    assert len(scripted.prompts) == 1  # only the valid request reached the model


def test_api_key_is_required_when_set(scripted):
    with serve(scripted, api_key="s3cret") as server:
        with pytest.raises(openai.AuthenticationError):
            client_for(server, "wrong").chat.completions.create(model="x", messages=user("hi"))
        with pytest.raises(openai.AuthenticationError):
            client_for(server, "wrong").models.list()
        reply = client_for(server, "s3cret").chat.completions.create(model="x", messages=user("hi"))
        health = httpx.get(server.url + "/health")
    assert reply.choices[0].message.content == scripted.reply
    assert health.status_code == 200
    assert len(scripted.prompts) == 1


def test_binding_beyond_localhost_needs_a_key(monkeypatch, capsys):
    monkeypatch.delenv("ANXIN_API_KEY", raising=False)
    parser = argparse.ArgumentParser()
    api.add_arguments(parser)
    with pytest.raises(ConfigError, match="--api-key-file"):
        api.main(parser.parse_args(["--host", "0.0.0.0"]))


def test_the_key_comes_from_a_file_or_the_environment_and_a_command_line_key_warns(
    tmp_path, monkeypatch, capsys
):
    parser = argparse.ArgumentParser()
    api.add_arguments(parser)
    key_file = tmp_path / "key"
    key_file.write_text("s3cret\n")
    key_file.chmod(0o600)
    assert api.read_api_key(parser.parse_args(["--api-key-file", str(key_file)])) == "s3cret"
    monkeypatch.setenv("ANXIN_API_KEY", "from-env")
    assert api.read_api_key(parser.parse_args([])) == "from-env"
    assert capsys.readouterr().err == ""
    assert api.read_api_key(parser.parse_args(["--api-key", "visible"])) == "visible"
    assert "visible to every user" in capsys.readouterr().err
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigError, match="empty"):
        api.read_api_key(parser.parse_args(["--api-key-file", str(tmp_path / "empty")]))


def test_a_client_that_leaves_stops_the_generation():
    backend = ScriptedBackend("Some words. " * 100, piece=4, delay=0.01)
    with serve(backend) as server:
        body = {"messages": user("hello"), "stream": True}
        with httpx.stream("POST", server.url + "/v1/chat/completions", json=body) as answer:
            for line in answer.iter_lines():
                if '"content":"Some' in line:
                    break  # leave after the first piece of text
        assert backend.stopped_early.wait(5)
        deadline = time.monotonic() + 5
        while httpx.get(server.url + "/health").json()["running"]:
            assert time.monotonic() < deadline, "the slot was never freed"
            time.sleep(0.01)


def test_a_non_streaming_client_that_leaves_stops_the_generation_too():
    backend = ScriptedBackend("Some words. " * 200, piece=4, delay=0.01)
    with serve(backend) as server:
        with pytest.raises(httpx.ReadTimeout):  # the client gives up long before the end
            httpx.post(
                server.url + "/v1/chat/completions", json={"messages": user("hi")}, timeout=0.5
            )
        assert backend.stopped_early.wait(5)
        deadline = time.monotonic() + 5
        while httpx.get(server.url + "/health").json()["running"]:
            assert time.monotonic() < deadline, "the slot was never freed"
            time.sleep(0.01)


def test_cross_site_requests_are_refused_unless_their_origin_is_allowed(scripted):
    url = "/v1/chat/completions"
    body = json.dumps({"messages": user("hi")})
    with serve(scripted) as server:
        # A page can send text/plain without asking the browser first: refused, never run.
        plain = httpx.post(server.url + url, content=body, headers={"Content-Type": "text/plain"})
        foreign = httpx.post(
            server.url + url, json={"messages": user("hi")}, headers={"Origin": "https://evil.test"}
        )
    with serve(scripted, cors_origins=("http://localhost:3000",)) as server:
        allowed = httpx.post(
            server.url + url,
            json={"messages": user("hi")},
            headers={"Origin": "http://localhost:3000"},
        )
    assert plain.status_code == 415 and plain.json()["error"]["code"] == "unsupported_media_type"
    assert foreign.status_code == 403 and "--cors-origin" in foreign.json()["error"]["message"]
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "http://localhost:3000"
    assert len(scripted.prompts) == 1


@pytest.mark.parametrize(
    "extra, param",
    [
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"logprobs": True}, "logprobs"),
        ({"stop": ["\n"]}, "stop"),
    ],
)
def test_parameters_anxin_cannot_honour_are_refused_by_name(scripted, extra, param):
    with serve(scripted) as server:
        answer = httpx.post(
            server.url + "/v1/chat/completions", json={"messages": user("hi"), **extra}
        )
    assert answer.status_code == 400 and answer.json()["error"]["param"] == param
    assert scripted.prompts == []


def test_the_developer_role_is_a_system_message(scripted):
    with serve(scripted) as server:
        messages = [{"role": "developer", "content": "be brief"}, *user("hi")]
        client_for(server).chat.completions.create(model="x", messages=messages)
    assert scripted.prompts[0][0] == {"role": "system", "content": "be brief"}


def test_conversation_text_is_never_logged(scripted, capfd):
    secret = "my secret worry about exams"
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    handler = Keep(logging.DEBUG)
    loggers = [logging.getLogger(n) for n in ("", "uvicorn", "uvicorn.access", "anxin")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        with serve(scripted) as server:
            client = client_for(server)
            client.chat.completions.create(model="x", messages=user(secret))
            list(client.chat.completions.create(model="x", messages=user(secret), stream=True))
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
    captured = capfd.readouterr()
    assert secret not in captured.out + captured.err + "\n".join(records)
    assert scripted.prompts[0][-1]["content"] == secret  # it did go through


def test_a_prompt_that_cannot_fit_is_refused_but_a_crisis_is_still_answered():
    backend = ScriptedBackend("ok")
    backend.context_length = 400  # ScriptedBackend counts one token per character
    with serve(backend) as server:
        client = client_for(server)
        history = [*user("old " * 60), {"role": "assistant", "content": "yes " * 20}]
        fits = client.chat.completions.create(
            model="x", messages=history + user("short"), max_tokens=100
        )
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(model="x", messages=user("long " * 80), max_tokens=100)
        long_crisis = client.chat.completions.create(
            model="x", messages=user("今天发生了很多事。" * 40 + CRISIS), max_tokens=100
        )
    assert fits.model_extra["anxin"]["dropped_pairs"] == 1
    assert refused.value.body["code"] == "context_length_exceeded"
    assert "12356" in long_crisis.choices[0].message.content
    assert len(backend.prompts) == 1


def test_urls_put_ipv6_hosts_in_brackets():
    from anxin.serve import http_url

    assert http_url("::1", 8000, "/v1") == "http://[::1]:8000/v1"
    assert http_url("127.0.0.1", 7860, "/") == "http://127.0.0.1:7860/"
    assert http_url("[::1]", 80) == "http://[::1]:80"
