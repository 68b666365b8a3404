"""`anxin data pairs`: SFT dialogues become preference pairs (the counsellor's reply chosen, a
model's reply to the same history rejected), with the filters and what they leave out counted."""

from __future__ import annotations

import json

from anxin.data.pairs import (
    CARE_LAYER_ANSWERED,
    CHOSEN_BREAKS_RUBRIC,
    EMPTY_REPLY,
    NEAR_IDENTICAL,
    make_pairs,
    similarity,
)
from anxin.engine import Reply, SafetyNote

GOOD = "听起来你这段时间真的很辛苦，一个人扛了很多。最近最让你放不下的是什么？"
DIALOGUES = [
    {
        "id": "d1",
        "messages": [
            {"role": "user", "content": "我最近总是睡不着。"},
            {"role": "assistant", "content": GOOD},
            {"role": "user", "content": "主要是工作的事。"},
            {
                "role": "assistant",
                "content": "工作压得人喘不过气的时候，夜里的脑子也停不下来。能多说说吗？",
            },
        ],
    },
    {
        "id": "d2",
        "messages": [
            {"role": "user", "content": "考试又没考好。"},
            {
                "role": "assistant",
                "content": "你这是焦虑症，建议吃点药调节一下。",
            },  # breaks the rubric
        ],
    },
]


class ScriptedEngine:
    """Answers each context by its last user message, as chat_batch does, batch by batch."""

    def __init__(self, answers: dict):
        self.answers = answers
        self.batches = []

    def chat_batch(self, conversations, **settings):
        self.batches.append((len(conversations), settings))
        return [self.answers[c[-1]["content"]] for c in conversations]


def test_pairs_take_the_counsellor_as_chosen_and_the_model_as_rejected():
    engine = ScriptedEngine(
        {
            "我最近总是睡不着。": Reply("多运动，早点睡就好了。"),
            "主要是工作的事。": Reply(""),
            "考试又没考好。": Reply("下次努力就好。"),
        }
    )
    pairs, report = make_pairs(
        DIALOGUES, engine, model_name="m", batch_size=2, settings={"seed": 1}
    )
    assert [p["id"] for p in pairs] == ["d1-r1", "d2-r1"]
    first = pairs[0]
    assert first["messages"] == DIALOGUES[0]["messages"][:1]
    assert first["chosen"] == {"role": "assistant", "content": GOOD}
    assert first["rejected"] == {"role": "assistant", "content": "多运动，早点睡就好了。"}
    assert report.turns == 3 and report.pairs == 2 and report.left_out == {EMPTY_REPLY: 1}
    assert [size for size, _ in engine.batches] == [2, 1]  # generated in batches
    assert engine.batches[0][1] == {"seed": 1}


def test_filters_leave_out_and_count():
    engine = ScriptedEngine(
        {
            "我最近总是睡不着。": Reply(GOOD + "。"),  # near-identical to the counsellor
            "主要是工作的事。": Reply(
                "请联系热线。", safety=SafetyNote("crisis", action="crisis_response")
            ),
            "考试又没考好。": Reply("下次努力就好。"),
        }
    )
    pairs, report = make_pairs(DIALOGUES, engine, model_name="m", rubric=True, max_similarity=0.9)
    assert pairs == []
    assert report.left_out == {NEAR_IDENTICAL: 1, CARE_LAYER_ANSWERED: 1, CHOSEN_BREAKS_RUBRIC: 1}
    assert similarity("abc", "abc") == 1.0 and similarity("abc", "xyz") == 0.0


def test_cli_writes_pairs_and_registers_them(talkative_model_dir, tmp_path, capsys):
    from anxin.cli import main
    from anxin.data.registry import load_datasets

    source = tmp_path / "sft.jsonl"
    source.write_text("\n".join(json.dumps(d, ensure_ascii=False) for d in DIALOGUES) + "\n")
    out = tmp_path / "pairs.jsonl"
    argv = ["data", "pairs", str(source), "-o", str(out), "--model", str(talkative_model_dir)]
    argv += ["--max-new-tokens", "4", "--max-similarity", "1.01", "--register", str(tmp_path)]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "pairs from 3 counsellor replies" in err
    pairs = load_datasets("pairs", tmp_path)  # registered as ranking data, readable for dpo
    assert pairs and all(p["chosen"] and p["rejected"] is not None for p in pairs)
    assert json.loads((tmp_path / "dataset_info.json").read_text())["pairs"]["ranking"] is True
