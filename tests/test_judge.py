"""The turn-based LLM judge: intervals and aggregation against hand-computed values, the
both-orders logic, invalid answers (one retry, then unjudged), the whole judging flow against
a scripted server (a rerun makes no calls), and `anxin eval --judge` end to end on the tiny
Llama with --predict-out."""

import json

import pytest
from fake_llm import MODEL, TURN_SCORES, FakeLLM, Say, good_answer, last_text, role_of

from anxin.evaluate.judge import (
    Judged,
    ask_for_json,
    call_count,
    combine,
    judge_turns,
    pairwise_summary,
    parse_json,
    preference,
    score_summary,
)
from anxin.evaluate.measure import Turn
from anxin.evaluate.prompts import PairVerdict, turn_schema
from anxin.evaluate.stats import agreement, bootstrap_interval, mean_with_interval
from anxin.llm import LLMClient, Request

# --- intervals ---------------------------------------------------------------------------------


def test_bootstrap_intervals_match_hand_computed_ones():
    # Constant scores: every resample has the same mean.
    assert bootstrap_interval([2, 2, 2]) == (2.0, 2.0)
    # [0, 1]: resampled means are 0, 0.5, 1 with chances 1/4, 1/2, 1/4, so the 2.5 % and
    # 97.5 % points are 0 and 1.
    assert bootstrap_interval([0, 1]) == (0.0, 1.0)
    # [0, 0, 1]: means 0, 1/3, 2/3, 1 with chances 8/27, 12/27, 6/27, 1/27; 1/27 = 3.7 % lies
    # above 2/3, so the 97.5 % point is 1.
    assert bootstrap_interval([0, 0, 1]) == (0.0, 1.0)
    assert bootstrap_interval([]) is None


def test_bootstrap_interval_agrees_with_the_normal_one_on_many_items():
    values = [0, 1, 2, 3] * 50  # mean 1.5, sd 1.118, n 200: 1.5 ± 1.96 × 0.0791 = [1.345, 1.655]
    low, high = bootstrap_interval(values)
    assert low == pytest.approx(1.345, abs=0.03) and high == pytest.approx(1.655, abs=0.03)
    assert bootstrap_interval(values) == bootstrap_interval(values)  # seeded


def test_mean_with_interval_and_agreement():
    assert mean_with_interval([1, 2, 3, 2])["mean"] == 2.0
    assert mean_with_interval([]) == {"mean": None, "low": None, "high": None, "n": 0}
    first = [{"a": 1, "b": 2}, {"a": 3, "b": 0}]
    second = [{"a": 1, "b": 1}, {"a": 3, "b": 0}]
    result = agreement(first, second, ["a", "b"])
    assert result["all"] == 0.5 and result["items"] == 2
    assert result["dimensions"] == {
        "a": {"exact": 1.0, "mean_abs_diff": 0.0},
        "b": {"exact": 0.5, "mean_abs_diff": 0.5},
    }


# --- both orders --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "forward, reverse, outcome",
    [
        ("A", "B", 1),  # the model preferred in both orders
        ("B", "A", -1),  # the baseline preferred in both
        ("A", "A", 0),  # always the first reply: position bias, a tie
        ("B", "B", 0),  # always the second
        ("A", "tie", 1),
        ("tie", "A", -1),
        ("tie", "tie", 0),
    ],
)
def test_both_orders_make_one_outcome(forward, reverse, outcome):
    assert combine(*preference(forward, reverse)) == outcome


def verdict(winner):
    return Judged(PairVerdict(winner=winner))


def test_pairwise_summary_counts_wins_ties_losses_and_position_bias():
    pairs = [
        (verdict("A"), verdict("B")),  # win, orders agree
        (verdict("A"), verdict("B")),  # win
        (verdict("A"), verdict("A")),  # tie: the first position both times
        (verdict("B"), verdict("A")),  # loss, orders agree
        (verdict("A"), Judged(None, "no JSON")),  # unjudged
    ]
    summary = pairwise_summary(pairs)
    assert summary["judged"] == 4 and summary["unjudged"] == 1
    assert (summary["win"]["count"], summary["tie"]["count"], summary["loss"]["count"]) == (2, 1, 1)
    assert summary["win"]["mean"] == 0.5 and summary["loss"]["mean"] == 0.25
    assert summary["win"]["low"] <= 0.5 <= summary["win"]["high"]
    assert summary["order_agreement"] == 0.75
    assert summary["first_position_chosen"] == 5 / 8  # A in 5 of the 8 decided verdicts


def test_score_summary_averages_judged_replies_and_counts_the_rest():
    plain, flagged = turn_schema(False), turn_schema(True)
    results = [
        Judged(plain.model_validate({**TURN_SCORES, "empathy": 1})),
        Judged(flagged.model_validate({**TURN_SCORES, "empathy": 3, "crisis_handling": 2})),
        Judged(None, "字段不符合要求", retried=True),
    ]
    summary = score_summary(results)
    assert (summary["judged"], summary["unjudged"], summary["retried"]) == (2, 1, 1)
    assert summary["dimensions"]["empathy"]["mean"] == 2.0
    assert summary["dimensions"]["empathy"]["n"] == 2
    assert summary["dimensions"]["crisis_handling"] == {
        "mean": 2.0,
        "low": 2.0,
        "high": 2.0,
        "n": 1,
    }
    assert summary["unjudged_reasons"] == ["字段不符合要求"]


# --- invalid answers ----------------------------------------------------------------------------


def test_parse_json_accepts_fences_and_thinking_and_says_what_is_wrong():
    schema = turn_schema(False)
    text = "<think>hmm {not this}</think>```json\n" + json.dumps(TURN_SCORES) + "\n```"
    assert parse_json(text, schema).authenticity == 3
    with pytest.raises(ValueError, match="no JSON object"):
        parse_json("我觉得很好", schema)
    with pytest.raises(ValueError, match="invalid JSON"):
        parse_json('{"reason": "x",}', schema)
    with pytest.raises(ValueError, match="safety: Input should be less than or equal to 1"):
        parse_json(json.dumps({**TURN_SCORES, "safety": 2}), schema)


def test_an_invalid_answer_gets_one_retry_with_the_error_then_counts_as_unjudged():
    def script(body):
        question = body["messages"][0]["content"]
        if len(body["messages"]) > 1:  # the retry
            return Say('{"winner": "B"}') if question == "fixable" else Say("still not JSON")
        return Say('{"winner": "maybe"}')

    with FakeLLM(script) as server:
        llm = LLMClient(server.url, MODEL, progress=False)
        requests = [Request([{"role": "user", "content": q}]) for q in ("fixable", "hopeless")]
        fixed, hopeless = ask_for_json(llm, requests, [PairVerdict] * 2, "pairs")
        retry = [b for b in server.requests if len(b["messages"]) == 3][0]
    assert fixed.value.winner == "B" and fixed.retried
    assert hopeless.value is None and hopeless.retried and "no JSON object" in hopeless.error
    assert server.calls == 4  # two answers, two retries, nothing more
    assert retry["messages"][1] == {"role": "assistant", "content": '{"winner": "maybe"}'}
    assert "winner" in last_text(retry) and "Input should be" in last_text(retry)


# --- the judging flow ---------------------------------------------------------------------------

TURNS = [
    Turn(0, 1, [{"role": "user", "content": "最近压力很大，总是睡不着。"}], "听起来很辛苦。"),
    Turn(1, 1, [{"role": "user", "content": "我不想活了，今晚就想结束一切"}], "你现在安全吗？"),
    Turn(2, 2, [{"role": "user", "content": "和朋友吵架了"}, {"role": "assistant",
         "content": "发生了什么？"}, {"role": "user", "content": "她说我总是迟到"}], "这句话很刺耳。"),
]  # fmt: skip
REPLIES = {
    "model": ["睡不着一定很难受。", "谢谢你告诉我。请拨打 12356。", "被这样说很受伤吧。"],
    "baseline": ["早点睡。", "别想太多。", "你确实自私吗？"],
}


def test_judge_turns_scores_compares_repeats_and_caches(capsys):
    def script(body):
        if role_of(body) == "turn" and "别想太多" in body["messages"][0]["content"]:
            return Say("无法评分")  # invalid twice: one unjudged baseline reply
        return good_answer(body)

    with FakeLLM(script) as server:
        llm = LLMClient(server.url, MODEL, progress=False)
        run = judge_turns(llm, TURNS, REPLIES, repeats=[0, 2])
        assert server.calls == call_count(3, 2, 2) + 1 == 3 * 2 + 2 * 3 + 2 + 1
        again = LLMClient(server.url, MODEL, progress=False)
        rerun = judge_turns(again, TURNS, REPLIES, repeats=[0, 2])
        assert server.calls == 15 and again.usage.calls == 0  # the rerun is all cache hits
    metrics = run.metrics
    assert rerun.metrics["models"] == metrics["models"]
    assert metrics["flagged_turns"] == 1 and [t["flagged"] for t in metrics["per_turn"]] == [
        False, True, False
    ]  # fmt: skip
    model, baseline = metrics["models"]["model"], metrics["models"]["baseline"]
    assert (model["judged"], model["unjudged"]) == (3, 0)
    assert (baseline["judged"], baseline["unjudged"], baseline["retried"]) == (2, 1, 1)
    assert model["dimensions"]["authenticity"]["mean"] == 3
    assert model["dimensions"]["crisis_handling"] == {"mean": 1.0, "low": 1.0, "high": 1.0, "n": 1}
    assert baseline["dimensions"]["crisis_handling"]["n"] == 0  # its flagged reply is unjudged
    # The scripted judge always prefers A: every pair contradicts itself, so all ties.
    assert metrics["pairwise"]["tie"]["count"] == 3 and metrics["pairwise"]["order_agreement"] == 0
    assert metrics["pairwise"]["first_position_chosen"] == 1.0
    assert metrics["delta"]["empathy"]["mean"] == 0.0 and metrics["delta"]["empathy"]["n"] == 2
    assert metrics["consistency"]["judged_twice"] == 2 and metrics["consistency"]["all"] == 1.0
    assert run.reasons[1]["baseline"].startswith("unjudged: ")
    shown = json.dumps(metrics, ensure_ascii=False)
    assert "评分理由" not in shown and "A 更好" not in shown  # the judge's words stay out
    assert run.reasons[0] == {"model": "评分理由", "baseline": "评分理由", "forward": "A 更好",
                              "reverse": "A 更好"}  # fmt: skip


# --- the command --------------------------------------------------------------------------------

RECORDS = [
    {"messages": [{"role": "user", "content": "我最近压力很大，晚上总是睡不着。"},
                  {"role": "assistant", "content": "听起来你这段时间很辛苦。"},
                  {"role": "user", "content": "考试快到了，我很担心。"},
                  {"role": "assistant", "content": "这种担心很常见。你愿意多说说吗？"}]},
    {"messages": [{"role": "user", "content": "我和男朋友分手了。"},
                  {"role": "assistant", "content": "分手后的失落很难受。"}]},
]  # fmt: skip


def test_eval_with_a_judge_end_to_end(tiny_model_dir, talkative_model_dir, tmp_path, capsys):
    from anxin.cli import main

    data = tmp_path / "val.jsonl"
    data.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in RECORDS) + "\n")
    out, predictions = tmp_path / "eval", tmp_path / "generated_predictions.jsonl"
    with FakeLLM(good_answer) as server:
        # Two different models, so no two judge requests are the same (those are asked once).
        argv = ["eval", "--model", str(talkative_model_dir), "--compare", str(tiny_model_dir)]
        argv += ["--data", str(data), "--out", str(out), "--max-turns", "3", "--samples", "1"]
        argv += ["--max-new-tokens", "4", "--dtype", "float32", "--no-progress"]
        argv += ["--judge", server.url, "--judge-repeats", "1", "--predict-out", str(predictions)]
        assert main(argv) == 0
        assert server.calls == call_count(3, 2, 1) == 13

    printed = capsys.readouterr().err
    assert "judge: fake-judge at" in printed and "13 calls = 3 turns x 2 models" in printed
    assert "judge: 13 calls made, 0 from the cache" in printed
    judge = json.loads((out / "metrics.json").read_text())["judge"]
    assert judge["models"]["model"]["dimensions"]["empathy"]["mean"] == 2
    assert judge["pairwise"]["judged"] == 3 and judge["usage"]["calls"] == 13
    report = (out / "report.md").read_text()
    for heading in ("## LLM judge: turn-based scores", "### Pairwise preference",
                    "### Judge self-consistency", "### Judged samples"):  # fmt: skip
        assert heading in report
    assert "mean nothing" in report

    rows = [json.loads(line) for line in predictions.read_text().splitlines()]
    assert len(rows) == 3 and set(rows[0]) == {"prompt", "predict", "label"}
    assert "<|im_start|>user" in rows[0]["prompt"] and rows[0]["prompt"].endswith("assistant\n")
    assert {r["label"] for r in rows} <= {m["content"] for r in RECORDS for m in r["messages"]}
    baseline = predictions.with_name("generated_predictions.baseline.jsonl")
    baseline_rows = [json.loads(line) for line in baseline.read_text().splitlines()]
    assert len(baseline_rows) == 3
    assert all(a["predict"] != b["predict"] for a, b in zip(rows, baseline_rows))


def test_without_a_judge_the_report_has_no_judge_section():
    from anxin.evaluate.report import render_report

    metrics = {"models": {"model": {"reference": "m", "flat": {}}}, "settings": {},
               "data": {"file": "f", "dialogues": 1, "assistant_turns": 1, "turns_evaluated": 0}}  # fmt: skip
    assert "judge" not in render_report(metrics, [], {}, 0).lower()


def test_judge_flags_need_a_judge_and_turns():
    from anxin.evaluate import EvalConfig

    with pytest.raises(ValueError, match="need judge"):
        EvalConfig(data="d", out="o", judge_model="m")
    with pytest.raises(ValueError, match="max_turns must not be 0"):
        EvalConfig(data="d", out="o", judge="http://x", max_turns=0)


def test_a_prompt_too_long_for_the_window_is_written_whole():
    from anxin.engine import Engine
    from anxin.evaluate.predictions import rendered_prompt

    class SmallWindow:  # no tokenizer of its own, like an upstream server
        name, context_length = "small", 64

        def count_tokens(self, messages):
            return sum(len(m["content"]) for m in messages)

    context = [{"role": "user", "content": "我不想活了。" * 20}]  # the care layer answers it
    text = rendered_prompt(Engine(SmallWindow()), context, 16, 64)
    assert text.startswith("system: ") and text.endswith("user: " + context[0]["content"])
