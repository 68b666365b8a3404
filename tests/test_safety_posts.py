"""The written client posts (data/safety_posts): the held-out part is frozen, every part reads
as a labelled set, and the development parts hold no near copy of a frozen message."""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from pathlib import Path

import pytest

from anxin.safety.sets import read_examples

ROOT = Path(__file__).resolve().parents[1]
POSTS = ROOT / "data" / "safety_posts"
HELDOUT_SHA256 = "34e898d351d0710b28c33f4840658cd8be4894e2b8fc8021b87063534e317d7e"
# The frozen parts a development post may not copy (data/safety_posts/README.md, step 4).
FROZEN = (
    (POSTS / "posts_heldout.jsonl", None),
    (ROOT / "data" / "safety_heldout.jsonl", None),
    (ROOT / "data" / "safety_real" / "smilechat_heldout.jsonl", None),
    (ROOT / "data" / "psysuicide" / "valid.json", "heldout"),
)
NEAR_COPY = 0.5  # share of the shorter text's character 4-grams found in the other


def grams(text: str) -> set[str]:
    return {text[i : i + 4] for i in range(len(text) - 3)}


def user_texts(example) -> list[str]:
    return [example.text] + [turn["content"] for turn in example.context if turn["role"] == "user"]


def test_the_heldout_part_is_frozen():
    data = (POSTS / "posts_heldout.jsonl").read_bytes()
    assert hashlib.sha256(data).hexdigest() == HELDOUT_SHA256
    assert HELDOUT_SHA256 in (POSTS / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", ["posts_heldout.jsonl", "posts_train.jsonl"])
def test_each_part_is_a_labelled_set_of_whole_writers(name):
    examples = read_examples(POSTS / name)
    assert all(e.level is not None for e in examples)  # read_examples checks level vs label
    assert len({e.id for e in examples}) == len(examples)
    writers = {int(e.id.split("-")[1]) for e in examples}
    assert writers == (set(range(1, 7)) if name == "posts_heldout.jsonl" else set(range(7, 13)))
    assert len(examples) == (720 if name == "posts_heldout.jsonl" else 695)
    crises = sum(e.label == "crisis" for e in examples)
    assert 0.45 < crises / len(examples) < 0.55


def test_the_second_reading_covers_every_heldout_post_once_and_agrees_as_reported():
    """README: levels agree on 0.994 (716 of 720), crisis against not on all 720."""
    writers = {e.id: e.level for e in read_examples(POSTS / "posts_heldout.jsonl")}
    lines = (POSTS / "posts_heldout_reader.jsonl").read_text(encoding="utf-8").splitlines()
    reader = {r["id"]: r["level"] for r in map(json.loads, lines)}
    assert len(lines) == len(reader) == len(writers) == 720
    assert reader.keys() == writers.keys()
    assert sum(reader[i] == writers[i] for i in writers) == 716
    assert all((reader[i] == "crisis") == (writers[i] == "crisis") for i in writers)


def test_the_phrases_are_a_labelled_development_set_of_one_writer():
    examples = read_examples(POSTS / "phrases_dev.jsonl")
    assert len(examples) == 511 and len({e.id for e in examples}) == 511
    assert {e.id.split("-")[1] for e in examples} == {"13"}
    assert sum(e.label == "crisis" for e in examples) == 238


# The review sets of data/safety_posts/README.md (each has its section there, named in the
# README's table of files): messages, crises.
REVIEW_SETS = [
    ("review_past_now.jsonl", 242, 160),
    ("review_recovery.jsonl", 202, 153),
    ("review_spacing.jsonl", 228, 142),
    ("review_emoji.jsonl", 227, 131),
    ("review_lethal.jsonl", 179, 116),
    ("review_topic.jsonl", 147, 75),
    ("review_farewell.jsonl", 135, 51),
    ("review_pills.jsonl", 100, 35),
    ("review_gap_person.jsonl", 160, 76),
    ("review_answers.jsonl", 329, 153),
    ("review_answers_check.jsonl", 209, 79),
    ("review_indirect.jsonl", 177, 99),
    ("review_followups.jsonl", 104, 49),
    ("review_new_rules.jsonl", 92, 47),
    ("review_indirect_check.jsonl", 153, 80),
    ("review_indirect_more.jsonl", 154, 80),
    ("review_rules_more.jsonl", 78, 38),
    ("review_time.jsonl", 119, 45),
    ("review_time_check.jsonl", 120, 46),
    ("review_time_more.jsonl", 119, 45),
    ("review_tags.jsonl", 119, 60),
    ("review_attempt.jsonl", 90, 45),
    ("review_cantonese.jsonl", 118, 59),
    ("review_cantonese_check.jsonl", 120, 60),
    ("review_cantonese_more.jsonl", 120, 60),
    ("review_taiwan.jsonl", 118, 60),
    ("review_overdose.jsonl", 60, 30),
    ("review_hoarding.jsonl", 59, 24),
    ("review_social.jsonl", 117, 57),
    ("review_de.jsonl", 66, 32),
    ("review_social_check.jsonl", 118, 60),
    ("review_raise.jsonl", 64, 15),
    ("review_round1.jsonl", 62, 27),
    ("review_edge.jsonl", 61, 20),
    ("review_asked.jsonl", 57, 28),
    ("review_deny.jsonl", 60, 30),
    ("review_notseen.jsonl", 40, 20),
    ("review_record.jsonl", 59, 29),
    ("review_record_check.jsonl", 59, 29),
    ("review_window.jsonl", 39, 20),
    ("review_period.jsonl", 40, 20),
    ("review_period_check.jsonl", 40, 20),
    ("review_clinical.jsonl", 40, 20),
    ("review_childhood.jsonl", 39, 19),
    ("review_time_named.jsonl", 22, 14),
    ("review_then.jsonl", 40, 20),
    ("review_role.jsonl", 40, 20),
    ("review_role_check.jsonl", 38, 18),
    ("review_abuse.jsonl", 59, 29),
    ("review_abuse_more.jsonl", 59, 30),
    ("review_abuse_check.jsonl", 60, 30),
    ("review_abuse_check_more.jsonl", 60, 30),
    ("review_abuse_break.jsonl", 40, 20),
    ("medicine_lines.jsonl", 99, 29),
]


@pytest.mark.parametrize(("name", "messages", "crises"), REVIEW_SETS)
def test_each_review_is_a_labelled_development_set(name, messages, crises):
    examples = read_examples(POSTS / name)
    assert len(examples) == messages and len({e.id for e in examples}) == messages
    assert sum(e.label == "crisis" for e in examples) == crises


def test_the_spacing_review_is_typed_with_spaces_for_commas():
    examples = read_examples(POSTS / "review_spacing.jsonl")
    assert all(" " in e.text or "\u3000" in e.text for e in examples)


@pytest.mark.parametrize(
    "name", ["posts_train.jsonl", "phrases_dev.jsonl", *(name for name, _, _ in REVIEW_SETS)]
)
def test_no_development_post_is_a_near_copy_of_a_frozen_message(name):
    frozen = [e.text for path, part in FROZEN for e in read_examples(path, part)]
    frozen_grams = [grams(text) for text in frozen]
    holding = defaultdict(list)  # 4-gram -> frozen texts that hold it
    for index, found in enumerate(frozen_grams):
        for gram in found:
            holding[gram].append(index)
    for example in read_examples(POSTS / name):
        for text in user_texts(example):
            mine = grams(text)
            if not mine:  # under four characters: not inside any frozen message
                assert not any(text in other for other in frozen), (example.id, text)
            shared = defaultdict(int)
            for gram in mine:
                for index in holding.get(gram, ()):
                    shared[index] += 1
            for index, count in shared.items():
                share = count / min(len(mine), len(frozen_grams[index]))
                assert share < NEAR_COPY, (example.id, text, frozen[index])
