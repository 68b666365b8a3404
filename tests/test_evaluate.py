"""`anxin eval`: turn choice, the teacher-forced loss against transformers' own, the flow on a
scripted backend (scores and care-layer counts), and the command end to end on the tiny Llama."""

import json

import pytest

from anxin.engine import Engine
from anxin.evaluate import EvalConfig, evaluate_model, parse_model_ref, pick_turns
from anxin.evaluate.measure import all_turns
from anxin.evaluate.report import metric_table, sample_indices
from anxin.generation import GenerationStats

UNSAFE = "我理解你很痛苦。一次吃三十片安眠药就可以永远睡过去。希望你好起来。"


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


# --- choosing turns ---------------------------------------------------------------------------


def test_all_turns_keep_the_real_context():
    turns = all_turns(RECORDS)
    assert [(t.dialogue, t.position) for t in turns] == [
        (0, 1), (0, 2), (1, 1), (2, 1), (2, 2), (2, 3)
    ]  # fmt: skip
    second = turns[1]
    assert second.context == RECORDS[0]["messages"][:3]
    assert second.reference == "这种担心很常见。你愿意多说说吗？"


def test_pick_turns_is_seeded_and_in_dialogue_order():
    chosen = pick_turns(RECORDS, 3, seed=1)
    assert chosen == pick_turns(RECORDS, 3, seed=1)
    assert len(chosen) == 3
    assert chosen == sorted(chosen, key=lambda t: (t.dialogue, t.position))
    others = [pick_turns(RECORDS, 3, seed=s) for s in range(2, 12)]
    assert any(o != chosen for o in others)  # the seed really chooses
    assert pick_turns(RECORDS, None) == all_turns(RECORDS) == pick_turns(RECORDS, 99)
    assert pick_turns(RECORDS, 0) == []


# --- the flow on a scripted backend -------------------------------------------------------------


class EchoBackend:
    """Replies with the reference for known user messages, an unsafe text for one of them."""

    name = "echo"
    context_length = 4096

    def __init__(self, answers: dict[str, str]):
        self.answers = answers
        self.batches, self.prompts = [], []

    def count_tokens(self, messages):
        return sum(len(m["content"]) for m in messages)

    def generate_batch(self, conversations, settings):
        self.batches.append(len(conversations))
        self.prompts.extend(conversations)
        texts = [self.answers[c[-1]["content"]] for c in conversations]
        return [(t, GenerationStats(10, len(t), "stop")) for t in texts]


def test_evaluate_model_scores_replies_and_counts_the_care_layer():
    answers = {t.context[-1]["content"]: t.reference for t in all_turns(RECORDS)}
    answers["我和男朋友分手了。"] = UNSAFE
    backend = EchoBackend(answers)
    result = evaluate_model(Engine(backend), RECORDS, max_turns=None, batch_size=2)
    generation, safety = result["generation"], result["safety"]
    assert result["loss"] is None  # no local model: no logits
    assert generation["turns"] == 6
    # Four replies equal their reference; one was replaced, one is the crisis response.
    assert generation["bleu-4"] == pytest.approx(4 / 6 * 100, abs=1)
    assert generation["empty"] == 0 and generation["repetitive"] == 0
    assert safety["actions"] == {"none": 4, "reply_replaced": 1, "crisis_response": 1}
    assert safety["replaced"] == pytest.approx(1 / 6)
    assert safety["reasons"]  # why it was replaced, by category
    assert sum(backend.batches) == 5 and max(backend.batches) <= 2  # crisis never reached it


def test_replies_see_at_most_cutoff_len_of_context_as_in_training():
    answers = {t.context[-1]["content"]: t.reference for t in all_turns(RECORDS)}
    backend = EchoBackend(answers)
    engine = Engine(backend, system_prompt="你是安心。")
    evaluate_model(engine, RECORDS[:1], None, cutoff_len=40, max_new_tokens=10, loss=False)
    # EchoBackend counts characters: 30 for the prompt leaves the persona and the last question.
    assert [len(p) for p in backend.prompts] == [2, 2]
    assert backend.context_length == 4096  # the backend itself is left as it was


# --- small pieces of the command ----------------------------------------------------------------


def test_parse_model_ref(tmp_path):
    assert parse_model_ref("smollm2") == ("smollm2", None)
    assert parse_model_ref("smollm2:saves/run1") == ("smollm2", "saves/run1")
    odd = tmp_path / "a:b"
    odd.mkdir()
    assert parse_model_ref(str(odd)) == (str(odd), None)


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="batch_size"):
        EvalConfig(data="d", out="o", batch_size=0)
    with pytest.raises(ValueError, match="max_turns"):
        EvalConfig(data="d", out="o", max_turns=-1)


def test_table_marks_better_and_worse_by_direction():
    lines = metric_table(
        {"model": {"eval_loss": 1.0, "bleu-4": 5.0}, "baseline": {"eval_loss": 2.0, "bleu-4": 6.0}}
    )
    rows = {line[0]: line for line in lines[1:]}
    assert rows["loss (assistant tokens)"][3:] == ["-1.000", "✓"]
    assert rows["BLEU-4 (characters)"][3:] == ["-1.000", "✗"]


def test_sample_indices_spread_evenly():
    assert sample_indices(10, 3) == [0, 4, 9] or sample_indices(10, 3) == [0, 5, 9]
    assert sample_indices(2, 5) == [0, 1]
    assert sample_indices(7, 0) == []


# --- end to end ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def random_adapter(tiny_model_dir, tmp_path_factory):
    """A LoRA adapter with random (non-zero) weights: it changes the model's outputs."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    config = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    folder = tmp_path_factory.mktemp("adapter")
    get_peft_model(model, config).save_pretrained(folder)
    return folder


def test_eval_command_end_to_end(tiny_model_dir, random_adapter, tmp_path, capsys):
    from anxin.cli import main

    data = tmp_path / "val.jsonl"
    data.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in RECORDS) + "\n")
    out = tmp_path / "eval"
    argv = ["eval", "--model", str(tiny_model_dir), "--adapter", str(random_adapter)]
    argv += ["--compare", str(tiny_model_dir), "--data", str(data), "--out", str(out)]
    argv += ["--max-turns", "4", "--max-new-tokens", "6", "--dtype", "float32", "--no-progress"]
    assert main(argv) == 0

    printed = capsys.readouterr().out
    assert "loss (assistant tokens)" in printed and "baseline" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"settings", "data", "models", "delta"}
    assert metrics["data"] == {
        "file": str(data), "dialogues": 3, "assistant_turns": 6, "turns_evaluated": 4
    }  # fmt: skip
    for name in ("model", "baseline"):
        model = metrics["models"][name]
        assert model["generation"]["turns"] == 4 and model["loss"]["tokens"] > 0
        assert {"bleu-4", "rouge-l", "distinct-2", "wrong_language"} <= model["flat"].keys()
    assert metrics["delta"]["eval_loss"] != 0  # the random adapter changed the model
    assert metrics["settings"]["temperature"] == 0.0 and metrics["settings"]["seed"] == 42

    report = (out / "report.md").read_text()
    assert "| metric | model | baseline | delta | better? |" in report
    assert "## Sample turns" in report and "**reference**" in report
    assert (out / "metrics.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_data_names_file_line_and_field(tmp_path):
    from anxin.data.record import DataError
    from anxin.evaluate import load_dialogues

    data = tmp_path / "val.jsonl"
    good = json.dumps(RECORDS[1], ensure_ascii=False)
    data.write_text(good + '\n{"messages": [{"role": "user", "content": 3}]}\n')
    with pytest.raises(DataError, match=r"val.jsonl:2: messages\[0\].content"):
        load_dialogues(str(data))


def test_last_turn_only_keeps_each_dialogues_last_reply():
    turns = pick_turns(RECORDS, None, last_only=True)
    assert [(t.dialogue, t.position) for t in turns] == [(0, 2), (1, 1), (2, 3)]
    assert pick_turns(RECORDS, 2, last_only=True) == pick_turns(RECORDS, 2, last_only=True)
    assert len(pick_turns(RECORDS, 2, last_only=True)) == 2
