"""The real-text safety corpus: sample SMILECHAT client messages, split them, assemble labels.

    python -m anxin.safety.corpus sample ../shared/data/smilechat/data --out work/labelling
    python -m anxin.safety.corpus assemble work/labelling --out data/safety_real

`sample` draws client messages in three strata (docs/safety-labels.md): every message with risk
vocabulary, a random share of the messages after one in the same dialogue (risk visible only
from context), and a random share of messages from the other dialogues. Whole dialogues are
then split into a development part and a frozen held-out part by a hash of their id, before
anything is labelled, and the labelling batches are written: dialogues shown in full up to the
last sampled message, sampled messages marked, no part names and no detector output.

`sample-scored` draws a later round from the development dialogues only (the held-out ones
stay frozen): the client messages no round has labelled yet that the shipped learned stage
scores highest, where the crises it is unsure of and the hard negatives are, and a random share
of the rest. It is written to a work folder like `sample`. `--round N` seeds the random share
(round 2 was the first of these; round 3 was drawn by the weights trained with round 2).

`sample-topic` draws a later round from the development dialogues on one topic: every
client message no round has labelled yet, from the first client turn with the topic's words on
(`TOPICS`). Round 4 was `--topic abuse`: the detector misses abuse most, mostly in later turns
that no longer name it.

`assemble` joins the labellers' answers to the sampled messages, settles the doubly labelled
ones (the adjudication file wins), reports agreement, and writes one JSONL per part in the
format `anxin safety eval` reads (`--prefix smilechat_scored` for round 2,
`smilechat_scored3` for round 3).

    python -m anxin.safety.corpus sample-scored ../shared/data/smilechat/data \
        --labelled data/safety_real --out work/round2 --round 2
    python -m anxin.safety.corpus assemble work/round2 --out data/safety_real \
        --prefix smilechat_scored --labeller "..."
    python -m anxin.safety.corpus sample-topic ../shared/data/smilechat/data \
        --labelled data/safety_real --out work/round4 --topic abuse
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from anxin.atomic import write_json, write_text

SEED = 20261205
SPLIT_SALT = "anxin-safety-split-v1"
HELDOUT_SHARE = 0.36  # of dialogues; gives a held-out part of well over 1,000 messages
AFTER_RISK_SAMPLE = 700  # messages after a risk message, risk visible only from context
OTHER_SAMPLE = 1500  # messages from dialogues without risk vocabulary
OTHER_PER_DIALOGUE = 2  # read a dialogue once, label two of its messages
DOUBLE_LABEL_SHARE = 1 / 12  # labelled twice, independently, to measure agreement
BATCHES = 8
SCORED_TOP = 750  # rounds 2 and 3: the unlabelled dev messages the learned stage scores highest
SCORED_RANDOM = 150  # and a random share of the rest, so the round is not only hard cases
SCORED_BATCHES = 6
TOPIC_BATCHES = 4

# The risk vocabulary of docs/safety-labels.md, step 1 of the corpus.
RISK_VOCABULARY = re.compile(
    r"死|自杀|轻生|自尽|寻短见|活着|活下去|活不下去|不想活|解脱|药|跳|割|消失|结束|了结|了断"
    r"|自残|自伤|伤害|离开这个世界|遗书|天台|楼顶|刀|杀|打我|家暴"
)
# A later round's topics: words that open a stretch of a dialogue worth labelling whole.
# abuse: violence, sexual abuse, threats, stalking or confinement by someone else (暴力 also
# opens dialogues about 冷暴力 or 非暴力沟通; round 4's labellers read those as ordinary).
TOPICS = {
    "abuse": re.compile(
        r"打我|揍我|家暴|家庭暴力|暴力|虐待|性侵|猥亵|强奸|性骚扰|骚扰我|威胁|跟踪|动手|殴打|掐"
        r"|扇我|踢我|施暴|被打|挨打|打骂|打了我"
    ),
}
ROLES = {"client": "user", "counselor": "assistant"}
LEVELS = ("none", "concern", "crisis")


# --- sampling -------------------------------------------------------------------------------


def read_dialogues(folder: Path) -> dict[str, list[dict]]:
    """SMILECHAT `<n>.json` files as {dialogue id: [{role, content}]} in user/assistant roles."""
    dialogues = {}
    for file in sorted(folder.glob("*.json"), key=lambda p: int(p.stem)):
        turns = json.loads(file.read_text(encoding="utf-8"))
        dialogues[file.stem] = [
            {"role": ROLES[turn["role"]], "content": turn["content"].strip()} for turn in turns
        ]
    return dialogues


def heldout(dialogue: str) -> bool:
    digest = hashlib.sha256(f"{SPLIT_SALT}:{dialogue}".encode()).hexdigest()
    return int(digest[:8], 16) / 0xFFFFFFFF < HELDOUT_SHARE


def sample_messages(dialogues: dict[str, list[dict]], seed: int = SEED) -> list[dict]:
    """The sampled client messages, each with its stratum and part (see module doc)."""
    rng = random.Random(seed)
    risk, after_risk, others = [], [], []
    for dialogue, turns in dialogues.items():
        users = [i for i, turn in enumerate(turns) if turn["role"] == "user"]
        flagged = [i for i in users if RISK_VOCABULARY.search(turns[i]["content"])]
        risk += [(dialogue, i) for i in flagged]
        if flagged:
            after_risk += [(dialogue, i) for i in users if i > flagged[0] and i not in flagged]
        else:
            others.append((dialogue, users))
    chosen = [(d, i, "risk_vocabulary") for d, i in risk]
    chosen += [(d, i, "after_risk") for d, i in rng.sample(after_risk, AFTER_RISK_SAMPLE)]
    rng.shuffle(others)
    picked = 0
    for dialogue, users in others:
        if picked >= OTHER_SAMPLE:
            break
        for i in sorted(rng.sample(users, min(OTHER_PER_DIALOGUE, len(users)))):
            chosen.append((dialogue, i, "other"))
            picked += 1
    return _samples(dialogues, chosen)


def _samples(dialogues: dict[str, list[dict]], chosen: list[tuple[str, int, str]]) -> list[dict]:
    return [
        {
            "id": message_id(dialogue, index),
            "dialogue": dialogue,
            "turn": index,
            "stratum": stratum,
            "part": "heldout" if heldout(dialogue) else "dev",
            "text": dialogues[dialogue][index]["content"],
            "context": dialogues[dialogue][:index],
        }
        for dialogue, index, stratum in sorted(chosen, key=lambda c: (int(c[0]), c[1]))
    ]


def message_id(dialogue: str, index: int) -> str:
    return f"smile-{dialogue}-t{index:02d}"


def scored_sample(
    dialogues: dict[str, list[dict]],
    labelled: set[str],
    score: Callable[[str, list[dict]], float],
    seed: int = SEED,
    round_number: int = 2,
) -> list[dict]:
    """A later round, development dialogues only: of the client messages not in `labelled`,
    the SCORED_TOP that `score` (P(crisis) given the earlier turns) ranks highest, and a random
    SCORED_RANDOM of the rest."""
    rng = random.Random(seed + round_number)
    pool = [
        (dialogue, i)
        for dialogue, turns in dialogues.items()
        if not heldout(dialogue)
        for i, turn in enumerate(turns)
        if turn["role"] == "user" and message_id(dialogue, i) not in labelled
    ]
    scores = {
        (d, i): score(dialogues[d][i]["content"], dialogues[d][:i])
        for d, i in tqdm(pool, desc="scoring", unit="msg", disable=len(pool) < 1000)
    }
    ranked = sorted(pool, key=lambda c: (-scores[c], int(c[0]), c[1]))
    rest = ranked[SCORED_TOP:]
    chosen = [(d, i, "scored_top") for d, i in ranked[:SCORED_TOP]]
    chosen += [(d, i, "scored_random") for d, i in rng.sample(rest, min(SCORED_RANDOM, len(rest)))]
    return _samples(dialogues, chosen)


def topic_sample(
    dialogues: dict[str, list[dict]], labelled: set[str], vocabulary: re.Pattern
) -> list[dict]:
    """Every unlabelled client message of the development dialogues from the first client turn
    that holds `vocabulary` on: the turns that name the topic and the later ones that go on
    about it without naming it."""
    chosen = []
    for dialogue, turns in dialogues.items():
        if heldout(dialogue):
            continue
        users = [i for i, turn in enumerate(turns) if turn["role"] == "user"]
        named = [i for i in users if vocabulary.search(turns[i]["content"])]
        if not named:
            continue
        for i in users:
            if i >= named[0] and message_id(dialogue, i) not in labelled:
                chosen.append((dialogue, i, "topic_named" if i in named else "topic_after"))
    return _samples(dialogues, chosen)


def labelled_ids(folder: Path) -> set[str]:
    """The ids of every message already in the labelled files of `folder` (both parts)."""
    return {
        json.loads(line)["id"]
        for file in sorted(folder.glob("smilechat_*.jsonl"))
        for line in file.read_text(encoding="utf-8").splitlines()
        if line.strip()
    }


def labelling_batches(
    samples: list[dict], dialogues, seed: int = SEED, batches: int = BATCHES
) -> list[str]:
    """Text for each labeller: whole dialogues up to their last sampled message, marked.

    Dialogues are dealt to batches by size so each labeller reads about as much; about one
    dialogue in twelve also goes to a second batch, for agreement."""
    rng = random.Random(seed + 1)
    by_dialogue = defaultdict(list)
    for sample in samples:
        by_dialogue[sample["dialogue"]].append(sample)
    order = sorted(by_dialogue, key=lambda d: -len(render_dialogue(dialogues[d], by_dialogue[d])))
    sizes, texts = [0] * batches, [[] for _ in range(batches)]
    for dialogue in order:
        text = render_dialogue(dialogues[dialogue], by_dialogue[dialogue], dialogue)
        first = min(range(batches), key=sizes.__getitem__)
        targets = [first]
        if rng.random() < DOUBLE_LABEL_SHARE:
            targets.append(min((b for b in range(batches) if b != first), key=sizes.__getitem__))
        for batch in targets:
            texts[batch].append(text)
            sizes[batch] += len(text)
    return ["\n\n".join(rng.sample(batch, len(batch))) + "\n" for batch in texts]


def render_dialogue(turns: list[dict], samples: list[dict], dialogue: str = "") -> str:
    marked = {sample["turn"]: sample["id"] for sample in samples}
    lines = [f"=== dialogue {dialogue} ==="]
    for index, turn in enumerate(turns[: max(marked) + 1]):
        speaker = "CLIENT" if turn["role"] == "user" else "counsellor"
        label = f"  <<< LABEL {marked[index]}" if index in marked else ""
        lines.append(f"[{index:02d}] {speaker}: {turn['content']}{label}")
    return "\n".join(lines)


# --- assembling the labels ------------------------------------------------------------------


def read_labels(files: list[Path]) -> dict[str, list[dict]]:
    """{message id: [label, ...]} from the labellers' JSONL answers, checked line by line."""
    found = defaultdict(list)
    for file in files:
        for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            label = json.loads(line)
            if label.get("level") not in LEVELS or not label.get("id"):
                raise ValueError(f"{file}:{number}: level: must be one of {LEVELS}, with an id")
            found[label["id"]].append({**label, "file": file.name})
    return found


def cohen_kappa(pairs: list[tuple[str, str]]) -> float:
    if not pairs:
        return float("nan")
    observed = sum(a == b for a, b in pairs) / len(pairs)
    first, second = Counter(a for a, _ in pairs), Counter(b for _, b in pairs)
    expected = sum(first[k] * second[k] for k in LEVELS) / len(pairs) ** 2
    return (observed - expected) / (1 - expected) if expected < 1 else 1.0


def assemble(work: Path, out: Path, labeller: str, prefix: str = "smilechat") -> dict:
    samples = [json.loads(line) for line in (work / "samples.jsonl").open(encoding="utf-8")]
    labels = read_labels(sorted(work.glob("labels-*.jsonl")))
    settled = (
        read_labels([work / "adjudicated.jsonl"]) if (work / "adjudicated.jsonl").is_file() else {}
    )
    missing = [s["id"] for s in samples if s["id"] not in labels]
    if missing:
        raise ValueError(f"{len(missing)} sampled messages have no label, e.g. {missing[:3]}")
    doubles = [(labels[i][0]["level"], labels[i][1]["level"]) for i in labels if len(labels[i]) > 1]
    parts = defaultdict(list)
    for sample in samples:
        chosen = (settled.get(sample["id"]) or labels[sample["id"]])[0]
        parts[sample["part"]].append(
            {
                "id": sample["id"],
                "text": sample["text"],
                "context": sample["context"],
                "level": chosen["level"],
                "label": "crisis" if chosen["level"] == "crisis" else "non_crisis",
                "category": chosen.get("category", ""),
                "reason": chosen.get("reason", ""),
                "stratum": sample["stratum"],
                "labeller": labeller,
            }
        )
    report = {"agreement": {"doubly_labelled": len(doubles)}, "parts": {}}
    report["agreement"]["level_match"] = sum(a == b for a, b in doubles) / max(len(doubles), 1)
    report["agreement"]["cohen_kappa"] = cohen_kappa(doubles)
    for part, rows in parts.items():
        text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        write_text(out / f"{prefix}_{part}.jsonl", text)
        report["parts"][part] = {
            "messages": len(rows),
            "dialogues": len({row["id"].rsplit("-", 1)[0] for row in rows}),
            "levels": dict(Counter(row["level"] for row in rows)),
            "strata": dict(Counter(row["stratum"] for row in rows)),
            "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
        }
    write_json(
        out / ("corpus_report.json" if prefix == "smilechat" else f"{prefix}_report.json"), report
    )
    return report


def _later_round(value: str) -> int:
    if not value.isdigit() or int(value) < 2:
        raise argparse.ArgumentTypeError(f"{value!r}: a later round is 2 or more (1 was `sample`)")
    return int(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m anxin.safety.corpus", description=__doc__)
    verbs = parser.add_subparsers(dest="verb", required=True)
    # what every sampling verb reads and writes, and what a later round also reads
    source = argparse.ArgumentParser(add_help=False)
    source.add_argument("smilechat", type=Path, help="folder of SMILECHAT <n>.json files")
    source.add_argument("--out", type=Path, required=True, help="work folder for the batches")
    later = argparse.ArgumentParser(add_help=False)
    later.add_argument(
        "--labelled", type=Path, required=True, help="folder of the labelled smilechat_*.jsonl"
    )
    verbs.add_parser("sample", parents=[source], help="sample, split and write labelling batches")
    scored = verbs.add_parser(
        "sample-scored",
        parents=[source, later],
        help="a later round: unlabelled dev messages the learned stage ranks highest",
    )
    scored.add_argument(
        "--round",
        type=_later_round,
        required=True,
        help="which round, 2 or later (seeds the random share; round 1 was `sample`)",
    )
    topic = verbs.add_parser(
        "sample-topic",
        parents=[source, later],
        help="a later round: every unlabelled dev message from a topic's first client turn on",
    )
    topic.add_argument(
        "--topic", choices=sorted(TOPICS), required=True, help="whose words open the stretch"
    )
    join = verbs.add_parser("assemble", help="join labels into data files")
    join.add_argument("work", type=Path, help="the work folder of `sample`, with labels-*.jsonl")
    join.add_argument("--out", type=Path, required=True)
    join.add_argument("--labeller", required=True, help="who or what labelled, for the record")
    join.add_argument("--prefix", default="smilechat", help="file names: PREFIX_dev.jsonl, ...")
    args = parser.parse_args(argv)
    if args.verb == "assemble":
        print(json.dumps(assemble(args.work, args.out, args.labeller, args.prefix), indent=1))
        return 0
    dialogues = read_dialogues(args.smilechat)
    if args.verb == "sample":
        samples, batches = sample_messages(dialogues), BATCHES
    elif args.verb == "sample-topic":
        samples = topic_sample(dialogues, labelled_ids(args.labelled), TOPICS[args.topic])
        batches = TOPIC_BATCHES
    else:
        labelled = labelled_ids(args.labelled)
        from anxin.safety import care  # the shipped weights: only this verb needs them

        samples = scored_sample(dialogues, labelled, care.learned_probability, SEED, args.round)
        batches = SCORED_BATCHES
    lines = "".join(json.dumps(s, ensure_ascii=False) + "\n" for s in samples)
    write_text(args.out / "samples.jsonl", lines)
    for number, text in enumerate(labelling_batches(samples, dialogues, batches=batches), 1):
        write_text(args.out / f"batch-{number}.txt", text)
    counts = Counter((s["part"], s["stratum"]) for s in samples)
    print(json.dumps({f"{p}/{s}": n for (p, s), n in sorted(counts.items())}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
