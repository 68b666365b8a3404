"""Validation messages, skip-invalid counts, duplicates and repairs."""

from __future__ import annotations

import pickle

import pytest

from anxin.data.record import (
    DROPPED_LAST_USER,
    EMPTY_CONTENT,
    MERGED_TURNS,
    MISPLACED_SYSTEM,
    NO_FINAL_ANSWER,
    NOT_ALTERNATING,
    NOT_TEXT,
    UNKNOWN_ROLE,
    DataError,
    SourcedRecord,
    check_records,
    record_problem,
    repair_messages,
    validate_record,
)


def dialogue(*pairs: tuple[str, str], **metadata) -> dict:
    return {**metadata, "messages": [{"role": r, "content": c} for r, c in pairs]}


GOOD = dialogue(("system", "s"), ("user", "u"), ("assistant", "a"))


def test_data_error_reads_file_line_field_problem():
    error = DataError("x.jsonl", 3, "messages[1].role", "bad")
    assert str(error) == "x.jsonl:3: messages[1].role: bad"
    assert isinstance(error, ValueError) and error.reason == "bad"
    assert str(DataError("x.json", None, "json", "broken")) == "x.json: json: broken"
    assert str(pickle.loads(pickle.dumps(error))) == str(error)


@pytest.mark.parametrize(
    ("record", "field", "reason"),
    [
        (dialogue(("user", "u"), ("bot", "a")), "messages[1].role", UNKNOWN_ROLE),
        (dialogue(("user", ""), ("assistant", "a")), "messages[0].content", EMPTY_CONTENT),
        (dialogue(("user", "  \n"), ("assistant", "a")), "messages[0].content", EMPTY_CONTENT),
        ({"messages": [{"role": "user", "content": 3}]}, "messages[0].content", NOT_TEXT),
        (
            dialogue(("user", "u"), ("assistant", "a"), ("system", "s")),
            "messages[2].role",
            MISPLACED_SYSTEM,
        ),
        (
            dialogue(("system", "s"), ("system", "t"), ("user", "u")),
            "messages[1].role",
            MISPLACED_SYSTEM,
        ),
        (dialogue(("assistant", "a"), ("user", "u")), "messages[0].role", NOT_ALTERNATING),
        (
            dialogue(("user", "u"), ("user", "v"), ("assistant", "a")),
            "messages[1].role",
            NOT_ALTERNATING,
        ),
        (
            dialogue(("user", "u"), ("assistant", "a"), ("user", "v")),
            "messages[2].role",
            NO_FINAL_ANSWER,
        ),
        (dialogue(("system", "s")), "messages[0].role", NO_FINAL_ANSWER),
    ],
)
def test_each_problem_names_its_field(record, field, reason):
    problem = record_problem(record, "d.jsonl", 7)
    assert problem is not None
    assert (problem.file, problem.line, problem.field, problem.reason) == (
        "d.jsonl",
        7,
        field,
        reason,
    )


def test_structure_problems_and_valid_record():
    assert record_problem(GOOD) is None
    assert record_problem([1]).field == "record"
    assert record_problem({"messages": []}).field == "messages"
    assert record_problem({"messages": ["hi"]}).field == "messages[0]"
    validate_record(GOOD)
    with pytest.raises(DataError, match=r"^<records>: messages: "):
        validate_record({"id": 1})


def test_problems_never_quote_conversation_text():
    secret = "我不想活了" * 10
    problem = record_problem(dialogue(("user", "u"), (secret, "a")))
    assert "我不想活了" * 2 not in str(problem)


def test_check_records_raises_at_first_problem_without_skip():
    records = [
        SourcedRecord(GOOD, "f.jsonl", 1),
        SourcedRecord(dialogue(("user", "u")), "f.jsonl", 2),
    ]
    with pytest.raises(DataError, match=r"^f.jsonl:2: messages\[0\].role: the dialogue must end"):
        check_records(records)


def test_skip_invalid_counts_by_reason_and_drops_duplicates():
    records = [
        GOOD,
        dialogue(("user", ""), ("assistant", "a")),
        dict(GOOD, id="copy"),  # same messages, other metadata: still a duplicate
        dialogue(("user", "u"), ("user", "v")),
        dialogue(("user", "x"), ("assistant", "")),
        dialogue(("user", "u2"), ("assistant", "a2")),
    ]
    kept, report = check_records(records, skip_invalid=True)
    assert [r["messages"][0]["content"] for r in kept] == ["s", "u2"]
    assert report.duplicates == 1
    assert report.skipped == {EMPTY_CONTENT: 2, NOT_ALTERNATING: 1}
    assert (report.read, report.kept) == (6, 2)
    assert report.problems[0].file == "<record 2>"
    assert "duplicates dropped 1" in report.summary()


def test_kept_records_are_canonical_and_keep_metadata_and_location():
    raw = {
        "id": "a",
        "messages": [
            {"role": "user", "content": "u", "annotation": []},
            {"role": "assistant", "content": "a", "name": "x"},
        ],
    }
    [kept], _ = check_records([SourcedRecord(raw, "f.json", 4)])
    assert kept == {
        "id": "a",
        "messages": [{"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}],
    }
    assert (kept.file, kept.line) == ("f.json", 4)
    assert "annotation" in raw["messages"][0]  # the input is not modified


def test_repair_merges_repeats_and_drops_a_last_user_turn():
    messages = dialogue(
        ("system", "s"),
        ("user", "a"),
        ("user", "b"),
        ("assistant", "c"),
        ("assistant", "d"),
        ("user", "e"),
    )["messages"]
    repaired, repairs = repair_messages(messages)
    assert (
        repaired == dialogue(("system", "s"), ("user", "a\nb"), ("assistant", "c\nd"))["messages"]
    )
    assert repairs == [MERGED_TURNS, MERGED_TURNS, DROPPED_LAST_USER]
    assert messages[1]["content"] == "a"  # not modified in place


def test_repair_leaves_malformed_messages_for_the_checks():
    messages = [{"role": "user", "content": None}, {"role": "user", "content": "b"}]
    assert repair_messages(messages) == (messages, [])
    kept, report = check_records([{"messages": messages}], skip_invalid=True, repair=True)
    assert kept == [] and report.skipped == {NOT_TEXT: 1}
