"""The reader audit: readers' guideline labels beside PsySUICIDE's, named by position."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from anxin.safety import label_audit
from anxin.safety.sets import LabelledSetError, read_examples

DATA = Path(__file__).resolve().parents[1] / "data" / "psysuicide"
RESULTS = Path(__file__).resolve().parents[1] / "bench" / "results" / "care"

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
    report = label_audit.compare(examples, label_audit.read_audit([audit], examples))
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
        label_audit.read_audit([audit], read_examples(benchmark))


def test_an_item_read_twice_by_one_reader_is_refused(tmp_path):
    benchmark, audit = write(tmp_path, [READERS[0], READERS[0]])
    with pytest.raises(LabelledSetError, match="item 1 twice for labeller 'A'"):
        label_audit.read_audit([audit], read_examples(benchmark))


def test_the_command_prints_the_table_and_writes_json(tmp_path, capsys):
    benchmark, audit = write(tmp_path, READERS)
    out = tmp_path / "figures.json"
    assert label_audit.main([str(benchmark), str(audit), "--json", str(out)]) == 0
    assert "crisis (specific) 0.667 over 4 items" in capsys.readouterr().out
    assert json.loads(out.read_text())["readers"]["B"]["risk"]["n"] == 3


def test_the_shipped_audit_reads_only_the_development_part():
    examples = read_examples(DATA / "valid.json")
    labels = label_audit.read_audit([DATA / "reader_audit.jsonl"], examples)
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


def test_training_levels_need_cross_validation(monkeypatch, capsys):
    from anxin.safety import training

    def no_training():  # the guard must stop it before any sample is read
        raise AssertionError("read samples")

    monkeypatch.setattr(training, "training_samples", no_training)
    with pytest.raises(SystemExit):
        training.main(["--write", "--levels", "x.jsonl"])
    assert "--levels needs --cv" in capsys.readouterr().err


def test_a_label_twice_across_files_no_shared_item_and_blank_lines(tmp_path):
    benchmark, audit = write(tmp_path, READERS[:2])
    audit.write_text(audit.read_text() + "\n", encoding="utf-8")  # a blank last line is fine
    examples = read_examples(benchmark)
    assert len(label_audit.read_audit([audit], examples)) == 2
    with pytest.raises(LabelledSetError, match="item 1 twice for labeller 'A'"):
        label_audit.read_audit([audit, audit], examples)
    apart = [READERS[0], label(3, 9, "B", "none")]
    with pytest.raises(LabelledSetError, match="no item that every reader labelled"):
        label_audit.only_shared(label_audit.read_audit([write(tmp_path, apart)[1]], examples))


def test_crisis_agreement_is_undefined_when_no_reader_sees_one(tmp_path):
    calm = [label(2, 7, "A", "none"), label(2, 7, "B", "concern")]
    benchmark, audit = write(tmp_path, calm)
    examples = read_examples(benchmark)
    report = label_audit.compare(examples, label_audit.read_audit([audit], examples))
    assert report["agreement"]["A-B"] == {"n": 1, "level": 0.0, "crisis_specific": None}


def test_a_benchmark_that_is_not_psysuicide_is_refused(tmp_path, capsys):
    jsonl = tmp_path / "set.jsonl"
    jsonl.write_text('{"text": "x", "label": "crisis", "category": "self_harm"}\n', "utf-8")
    _, audit = write(tmp_path, READERS)
    assert label_audit.main([str(jsonl), str(audit)]) == 2
    assert "not PsySUICIDE JSON" in capsys.readouterr().err


def test_the_shipped_figures_are_the_shipped_labels():
    examples = read_examples(DATA / "valid.json")
    labels = label_audit.read_audit([DATA / "reader_audit.jsonl"], examples)
    report = label_audit.compare(examples, labels)
    shipped = json.loads((RESULTS / "psysuicide_reader_audit.json").read_text(encoding="utf-8"))
    assert {name: shipped["readers"][name] for name in ("A", "B")} == report["readers"]
    assert shipped["agreement"]["A-B"] == report["agreement"]["A-B"]


def test_the_detector_levels_pass_the_audit_checks(tmp_path, monkeypatch):
    from anxin.safety import training

    benchmark, _ = write(tmp_path, [])
    (tmp_path / "dev_idx.txt").write_text("7\n7\n11\n", encoding="utf-8")
    monkeypatch.setattr(training, "PSYSUICIDE", benchmark)
    dev = read_examples(benchmark, "dev")
    samples = [training.Sample(training.evidence_of(e), 0, "psysuicide", "g") for e in dev]
    records = training.psysuicide_levels(samples, np.array([0.9, 0.01, 0.95]))
    assert [(r["position"], r["idx"], r["level"]) for r in records] == [
        (1, 7, "crisis"),
        (2, 7, "none"),
        (4, 11, "crisis"),
    ]
    audit = tmp_path / "detector.jsonl"
    audit.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    assert len(label_audit.read_audit([audit], read_examples(benchmark))) == 3
    with pytest.raises(ValueError, match="not the sample read in its place"):
        training.psysuicide_levels(samples[::-1], np.zeros(3))
