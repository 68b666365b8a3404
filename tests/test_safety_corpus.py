"""The real-text safety corpus: the held-out part is frozen, and the sampling tool works."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

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
    # Rounds 2 to 4 come from development dialogues only, and no message is labelled twice.
    seen = set((REAL / "dev_ids.txt").read_text().split())
    rounds = {
        "smilechat_scored_dev.jsonl": {"scored_top", "scored_random"},
        "smilechat_scored3_dev.jsonl": {"scored_top", "scored_random"},
        "smilechat_abuse4_dev.jsonl": {"topic_named", "topic_after"},
    }
    for name, strata in rounds.items():
        later = read(name)
        assert not any(corpus.heldout(r["id"].split("-")[1]) for r in later)
        assert not {r["id"] for r in later} & seen
        assert {r["stratum"] for r in later} == strata
        seen |= {r["id"] for r in later}


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


def test_a_scored_round_takes_unlabelled_dev_messages_by_score(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus, "SCORED_TOP", 5)
    monkeypatch.setattr(corpus, "SCORED_RANDOM", 3)
    dialogues = corpus.read_dialogues(smilechat_folder(tmp_path))
    labelled = {corpus.message_id(d, 0) for d in dialogues}  # every opening turn: done already
    risky = "不想活"

    def score(text: str, context: list[dict]) -> float:
        return (0.9 if risky in text else 0.1) + len(context) / 100

    samples = corpus.scored_sample(dialogues, labelled, score)
    assert len(samples) == 8 and {s["part"] for s in samples} == {"dev"}
    assert not {s["id"] for s in samples} & labelled
    assert not any(corpus.heldout(s["dialogue"]) for s in samples)
    top = [s for s in samples if s["stratum"] == "scored_top"]
    assert len(top) == 5 and all(risky in s["text"] for s in top)
    # The top five are the risky messages latest in their dialogues (the most context).
    eligible = [
        (score(turns[i]["content"], turns[:i]), d, i)
        for d, turns in dialogues.items()
        if not corpus.heldout(d)
        for i, turn in enumerate(turns)
        if turn["role"] == "user" and corpus.message_id(d, i) not in labelled
    ]
    best = sorted(eligible, key=lambda e: (-e[0], int(e[1]), e[2]))[:5]
    assert {corpus.message_id(d, i) for _, d, i in best} == {s["id"] for s in top}
    assert sum(s["stratum"] == "scored_random" for s in samples) == 3
    # A later round ranks the same way; its round number seeds a different random share.
    later = corpus.scored_sample(dialogues, labelled, score, round_number=3)
    assert {s["id"] for s in later if s["stratum"] == "scored_top"} == {s["id"] for s in top}
    chance = [s["id"] for s in samples if s["stratum"] == "scored_random"]
    assert chance != [s["id"] for s in later if s["stratum"] == "scored_random"]
    # Labelled ids are read from the files of the corpus folder.
    folder = tmp_path / "labelled"
    folder.mkdir()
    (folder / "smilechat_dev.jsonl").write_text(json.dumps({"id": "smile-1-t00"}) + "\n")
    (folder / "smilechat_scored_dev.jsonl").write_text(json.dumps({"id": "smile-2-t02"}) + "\n")
    (folder / "smilechat_scored3_dev.jsonl").write_text(json.dumps({"id": "smile-2-t04"}) + "\n")
    assert corpus.labelled_ids(folder) == {"smile-1-t00", "smile-2-t02", "smile-2-t04"}


def test_a_topic_round_takes_every_unlabelled_dev_message_from_the_topic_on(tmp_path):
    folder = tmp_path / "smile"
    folder.mkdir()
    opening = ["最近工作很累", "他昨天又打我了", "谢谢你听我说"]  # the topic's words in turn 1
    for n in range(30):
        turns = []
        for i, line in enumerate(opening if n % 2 else ["考试没考好", "还好吧", "谢谢"]):
            turns.append({"role": "client", "content": f"{line}（{n}-{i}）"})
            turns.append({"role": "counselor", "content": "我在听，你愿意多说说吗？"})
        (folder / f"{n}.json").write_text(json.dumps(turns, ensure_ascii=False), encoding="utf-8")
    labelled = folder.parent / "labelled"
    labelled.mkdir()
    done = corpus.message_id("1", 4)  # dialogue 1's last client turn is labelled already
    (labelled / "smilechat_dev.jsonl").write_text(json.dumps({"id": done}) + "\n")
    work = tmp_path / "work"
    argv = ["sample-topic", str(folder), "--labelled", str(labelled), "--out", str(work)]
    assert corpus.main([*argv, "--topic", "abuse"]) == 0
    samples = [json.loads(line) for line in (work / "samples.jsonl").open()]
    dialogues = {d for d in map(str, range(1, 30, 2)) if not corpus.heldout(d)}
    expected = {corpus.message_id(d, i) for d in dialogues for i in (2, 4)} - {done}
    assert {s["id"] for s in samples} == expected  # not turn 0, before the topic; no held-out
    assert {s["stratum"] for s in samples if s["turn"] == 2} == {"topic_named"}
    assert {s["stratum"] for s in samples if s["turn"] == 4} == {"topic_after"}
    names = (f"batch-{n}.txt" for n in range(1, corpus.TOPIC_BATCHES + 1))
    batches = "".join((work / name).read_text() for name in names)
    assert all(f"<<< LABEL {s['id']}" in batches for s in samples)


@pytest.mark.parametrize("value", ["1", "0", "two"])
def test_a_later_round_is_numbered_two_or_more(tmp_path, value, capsys):
    with pytest.raises(SystemExit):
        corpus.main(["sample-scored", str(tmp_path), "--labelled", str(tmp_path), "--out",
                     str(tmp_path / "w"), "--round", value])  # fmt: skip
    assert "a later round is 2 or more" in capsys.readouterr().err


def test_assemble_writes_a_second_round_under_its_own_prefix(tmp_path):
    work, out = tmp_path / "work", tmp_path / "out"
    sample = {"id": "smile-3-t02", "dialogue": "3", "turn": 2, "stratum": "scored_top",
              "part": "dev", "text": "嗯", "context": []}  # fmt: skip
    (work).mkdir()
    (work / "samples.jsonl").write_text(json.dumps(sample, ensure_ascii=False) + "\n")
    answer = {"id": "smile-3-t02", "level": "concern", "category": "aftercare", "reason": "x"}
    (work / "labels-1.jsonl").write_text(json.dumps(answer) + "\n")
    corpus.assemble(work, out, "test", prefix="smilechat_scored")
    assert sorted(p.name for p in out.iterdir()) == [
        "smilechat_scored_dev.jsonl",
        "smilechat_scored_report.json",
    ]
    row = json.loads((out / "smilechat_scored_dev.jsonl").read_text())
    assert row["stratum"] == "scored_top" and row["level"] == "concern"
