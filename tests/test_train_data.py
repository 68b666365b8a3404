"""Training data: persona, split, labels only on answers, the token cache, per-batch padding,
and the checkpoint bookkeeping that resuming relies on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_train import make_toy_dataset

from anxin.template import DEFAULT_SYSTEM_PROMPT, IGNORE_INDEX, apply_template
from anxin.train import checkpoints, load_train_config
from anxin.train.data import PaddedBatches, TokenizedDataset, load_conversations, tokenize


def data_args(folder: Path, *pairs: str):
    return load_train_config(None, ["dataset=toy", f"dataset_dir={folder}", *pairs]).data


def test_conversations_get_the_persona_and_a_reproducible_split(tmp_path):
    folder = make_toy_dataset(tmp_path / "data", count=20)
    args = data_args(folder, "val_size=0.2", "max_samples=15")
    first = load_conversations(args, DEFAULT_SYSTEM_PROMPT, seed=7)
    again = load_conversations(args, DEFAULT_SYSTEM_PROMPT, seed=7)
    assert (len(first.train), len(first.validation)) == (12, 3)
    assert first.fingerprints() == again.fingerprints()
    assert first.fingerprints() != load_conversations(args, DEFAULT_SYSTEM_PROMPT, 8).fingerprints()
    for record in first.train + first.validation:
        assert record["messages"][0] == {"role": "system", "content": DEFAULT_SYSTEM_PROMPT}
    bare = load_conversations(args, None, seed=7)
    assert all(r["messages"][0]["role"] == "user" for r in bare.train)


def test_a_conversation_with_its_own_system_prompt_keeps_it(tmp_path, tiny_tokenizer):
    folder = tmp_path / "data"
    make_toy_dataset(folder, count=4)
    own = {"messages": [{"role": "system", "content": "Be brief."}]}
    own["messages"] += [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
    ]
    with open(folder / "toy.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(own) + "\n")
    records = load_conversations(
        data_args(folder, "val_size=0"), DEFAULT_SYSTEM_PROMPT, seed=1
    ).train
    systems = [r["messages"][0]["content"] for r in records]
    assert systems.count("Be brief.") == 1 and systems.count(DEFAULT_SYSTEM_PROMPT) == 4


def test_labels_cover_only_the_answers_and_their_end_of_turn(tiny_tokenizer):
    messages = [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "I cannot sleep."},
        {"role": "assistant", "content": "That sounds hard."},
        {"role": "user", "content": "Yes."},
        {"role": "assistant", "content": "Tell me more."},
    ]
    dataset, stats = tokenize([{"messages": messages}], tiny_tokenizer, cutoff_len=512)
    item = dataset[0]
    trained = [t for t, label in zip(item["input_ids"].tolist(), item["labels"].tolist(), strict=True)
               if label != IGNORE_INDEX]  # fmt: skip
    text = tiny_tokenizer.decode(trained)
    assert text == "That sounds hard.<|im_end|>Tell me more.<|im_end|>"
    assert stats.trained_tokens == len(trained)


def test_tokenising_is_cached_by_data_template_and_cutoff(tiny_tokenizer, tmp_path):
    folder = make_toy_dataset(tmp_path / "data", count=6)
    records = load_conversations(data_args(folder), "S", seed=1).train
    first, stats = tokenize(records, tiny_tokenizer, cutoff_len=256)
    second, cached = tokenize(records, tiny_tokenizer, cutoff_len=256)
    assert not stats.from_cache and cached.from_cache
    assert second.input_ids.equal(first.input_ids) and second.labels.equal(first.labels)
    assert not tokenize(records, tiny_tokenizer, cutoff_len=128)[1].from_cache
    assert not tokenize(records[:-1], tiny_tokenizer, cutoff_len=256)[1].from_cache
    assert not tokenize(records, tiny_tokenizer, 256, overwrite_cache=True)[1].from_cache
    apply_template(tiny_tokenizer, "llama3")
    assert not tokenize(records, tiny_tokenizer, cutoff_len=256)[1].from_cache


def test_long_conversations_lose_oldest_turns_not_the_answer(tiny_tokenizer):
    turns = []
    for i in range(12):
        turns += [
            {"role": "user", "content": f"My exams are next week and I worry ({i})."},
            {"role": "assistant", "content": f"What worries you most? ({i})"},
        ]
    dataset, stats = tokenize([{"messages": turns}], tiny_tokenizer, cutoff_len=120)
    assert dataset.length(0) <= 120
    assert stats.dropped_pairs > 0
    tail = tiny_tokenizer.decode(dataset[0]["input_ids"].tolist())
    assert tail.rstrip().endswith("What worries you most? (11)<|im_end|>")


def test_batches_pad_to_their_longest_and_a_batch_of_one_not_at_all(tiny_tokenizer):
    assert tiny_tokenizer.pad_token_id == 2
    collate = PaddedBatches(tiny_tokenizer)
    short = {"input_ids": [5, 6], "labels": [IGNORE_INDEX, 6]}
    long = {"input_ids": [7, 8, 9, 2], "labels": [IGNORE_INDEX, 8, 9, 2]}
    batch = collate([short, long])
    assert batch["input_ids"].tolist() == [[5, 6, 2, 2], [7, 8, 9, 2]]
    assert batch["attention_mask"].tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]
    assert batch["labels"].tolist() == [
        [IGNORE_INDEX, 6, IGNORE_INDEX, IGNORE_INDEX],
        long["labels"],
    ]
    single = collate([long])
    assert single["input_ids"].shape == (1, 4)  # no padding
    assert single["labels"][0, -1] == 2  # the eos/pad id is trained when it ends an answer
    rounded = PaddedBatches(tiny_tokenizer, multiple_of=3)([long])
    assert rounded["input_ids"].tolist() == [[7, 8, 9, 2, 2, 2]]
    assert rounded["attention_mask"].tolist() == [[1, 1, 1, 1, 0, 0]]
    assert rounded["labels"].tolist() == [[*long["labels"], IGNORE_INDEX, IGNORE_INDEX]]


def test_evaluation_order_is_by_length():
    dataset = TokenizedDataset.from_lists([[1, 2, 3], [1], [1, 2]], [[1, 2, 3], [1], [1, 2]])
    ordered = dataset.sorted_by_length()
    assert [ordered.length(i) for i in range(3)] == [1, 2, 3]
    assert ordered[2]["input_ids"].tolist() == [1, 2, 3]


# --- checkpoints ----------------------------------------------------------------------------


def fake_checkpoint(root: Path, step: int, complete: bool = True) -> Path:
    folder = root / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    if complete:
        checkpoints.mark_complete(folder, step)
    return folder


def test_newest_complete_checkpoint_ignores_half_written_ones(tmp_path):
    fake_checkpoint(tmp_path, 10)
    fake_checkpoint(tmp_path, 20)
    fake_checkpoint(tmp_path, 30, complete=False)
    assert checkpoints.newest_complete(tmp_path).name == "checkpoint-20"
    assert [p.name for p in checkpoints.remove_incomplete(tmp_path)] == ["checkpoint-30"]
    assert not (tmp_path / "checkpoint-30").exists()


def test_rotation_keeps_the_newest_and_the_best(tmp_path):
    for step in (10, 20, 30, 40):
        fake_checkpoint(tmp_path, step)
    fake_checkpoint(tmp_path, 50, complete=False)  # being written: never counted or deleted
    checkpoints.rotate(tmp_path, keep=2, protect=tmp_path / "checkpoint-10")
    remaining = sorted(p.name for p in tmp_path.iterdir())
    assert remaining == ["checkpoint-10", "checkpoint-40", "checkpoint-50"]


def test_trim_log_drops_what_came_after_the_checkpoint_and_torn_lines(tmp_path):
    lines = [json.dumps({"step": s, "loss": 1.0, "elapsed_s": s * 2.0}) for s in (1, 2, 3)]
    (tmp_path / "trainer_log.jsonl").write_text("\n".join(lines) + '\n{"step": 4, "lo')
    assert checkpoints.trim_log(tmp_path, last_step=2) == 4.0
    kept = (tmp_path / "trainer_log.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in kept] == [1, 2]


@pytest.mark.parametrize("resume", [True, "path"])
def test_prepare_output_dir_on_resume(tmp_path, resume):
    first = fake_checkpoint(tmp_path, 2)
    fake_checkpoint(tmp_path, 4, complete=False)
    output = load_train_config(
        None,
        [
            "dataset=toy",
            f"output_dir={tmp_path}",
            f"resume_from_checkpoint={first if resume == 'path' else 'true'}",
        ],
    ).output
    assert checkpoints.prepare_output_dir(output, is_main=True) == first
    assert not (tmp_path / "checkpoint-4").exists()


@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing")
def test_logits_only_where_trained_give_the_same_loss(tiny_model_dir, tiny_tokenizer):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from anxin.train.data import accepts_trained_logits_only

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model = get_peft_model(base, LoraConfig(target_modules="all-linear"))
    assert accepts_trained_logits_only(model)
    features = [
        {"input_ids": [5, 6, 7, 8, 9], "labels": [IGNORE_INDEX, IGNORE_INDEX, 7, 8, 9]},
        {"input_ids": [5, 6, 7], "labels": [IGNORE_INDEX, 6, 7]},
    ]
    tokenizer = tiny_tokenizer
    lean = PaddedBatches(tokenizer, trained_logits_only=True)(features)
    assert lean["logits_to_keep"].tolist() == [
        [False, True, True, True, False],
        [True, True, False, False, False],
    ]
    assert lean["shift_labels"].tolist() == [7, 8, 9, 6, 7]
    padded = PaddedBatches(tokenizer, trained_logits_only=True, multiple_of=8)(features)
    with torch.no_grad():
        full_loss = model(**PaddedBatches(tokenizer)(features)).loss
        lean_output = model(**lean)
        padded_loss = model(**padded).loss
    assert lean_output.logits.shape[0] == 5  # five rows of vocabulary logits, not 2 × 5
    assert lean_output.loss.item() == pytest.approx(full_loss.item(), abs=1e-6)
    assert padded_loss.item() == pytest.approx(full_loss.item(), abs=1e-6)
