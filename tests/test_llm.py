"""anxin.llm against a scripted OpenAI-compatible server: the cache (a rerun makes no calls),
retries on 429/5xx/timeouts with Retry-After, errors that stop at once, the key's handling,
and Ctrl-C keeping the finished calls."""

import itertools
import json
import threading
from types import SimpleNamespace

import pytest
from fake_llm import MODEL, Fail, FakeLLM, Say

import anxin.llm
from anxin.llm import LLMClient, LLMError, Request, api_base, retry_delay


def requests_for(*texts):
    return [Request([{"role": "user", "content": t}], {"temperature": 0.0}) for t in texts]


def echo(body):
    return Say("echo: " + body["messages"][-1]["content"])


def client(server, **options):
    options = {"backoff": 0.01, "progress": False, **options}
    return LLMClient(server.url, MODEL, **options)


def test_a_rerun_makes_no_calls_and_answers_the_same(capsys):
    with FakeLLM(echo) as server:
        first = client(server).complete_all(requests_for("a", "b", "c"))
        assert server.calls == 3
        again = client(server)
        second = again.complete_all(requests_for("a", "b", "c"))
        assert server.calls == 3  # all three from the cache
    assert [a.text for a in first] == [a.text for a in second] == ["echo: a", "echo: b", "echo: c"]
    assert [a.cached for a in second] == [True] * 3
    assert again.usage.calls == 0 and again.usage.cached == 3
    printed = capsys.readouterr().err
    assert "3 calls to fake-judge" in printed and "0 cached, 3 to make" in printed
    assert "3 cached, 0 to make" in printed


def test_identical_requests_are_asked_once(capsys):
    with FakeLLM(echo) as server:
        llm = client(server)
        answers = llm.complete_all(requests_for("a", "b", "a"))
        assert server.calls == 2
    assert [a.text for a in answers] == ["echo: a", "echo: b", "echo: a"]
    assert [a.cached for a in answers] == [False, False, True] and llm.usage.cached == 1
    assert "0 cached, 1 identical to another, 2 to make" in capsys.readouterr().err


def test_cache_key_is_the_model_messages_parameters_and_salt_not_the_url():
    one = LLMClient("http://a:1/v1", "m")
    same_model_elsewhere = LLMClient("http://b:2/v1", "m")
    other_model = LLMClient("http://a:1/v1", "n")
    request = requests_for("hi")[0]
    key = one.cache_key(request)
    assert key == same_model_elsewhere.cache_key(request)
    assert key != other_model.cache_key(request)
    assert key != one.cache_key(Request(request.messages, {"temperature": 0.5}))
    assert key != one.cache_key(Request(request.messages, request.params, salt="repeat"))
    assert len(key) == 64


def test_429_and_500_are_retried_and_counted():
    answers = iter([Fail(429, retry_after="0"), Fail(500), Fail(503), Say("fine")])
    with FakeLLM(lambda body: next(answers)) as server:
        llm = client(server)
        (answer,) = llm.complete_all(requests_for("x"))
    assert answer.text == "fine" and server.calls == 4
    assert llm.usage.retries == 3 and llm.usage.calls == 1


def test_a_slow_reply_times_out_and_is_retried():
    answers = iter([Say("late", delay=1.5), Say("on time")])
    with FakeLLM(lambda body: next(answers)) as server:
        llm = client(server, timeout=0.5)
        (answer,) = llm.complete_all(requests_for("x"))
    assert answer.text == "on time" and llm.usage.retries == 1


def test_retries_run_out_with_one_clear_line():
    with FakeLLM(lambda body: Fail(503, "overloaded")) as server:
        llm = client(server, retries=2)
        with pytest.raises(LLMError, match=r"still failing after 2 retries: HTTP 503: overloaded"):
            llm.complete_all(requests_for("x"))
        assert server.calls == 3


def test_a_refusal_stops_at_once_and_never_shows_the_key(monkeypatch):
    monkeypatch.setenv("JUDGE_KEY", "sk-secret-123")
    echoed = "Incorrect API key provided: sk-secret-123"
    with FakeLLM(lambda body: Fail(401, echoed)) as server:
        llm = LLMClient.connect(server.url, MODEL, "JUDGE_KEY", backoff=0.01, progress=False)
        with pytest.raises(LLMError) as caught:
            llm.complete_all(requests_for("x"))
        assert server.calls == 1  # 401 is not retried
        assert server.keys == ["Bearer sk-secret-123"]
    assert "sk-secret-123" not in str(caught.value) and "***" in str(caught.value)


def test_the_key_comes_from_the_named_variable_only(monkeypatch):
    monkeypatch.delenv("NO_SUCH_KEY", raising=False)
    with pytest.raises(LLMError, match=r"\$NO_SUCH_KEY is empty or not set"):
        LLMClient.connect("http://127.0.0.1:9/v1", "m", key_env="NO_SUCH_KEY")


def test_the_cache_holds_answers_and_counts_not_the_key_or_prompt(monkeypatch):
    monkeypatch.setenv("JUDGE_KEY", "sk-secret-123")
    with FakeLLM(echo) as server:
        llm = LLMClient.connect(server.url, MODEL, "JUDGE_KEY", progress=False)
        llm.complete_all(requests_for("我的秘密"))
    (entry,) = llm.cache_dir.rglob("*.json")
    stored = json.loads(entry.read_text())
    assert stored == {"model": MODEL, "text": "echo: 我的秘密", "prompt_tokens": 4,
                      "completion_tokens": 10}  # fmt: skip
    assert "sk-secret" not in entry.read_text()


def test_without_a_model_the_servers_first_is_used():
    with FakeLLM(echo) as server:
        assert LLMClient.connect(server.url, progress=False).model == MODEL
    with pytest.raises(LLMError, match="cannot list the models.*--judge-model"):
        LLMClient.connect("http://127.0.0.1:9/v1", role="judge", retries=0)


def test_concurrency_is_bounded():
    state = {"now": 0, "most": 0}
    lock = threading.Lock()

    def slow(body):
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
        threading.Event().wait(0.05)
        with lock:
            state["now"] -= 1
        return Say("ok")

    with FakeLLM(slow) as server:
        client(server, concurrency=2).complete_all(requests_for(*"abcdef"))
    assert state["most"] == 2


def test_ctrl_c_keeps_the_finished_calls_and_a_rerun_resumes(monkeypatch, capsys):
    real = anxin.llm.as_completed

    def interrupted_after_one(futures):
        yield from itertools.islice(real(futures), 1)
        raise KeyboardInterrupt

    with FakeLLM(echo) as server:
        monkeypatch.setattr(anxin.llm, "as_completed", interrupted_after_one)
        with pytest.raises(KeyboardInterrupt):
            client(server, concurrency=1).complete_all(requests_for("a", "b", "c"))
        assert "interrupted: 1 of 3 calls done and kept in" in capsys.readouterr().err
        monkeypatch.setattr(anxin.llm, "as_completed", real)
        resumed = client(server)
        answers = resumed.complete_all(requests_for("a", "b", "c"))
    assert [a.text for a in answers] == ["echo: a", "echo: b", "echo: c"]
    # The finished call is not asked again; the one in flight at Ctrl-C may or may not have
    # reached the server (and the cache) before the client was closed.
    assert resumed.usage.cached >= 1 and resumed.usage.calls <= 2
    assert server.calls <= 3 + 1


def test_retry_delay_honours_retry_after_else_backs_off_with_jitter():
    def error(headers):
        return SimpleNamespace(response=SimpleNamespace(headers=headers))

    assert retry_delay(error({"retry-after": "3"}), 0, 1.0) == 3.0
    assert retry_delay(error({"retry-after-ms": "250"}), 5, 1.0) == 0.25
    assert retry_delay(error({"retry-after": "9999"}), 0, 1.0) == 120.0
    assert retry_delay(error({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}), 0, 1.0) == 0.0
    for attempt, ceiling in [(0, 1.0), (2, 4.0), (10, 60.0)]:
        delays = {retry_delay(error({}), attempt, 1.0) for _ in range(20)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays) and len(delays) > 1


def test_api_base():
    assert api_base("http://h:8000") == api_base("http://h:8000/v1/") == "http://h:8000/v1"


CTRL_C_SCRIPT = """
import sys
from anxin.llm import LLMClient, Request
llm = LLMClient(sys.argv[1], "fake-judge", concurrency=2, progress=False)
try:
    llm.complete_all([Request([{"role": "user", "content": t}]) for t in ("fast", "slow", "slow2")])
except KeyboardInterrupt:
    sys.exit(130)
"""


def test_ctrl_c_exits_at_once_without_waiting_for_calls_in_flight(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    release = threading.Event()

    def script(body):
        if body["messages"][-1]["content"] != "fast":
            release.wait(60)  # a judge that takes its time
        return Say("done")

    with FakeLLM(script) as server:
        process = subprocess.Popen(
            [sys.executable, "-c", CTRL_C_SCRIPT, server.url], stderr=subprocess.PIPE, text=True
        )
        try:
            deadline = time.monotonic() + 60
            while server.calls < 3 and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.3)  # the fast answer reaches the cache
            process.send_signal(signal.SIGINT)
            started = time.monotonic()
            _, err = process.communicate(timeout=30)
            waited = time.monotonic() - started
        finally:
            release.set()
            process.kill()
    assert process.returncode == 130 and waited < 10
    assert "interrupted: 1 of 3 calls done" in err
