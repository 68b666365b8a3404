"""The LLM judge of `anxin eval --judge URL`: CPsyCoun's turn-based evaluation.

Each sampled turn keeps its true history; each model's reply, as the user saw it (after the
care layer), is scored by the judge at temperature 0 on the rubric of `prompts.py`: the
CPsyCoun dimensions, empathy, and crisis handling on turns the care layer flagged. With two
models, the judge also says which reply is better, asked in both orders (A/B, then B/A) since
judges favour a position; a win needs one order to prefer the model and the other not to
prefer the baseline, a contradiction is a tie. A spread subset of the model's turns is judged
a second time to show how consistent the judge is.

    calls = turns × models + 2 × turns (with a baseline) + repeats, plus one retry per invalid
    answer (an answer still invalid then is counted as unjudged, never dropped silently).

`ask_for_json` (one retry with the validation error shown) is shared with the simulated-client
judge (`anxin.evaluate.simulate`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from pydantic import BaseModel, ValidationError

from anxin.evaluate import prompts
from anxin.evaluate.stats import agreement, mean_with_interval, outcome_shares
from anxin.llm import LLMClient, Request

ORDERS = ("forward", "reverse")  # forward: A = model, B = baseline; reverse: A = baseline
_THINKING = re.compile(r"<think>.*?</think>", re.DOTALL)  # reasoning models think aloud first


# --- asking for JSON ------------------------------------------------------------------------------


@dataclass
class Judged:
    value: BaseModel | None  # the validated answer; None: unjudged
    error: str = ""  # why it is unjudged (or why the first answer needed a retry)
    retried: bool = False


def parse_json(text: str, schema: type[BaseModel]) -> BaseModel:
    """The one JSON object in `text` (code fences and a thinking block allowed around it),
    validated; ValueError says what is wrong in words the judge can act on."""
    body = _THINKING.sub("", text)
    start, end = body.find("{"), body.rfind("}")
    if start < 0 or end < start:
        raise ValueError("没有找到 JSON 对象 (no JSON object found)")
    try:
        data = json.loads(body[start : end + 1])
    except json.JSONDecodeError as error:
        raise ValueError(f"JSON 格式错误 (invalid JSON): {error.msg}") from None
    try:
        return schema.model_validate(data)
    except ValidationError as error:
        problems = [f"{'.'.join(map(str, e['loc'])) or 'root'}: {e['msg']}" for e in error.errors()]
        raise ValueError("字段不符合要求 (fields invalid): " + "; ".join(problems)) from None


def ask_for_json(
    llm: LLMClient, requests: list[Request], schemas: list[type[BaseModel]], desc: str
) -> list[Judged]:
    """Each request's answer validated against its schema; an invalid answer is asked once
    more with the error shown, and one still invalid is returned unjudged (value None)."""
    answers = llm.complete_all(requests, desc)
    judged = [_validate(a.text, s) for a, s in zip(answers, schemas, strict=True)]
    again = [i for i, j in enumerate(judged) if j.value is None]
    if not again:
        return judged
    retries = [
        Request(
            prompts.retry_messages(requests[i].messages, answers[i].text, judged[i].error),
            requests[i].params,
            requests[i].salt,
        )
        for i in again
    ]
    for i, answer in zip(again, llm.complete_all(retries, f"{desc}, retry invalid"), strict=True):
        second = _validate(answer.text, schemas[i])
        judged[i] = Judged(second.value, second.error or judged[i].error, retried=True)
    return judged


def _validate(text: str, schema: type[BaseModel]) -> Judged:
    try:
        return Judged(parse_json(text, schema))
    except ValueError as error:
        return Judged(None, str(error))


# --- the turn-based evaluation --------------------------------------------------------------------


@dataclass
class Job:
    kind: str  # score | pair | repeat
    label: str  # the model's name for score/repeat, the order for pair
    index: int  # the turn
    request: Request
    schema: type[BaseModel]


@dataclass
class JudgeRun:
    """What the judge said: `metrics` goes into metrics.json (numbers only, no conversation
    text); `reasons` (turn → label → the judge's words) only into the report's samples."""

    metrics: dict
    reasons: list[dict[str, str]] = field(default_factory=list)


def crisis_flags(turns) -> list[bool]:
    """Whether the care layer flags each turn's client message (in its context), exactly as
    the Engine assessed it: the flag belongs to the message, so it is the same for every model."""
    from anxin.safety import CrisisDetector

    detector = CrisisDetector()
    flags = []
    for turn in turns:
        *context, last = turn.context
        flags.append(detector.assess(last["content"], context=context).level != "none")
    return flags


def plan_jobs(
    turns, replies: dict[str, list[str]], flags: list[bool], repeats: list[int], params: dict
) -> list[Job]:
    jobs = []
    for label, texts in replies.items():
        for i, turn in enumerate(turns):
            messages = prompts.turn_prompt(turn.context, texts[i], flags[i])
            jobs.append(
                Job("score", label, i, Request(messages, params), prompts.turn_schema(flags[i]))
            )
    if len(replies) == 2:
        first, second = replies.values()
        for i, turn in enumerate(turns):
            for order, (a, b) in zip(ORDERS, [(first[i], second[i]), (second[i], first[i])]):
                request = Request(prompts.pair_prompt(turn.context, a, b), params)
                jobs.append(Job("pair", order, i, request, prompts.PairVerdict))
    label, texts = next(iter(replies.items()))
    for i in repeats:
        messages = prompts.turn_prompt(turns[i].context, texts[i], flags[i])
        request = Request(messages, params, salt="repeat")  # the same question, asked anew
        jobs.append(Job("repeat", label, i, request, prompts.turn_schema(flags[i])))
    return jobs


def call_count(turns: int, models: int, repeats: int) -> int:
    """Judge calls before retries: what the README's cost line says."""
    return turns * models + (2 * turns if models == 2 else 0) + repeats


def judge_turns(
    llm: LLMClient,
    turns,
    replies: dict[str, list[str]],
    *,
    repeats: Sequence[int] = (),
    max_tokens: int = 512,
    seed: int = 42,
) -> JudgeRun:
    """Score every model's reply to every turn, compare two models both ways, judge the
    `repeats` turns of the first model again; aggregate with bootstrap intervals."""
    flags = crisis_flags(turns)
    params = {"temperature": 0.0, "max_tokens": max_tokens, "seed": seed}
    jobs = plan_jobs(turns, replies, flags, list(repeats), params)
    judged = ask_for_json(
        llm, [j.request for j in jobs], [j.schema for j in jobs], "judging replies"
    )
    found: dict[tuple[str, str, int], Judged] = {
        (job.kind, job.label, job.index): result for job, result in zip(jobs, judged, strict=True)
    }
    metrics = {
        "judge": {"url": llm.base_url, "model": llm.model, "temperature": 0.0},
        "turns": len(turns),
        "flagged_turns": sum(flags),
        "dimensions": _dimension_info(),
        "models": {
            label: score_summary([found[("score", label, i)] for i in range(len(turns))], seed)
            for label in replies
        },
    }
    if len(replies) == 2:
        metrics["delta"] = paired_deltas(found, list(replies), len(turns), seed)
        metrics["pairwise"] = pairwise_summary(
            [
                (found[("pair", "forward", i)], found[("pair", "reverse", i)])
                for i in range(len(turns))
            ],
            seed,
        )
    label = next(iter(replies))
    metrics["consistency"] = consistency_summary(
        [(found[("score", label, i)], found[("repeat", label, i)]) for i in repeats]
    )
    metrics["per_turn"] = per_turn(turns, flags, replies, found)
    metrics["usage"] = llm.describe()["usage"]
    return JudgeRun(metrics, _reasons(len(turns), replies, found))


def _dimension_info() -> dict:
    return {d.key: {"name": d.name, "max": d.top} for d in prompts.turn_dimensions(True)}


def _scores(result: Judged | None) -> dict | None:
    return (
        None
        if result is None or result.value is None
        else result.value.model_dump(exclude={"reason"})
    )


def score_summary(results: list[Judged], seed: int = 42) -> dict:
    """Per dimension: mean and 95 % interval over the judged replies (crisis handling over
    the judged flagged ones); how many replies were judged, retried and left unjudged."""
    scores = [_scores(r) for r in results]
    summary = {}
    for dimension in prompts.turn_dimensions(True):
        values = [s[dimension.key] for s in scores if s and dimension.key in s]
        summary[dimension.key] = mean_with_interval(values, seed)
    return {
        "judged": sum(s is not None for s in scores),
        "unjudged": sum(s is None for s in scores),
        "retried": sum(r.retried for r in results),
        "dimensions": summary,
        "unjudged_reasons": sorted({r.error for r in results if r.value is None}),
    }


def paired_deltas(found, labels: list[str], count: int, seed: int = 42) -> dict:
    """Model minus baseline per dimension, over the turns where both replies were judged."""
    deltas = {}
    for dimension in prompts.turn_dimensions(True):
        differences = []
        for i in range(count):
            a, b = (_scores(found[("score", label, i)]) for label in labels)
            if a and b and dimension.key in a and dimension.key in b:
                differences.append(a[dimension.key] - b[dimension.key])
        deltas[dimension.key] = mean_with_interval(differences, seed)
    return deltas


def preference(forward: str, reverse: str) -> tuple[int, int]:
    """The model's (first, second) verdicts from its own side: +1 preferred, −1 not, 0 tie.
    In the forward order the model is A, in the reverse order it is B."""
    side = {"A": 1, "B": -1, "tie": 0}
    return side[forward], -side[reverse]


def combine(first: int, second: int) -> int:
    """One outcome from both orders: a win needs one order for the model and the other not
    against it; orders that contradict each other (position bias) make a tie."""
    total = first + second
    return (total > 0) - (total < 0)


def pairwise_summary(pairs: list[tuple[Judged, Judged]], seed: int = 42) -> dict:
    """Win/tie/loss with intervals over the turns judged in both orders; how often the two
    orders agree, and how often a decided verdict chose whichever reply came first."""
    outcomes, consistent, first_chosen, decided = [], 0, 0, 0
    for forward, reverse in pairs:
        if forward.value is None or reverse.value is None:
            continue
        verdicts = forward.value.winner, reverse.value.winner
        one, two = preference(*verdicts)
        outcomes.append(combine(one, two))
        consistent += one == two
        for verdict in verdicts:
            decided += verdict != "tie"
            first_chosen += verdict == "A"
    return {
        "judged": len(outcomes),
        "unjudged": len(pairs) - len(outcomes),
        **outcome_shares(outcomes, seed),
        "order_agreement": consistent / len(outcomes) if outcomes else None,
        "first_position_chosen": first_chosen / decided if decided else None,
    }


def consistency_summary(pairs: list[tuple[Judged, Judged]]) -> dict:
    """The judge's agreement with itself on the repeated turns judged both times."""
    both = [(_scores(a), _scores(b)) for a, b in pairs]
    usable = [(a, b) for a, b in both if a and b]
    keys = [d.key for d in prompts.turn_dimensions(False)]
    result = agreement([a for a, _ in usable], [b for _, b in usable], keys)
    return {"repeated": len(pairs), "judged_twice": len(usable), **result}


def per_turn(turns, flags: list[bool], replies: dict, found: dict) -> list[dict]:
    """Each turn's scores and verdicts (numbers only) for readers of metrics.json."""
    rows = []
    for i, turn in enumerate(turns):
        row = {"dialogue": turn.dialogue, "position": turn.position, "flagged": flags[i]}
        row["scores"] = {label: _scores(found[("score", label, i)]) for label in replies}
        if len(replies) == 2:
            verdicts = [found[("pair", order, i)].value for order in ORDERS]
            row["pair"] = {o: (v.winner if v else None) for o, v in zip(ORDERS, verdicts)}
        rows.append(row)
    return rows


def _reasons(count: int, replies, found) -> list[dict[str, str]]:
    reasons = []
    for i in range(count):
        entry = {}
        for key in [("score", label, i) for label in replies] + [("pair", o, i) for o in ORDERS]:
            result = found.get(key)
            if result is not None:
                entry[key[1]] = result.value.reason if result.value else f"unjudged: {result.error}"
        reasons.append(entry)
    return reasons
