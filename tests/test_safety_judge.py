"""The optional guard model: its answers read, its verdict only ever raising, its silence noted.

The guard runs against tests/fake_llm.py, a scripted OpenAI-compatible server.
"""

import argparse
import json
import time

import pytest
from fake_llm import Fail, FakeLLM, Say

from anxin.safety import CrisisDetector
from anxin.safety.judge import SafetyJudge, _conversation, guard_meanings, parse_verdict


@pytest.mark.parametrize(
    "answer, level, categories",
    [
        ("safe", None, []),
        ("unsafe\nS11", "crisis", ["suicidal_ideation"]),
        ("unsafe\nS1,S11", "crisis", ["suicidal_ideation"]),
        ("unsafe\nS1", "concern", ["harm_others"]),
        ("unsafe\nS7", None, []),  # privacy: nothing the care layer acts on
        ("Safety: Unsafe\nCategories: Suicide & Self-Harm", "crisis", ["suicidal_ideation"]),
        (
            "Safety: Controversial\nCategories: Suicide & Self-Harm",
            "concern",
            ["suicidal_ideation"],
        ),
        (
            "Safety: Unsafe\nCategories: Violent, Suicide & Self-Harm",
            "crisis",
            ["suicidal_ideation"],
        ),
        ("Safety: Safe\nCategories: None", None, []),
        ("Safety: Unsafe\nCategories: Jailbreak", None, []),
    ],
)
def test_llama_guard_and_qwen3guard_answers_are_read(answer, level, categories):
    verdict = parse_verdict(answer)
    assert (verdict.level, verdict.categories) == (level, categories)
    assert verdict.reason.startswith("judge:")


def test_an_unreadable_answer_is_no_verdict():
    assert parse_verdict("I think this message is fine.") is None
    assert parse_verdict("") is None


def test_every_guard_category_maps_to_a_known_level_and_category():
    meanings = guard_meanings()
    assert meanings["llama_guard"]["S11"].level == "crisis"
    assert meanings["qwen3guard"]["unsafe:Suicide & Self-Harm"].level == "crisis"


def test_the_guard_reads_the_last_turns_in_the_order_its_template_wants():
    context = [
        {"role": "system", "content": "persona"},
        {"role": "assistant", "content": "你好"},  # an assistant first: dropped
        {"role": "user", "content": "我不想活了"},
        {"role": "assistant", "content": "你现在安全吗？"},
        "嗯",
    ]
    assert _conversation("就今晚吧", context) == [
        {"role": "user", "content": "我不想活了"},
        {"role": "assistant", "content": "你现在安全吗？"},
        {"role": "user", "content": "嗯\n就今晚吧"},
    ]


def test_the_guard_raises_a_level_with_its_reason():
    with FakeLLM(lambda body: Say("unsafe\nS11")) as server:
        detector = CrisisDetector(judge=SafetyJudge(server.url, model="guard"))
        assessment = detector.assess("今天天气不错")
        body = server.requests[0]
    assert assessment.level == "crisis" and assessment.categories == ["suicidal_ideation"]
    assert "judge:llama_guard:unsafe:S11" in assessment.reasons
    assert body["model"] == "guard" and body["temperature"] == 0
    assert body["messages"] == [{"role": "user", "content": "今天天气不错"}]


def test_the_guard_never_lowers_and_is_not_asked_about_a_crisis():
    with FakeLLM(lambda body: Say("safe")) as server:
        detector = CrisisDetector(judge=SafetyJudge(server.url))
        assert detector.assess("我想自杀").level == "crisis"
        assert server.calls == 0  # the local decision is already the highest
        concern = detector.assess("最近压力好大，感觉很绝望")
        assert server.calls == 1  # one verdict (the model name comes from /v1/models)
    assert concern.level == "concern" and "judge:llama_guard:safe" in concern.reasons


def test_a_slow_guard_is_left_behind_and_the_audit_log_says_so(tmp_path):
    log = tmp_path / "audit.jsonl"
    with FakeLLM(lambda body: Say("unsafe\nS11", delay=3)) as server:
        detector = CrisisDetector(audit_log=log, judge=SafetyJudge(server.url, timeout=0.3))
        started = time.monotonic()
        assessment = detector.assess("今天天气不错")
        waited = time.monotonic() - started
    assert waited < 1.5
    assert assessment.level == "none" and "judge:timeout" in assessment.reasons
    record = json.loads(log.read_text(encoding="utf-8").splitlines()[-1])
    assert record["level"] == "none" and "judge:timeout" in record["reasons"]
    assert "天气" not in log.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "script, reason",
    [(lambda body: Fail(500), "judge:unavailable"), (lambda body: Say("ok"), "judge:unreadable")],
)
def test_a_failing_guard_leaves_the_local_decision(script, reason):
    with FakeLLM(script) as server:
        assessment = CrisisDetector(judge=SafetyJudge(server.url, model="g")).assess("今天天气不错")
    assert reason in assessment.reasons


def test_an_unreachable_guard_leaves_the_local_decision():
    detector = CrisisDetector(judge=SafetyJudge("http://127.0.0.1:9", model="g", timeout=1))
    assessment = detector.assess("最近压力好大，感觉很绝望")
    assert assessment.level == "concern" and "judge:unavailable" in assessment.reasons


def test_serve_chat_and_web_flags_build_the_judge_into_the_engine(tmp_path):
    from anxin.serve import add_engine_arguments, engine_from_args

    with FakeLLM(lambda body: Say("unsafe\nS11")) as server:
        parser = argparse.ArgumentParser()
        add_engine_arguments(parser)
        args = parser.parse_args(
            [
                "--upstream",
                server.url,
                "--safety-judge",
                server.url,
                "--safety-judge-model",
                "guard",
                "--safety-judge-timeout",
                "1.5",
                "--safety-audit-log",
                str(tmp_path / "audit.jsonl"),
            ]
        )
        engine = engine_from_args(args)
        judge = engine.detector.judge
        assert (judge.model, judge.timeout) == ("guard", 1.5)
        assessment = engine.assess([{"role": "user", "content": "今天天气不错"}])
    assert assessment.level == "crisis"
    assert (tmp_path / "audit.jsonl").exists()


def test_without_the_flag_there_is_no_judge():
    from anxin.serve import add_engine_arguments, detector_from_args

    parser = argparse.ArgumentParser()
    add_engine_arguments(parser)
    assert detector_from_args(parser.parse_args([])).judge is None
