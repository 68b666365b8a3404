"""The reader audit: readers' guideline labels beside PsySUICIDE's, named by position."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from anxin.safety import label_audit
from anxin.safety.sets import LabelledSetError, read_examples

DATA = Path(__file__).resolve().parents[1] / "data" / "psysuicide"

# Two items share idx 7, as in PsySUICIDE itself: only the position tells them apart.
ITEMS = [
    {"idx": 7, "text": "我不想活了", "labels": ["主动自杀意图"]},
    {"idx": 7, "text": "今天天气不错", "labels": ["与自杀/自伤/攻击行为无关"]},
    {"idx": 9, "text": "朋友说她想自杀", "labels": ["关于自杀的探索"]},
    {"idx": 11, "text": "你全家死光了吧", "labels": ["用户攻击行为"]},
]


def write(tmp_path: Path, labels: list[dict]) -> tuple[Path, Path]:
    benchmark = tmp_path / "valid.json"
    benchmark.write_text(json.dumps(ITEMS, ensure_ascii=False), encoding="utf-8")
    audit = tmp_path / "audit.jsonl"
    audit.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in labels), "utf-8")
    return benchmark, audit


def label(position, idx, labeller, level, category="other", reason="r"):
    return dict(
        position=position, idx=idx, labeller=labeller, level=level, category=category, reason=reason
    )


READERS = [
    label(1, 7, "A", "crisis"),
    label(2, 7, "A", "none"),
    label(3, 9, "A", "concern"),
    label(4, 11, "A", "none"),
    label(1, 7, "B", "crisis"),
    label(2, 7, "B", "crisis"),
    label(3, 9, "B", "concern"),
    label(4, 11, "B", "none"),
]


def test_each_reader_is_compared_with_the_benchmark_labels(tmp_path):
    benchmark, audit = write(tmp_path, READERS)
    examples = read_examples(benchmark)
    report = label_audit.compare(examples, label_audit.read_audit(audit, examples))
    a, b = report["readers"]["A"], report["readers"]["B"]
    assert report["items"] == 4
    assert a["risk"] == {"n": 3, "crisis": 0.333, "crisis_or_concern": 0.667}
    assert a["risk: 关于自杀的探索"] == {"n": 1, "crisis": 0.0, "crisis_or_concern": 1.0}
    assert a["unrelated"]["crisis"] == 0.0 and b["unrelated"]["crisis"] == 1.0
    # levels agree on 3 of 4; crisis: A saw 1, B 2, both 1 -> 2 * 1 / 3
    assert report["agreement"]["A-B"] == {"n": 4, "level": 0.75, "crisis_specific": 0.667}


@pytest.mark.parametrize(
    "bad, field",
    [
        ({"idx": 9}, "idx"),  # item 1's idx is 7
        ({"position": 99}, "position"),
        ({"level": "high"}, "level"),
        ({"reason": ""}, "reason"),
        ({"labeler": "A"}, "labeler"),  # unknown field
    ],
)
def test_a_bad_line_names_the_file_line_and_field(tmp_path, bad, field):
    benchmark, audit = write(tmp_path, [READERS[0], {**READERS[1], **bad}])
    with pytest.raises(LabelledSetError, match=rf"audit\.jsonl:2: {field}:"):
        label_audit.read_audit(audit, read_examples(benchmark))


def test_an_item_read_twice_by_one_reader_is_refused(tmp_path):
    benchmark, audit = write(tmp_path, [READERS[0], READERS[0]])
    with pytest.raises(LabelledSetError, match="item 1 twice for labeller 'A'"):
        label_audit.read_audit(audit, read_examples(benchmark))


def test_the_command_prints_the_table_and_writes_json(tmp_path, capsys):
    benchmark, audit = write(tmp_path, READERS)
    out = tmp_path / "figures.json"
    assert label_audit.main([str(benchmark), str(audit), "--json", str(out)]) == 0
    assert "crisis (specific) 0.667 over 4 items" in capsys.readouterr().out
    assert json.loads(out.read_text())["readers"]["B"]["risk"]["n"] == 3


def test_the_shipped_audit_reads_only_the_development_part():
    examples = read_examples(DATA / "valid.json")
    labels = label_audit.read_audit(DATA / "reader_audit.jsonl", examples)
    development = {int(word) for word in (DATA / "dev_idx.txt").read_text().split()}
    by_position = {e.line: e for e in examples}
    assert {int(by_position[x.position].id) for x in labels} <= development
    assert {x.labeller for x in labels} == {"A", "B"}


def test_a_reader_of_more_items_is_compared_on_the_shared_ones(tmp_path, capsys):
    benchmark, audit = write(tmp_path, READERS[:2])  # A read items 1 and 2
    detector = tmp_path / "detector.jsonl"
    detector.write_text(
        "".join(json.dumps(label(p, i, "detector", "crisis")) + "\n" for p, i in ((1, 7), (3, 9))),
        encoding="utf-8",
    )
    assert label_audit.main([str(benchmark), str(audit), str(detector)]) == 0
    assert "1 items read by 2 reader(s)" in capsys.readouterr().out


def test_training_levels_need_cross_validation(capsys):
    from anxin.safety import training

    with pytest.raises(SystemExit):
        training.main(["--write", "--levels", "x.jsonl"])
    assert "--levels needs --cv" in capsys.readouterr().err
