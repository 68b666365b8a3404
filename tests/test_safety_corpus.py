"""The real-text safety corpus: the held-out part is frozen, and the sampling tool works."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from anxin.safety import corpus

REAL = Path(__file__).resolve().parents[1] / "data" / "safety_real"
HELDOUT_SHA256 = "28afba6dc99a7c97bd1098c50372eaabc16db324c916bc18a0ead3824979284a"


def read(name: str) -> list[dict]:
    return [json.loads(line) for line in (REAL / name).open(encoding="utf-8")]


def test_the_heldout_part_is_frozen():
    data = (REAL / "smilechat_heldout.jsonl").read_bytes()
    assert hashlib.sha256(data).hexdigest() == HELDOUT_SHA256
    assert HELDOUT_SHA256 in (REAL / "README.md").read_text(encoding="utf-8")


def test_parts_follow_the_split_made_before_labelling():
    for part in ("dev", "heldout"):
        rows = read(f"smilechat_{part}.jsonl")
        assert [r["id"] for r in rows] == (REAL / f"{part}_ids.txt").read_text().split()
        assert all(r["level"] in corpus.LEVELS for r in rows)
        assert all((r["label"] == "crisis") == (r["level"] == "crisis") for r in rows)
    dialogues = {part: {r["id"].rsplit("-", 1)[0] for r in read(f"smilechat_{part}.jsonl")}
                 for part in ("dev", "heldout")}  # fmt: skip
    assert not dialogues["dev"] & dialogues["heldout"]
    assert len(read("smilechat_heldout.jsonl")) >= 1000


def smilechat_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "smile"
    folder.mkdir()
    lines = ["我最近工作累死了", "我不想活了，真的撑不下去", "谢谢你", "考试没考好", "还好吧"]
    for n in range(40):
        turns = []
        for i in range(3):
            turns.append({"role": "client", "content": f"{lines[(n + i) % len(lines)]}（{n}-{i}）"})
            turns.append({"role": "counselor", "content": "我在听，你愿意多说说吗？"})
        (folder / f"{n}.json").write_text(json.dumps(turns, ensure_ascii=False), encoding="utf-8")
    return folder


def test_sample_split_batches_and_assemble(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus, "AFTER_RISK_SAMPLE", 10)
    monkeypatch.setattr(corpus, "OTHER_SAMPLE", 6)
    work, out = tmp_path / "work", tmp_path / "out"
    assert corpus.main(["sample", str(smilechat_folder(tmp_path)), "--out", str(work)]) == 0
    samples = [json.loads(line) for line in (work / "samples.jsonl").open()]
    strata = {s["stratum"] for s in samples}
    assert strata == {"risk_vocabulary", "after_risk", "other"}
    risky = [s for s in samples if corpus.RISK_VOCABULARY.search(s["text"])]
    assert all(s["stratum"] == "risk_vocabulary" for s in risky)
    # Each message is shown after every earlier turn of its dialogue, marked for the labeller.
    batches = "".join((work / f"batch-{n}.txt").read_text() for n in range(1, corpus.BATCHES + 1))
    assert all(f"<<< LABEL {s['id']}" in batches for s in samples)
    assert "heldout" not in batches and "dev" not in batches
    # Two labellers disagree once; the adjudication wins.
    answers = [
        {"id": s["id"], "level": "none", "category": "other", "reason": "x"} for s in samples
    ]
    (work / "labels-1.jsonl").write_text("".join(json.dumps(a) + "\n" for a in answers))
    second = [{**answers[0], "level": "crisis"}, answers[1]]
    (work / "labels-2.jsonl").write_text("".join(json.dumps(a) + "\n" for a in second))
    settled = {**answers[0], "level": "concern", "reason": "adjudicated"}
    (work / "adjudicated.jsonl").write_text(json.dumps(settled) + "\n")
    report = corpus.assemble(work, out, "test")
    assert report["agreement"] == {
        "doubly_labelled": 2,
        "level_match": 0.5,
        "cohen_kappa": report["agreement"]["cohen_kappa"],
    }
    rows = {r["id"]: r for part in ("dev", "heldout") if (out / f"smilechat_{part}.jsonl").exists()
            for r in map(json.loads, (out / f"smilechat_{part}.jsonl").open())}  # fmt: skip
    assert rows[answers[0]["id"]]["level"] == "concern" and len(rows) == len(samples)


def test_cohen_kappa_by_hand():
    # 4 pairs, 3 agree: po = 0.75; marginals (none 2, crisis 2) and (none 1, crisis 3) give
    # pe = (2*1 + 2*3) / 16 = 0.5, so kappa = (0.75 - 0.5) / 0.5 = 0.5.
    pairs = [("none", "none"), ("crisis", "crisis"), ("none", "crisis"), ("crisis", "none")]
    assert corpus.cohen_kappa(pairs[:2] + pairs[2:3] + [("crisis", "crisis")]) == 0.5
    assert corpus.cohen_kappa(pairs) == 0.0
