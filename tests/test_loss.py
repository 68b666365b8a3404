"""Teacher-forced loss on assistant tokens (anxin.loss), on the tiny random Llama."""

import pytest

from anxin.loss import answer_positions, teacher_forced_loss
from anxin.template import IGNORE_INDEX as X
from anxin.template import render_conversation, with_system


def dialogue(*texts):
    roles = ["user", "assistant"] * len(texts)
    return {"messages": [{"role": r, "content": t} for r, t in zip(roles, texts)]}


RECORDS = [
    dialogue("我最近压力很大，晚上总是睡不着。", "听起来你这段时间很辛苦。是什么让你最放不下？",
             "考试快到了，我很担心。", "这种担心很常见。你愿意多说说吗？"),
    dialogue("我和男朋友分手了。", "分手后的失落很难受。这几天你是怎么度过的？"),
    dialogue("I feel so tired after work.", "That sounds exhausting. What keeps you awake?",
             "My exams are next week.", "What worries you most?",
             "我不想活了，今晚就想结束一切", "谢谢你告诉我。你现在安全吗？"),
]  # fmt: skip


def test_answer_positions_count_runs_of_trained_tokens():
    labels = [X, X, 5, 6, X, X, 7, X]
    assert answer_positions(labels) == [0, 0, 1, 1, 0, 0, 2, 0]
    assert answer_positions(labels, first=3) == [0, 0, 3, 3, 0, 0, 4, 0]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype="float32").eval()
    return model, AutoTokenizer.from_pretrained(tiny_model_dir)


def test_loss_equals_transformers_loss_and_padding_changes_nothing(tiny):
    import torch

    model, tokenizer = tiny
    conversations = [with_system(r["messages"], "你是安心。") for r in RECORDS]
    one = render_conversation(tokenizer, conversations[0], 1024)
    with torch.no_grad():
        expected = model(
            input_ids=torch.tensor([one.input_ids]), labels=torch.tensor([one.labels])
        ).loss.item()
    alone = teacher_forced_loss(model, tokenizer, conversations[:1], progress=False)
    assert alone["loss"] == pytest.approx(expected, abs=1e-5)
    assert alone["tokens"] == one.trained_tokens

    # Batched (right padding, different lengths) equals one conversation at a time.
    batched = teacher_forced_loss(model, tokenizer, conversations, batch_size=3, progress=False)
    single = teacher_forced_loss(model, tokenizer, conversations, batch_size=1, progress=False)
    assert batched["loss"] == pytest.approx(single["loss"], abs=1e-5)
    assert batched["by_turn"].keys() == {"1", "2", "3"}
    assert batched["by_turn"]["3"]["tokens"] < batched["by_turn"]["1"]["tokens"]
    weighted = sum(e["loss"] * e["tokens"] for e in batched["by_turn"].values())
    assert weighted / batched["tokens"] == pytest.approx(batched["loss"])
    assert batched["perplexity"] == pytest.approx(2.718281828 ** batched["loss"], rel=1e-6)


def test_loss_turn_positions_survive_dropped_pairs(tiny):
    model, tokenizer = tiny
    long = with_system(RECORDS[2]["messages"], "你是安心。")
    limit = len(render_conversation(tokenizer, long).input_ids) - 5
    assert render_conversation(tokenizer, long, limit).dropped_pairs == 1
    result = teacher_forced_loss(model, tokenizer, [long], cutoff_len=limit, progress=False)
    assert set(result["by_turn"]) == {"2", "3"}  # the kept replies keep their real positions
