"""The dialogues a side-by-side benchmark gives both tools: the same slice, fitted whole.

SMILECHAT (../shared/data/smilechat) converted by `anxin data convert` when present, else the
bundled data/anxin_sample.jsonl. Each dialogue gets anxin's persona as its system message and
keeps the longest run of whole opening exchanges that renders within cutoff_len, so neither
tool truncates anything; tokens are counted once, with anxin's renderer, for both.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from anxin.atomic import write_json

ROOT = Path(__file__).resolve().parent.parent
SMILECHAT = ROOT.parent / "shared" / "data" / "smilechat"
SAMPLE = ROOT / "data" / "anxin_sample.jsonl"


@dataclass
class Slice:
    """The dialogues both tools train and evaluate on, and their token counts (anxin's renderer)."""

    source: str
    train: list[dict]
    validation: list[dict]
    tokens: int = 0  # every token of the training dialogues
    assistant_tokens: int = 0  # tokens with a label (assistant answers and their end-of-turn)
    lengths: list[int] = field(default_factory=list)  # per training dialogue, for FLOP counts


def read_source(work: Path) -> tuple[str, list[dict]]:
    """SmileChat converted with `anxin data convert` when present, else the bundled sample."""
    if SMILECHAT.is_dir():
        folder = SMILECHAT / "data" if (SMILECHAT / "data").is_dir() else SMILECHAT
        converted = work / "smilechat.jsonl"
        convert = [sys.executable, "-m", "anxin", "data", "convert", "--format", "smilechat"]
        subprocess.run(
            [*convert, str(folder), "-o", str(converted)], check=True, capture_output=True
        )
        source = str(folder)
    elif SAMPLE.is_file():
        converted, source = SAMPLE, str(SAMPLE)
    else:
        raise SystemExit(f"no data: neither {SMILECHAT} nor {SAMPLE} exists")
    with open(converted, encoding="utf-8") as lines:
        return source, [json.loads(line) for line in lines if line.strip()]


def fit_exchanges(tokenizer, messages: list[dict], cutoff_len: int):
    """The persona plus the longest run of whole opening exchanges within cutoff_len, rendered.

    Returns (messages, rendered) or None when not even the first exchange fits.
    """
    from anxin.template import render_conversation, with_system

    messages = with_system(messages)
    system, turns = messages[:1], messages[1:]
    best = None
    for end in range(2, len(turns) + 1, 2):
        candidate = system + turns[:end]
        rendered = render_conversation(tokenizer, candidate)
        if len(rendered.input_ids) > cutoff_len:
            break
        best = (candidate, rendered)
    return best


def make_slice(model_dir: str, work: Path, n_train: int, n_eval: int, cutoff_len: int) -> Slice:
    """The first n_train + n_eval dialogues (in corpus order) that fit, as described above."""
    from transformers import AutoTokenizer

    from anxin.template import IGNORE_INDEX

    source, records = read_source(work)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    chosen: list[tuple[list[dict], object]] = []
    for record in records:
        fitted = fit_exchanges(tokenizer, record["messages"], cutoff_len)
        if fitted and fitted[0][-1]["role"] == "assistant":
            chosen.append(fitted)
        if len(chosen) == n_train + n_eval:
            break
    if len(chosen) < n_train + n_eval:
        raise SystemExit(f"{source}: only {len(chosen)} dialogues fit cutoff_len {cutoff_len}")
    train = chosen[:n_train]
    return Slice(
        source=source,
        train=[{"messages": m} for m, _ in train],
        validation=[{"messages": m} for m, _ in chosen[n_train:]],
        tokens=sum(len(r.input_ids) for _, r in train),
        assistant_tokens=sum(sum(x != IGNORE_INDEX for x in r.labels) for _, r in train),
        lengths=[len(r.input_ids) for _, r in train],
    )


def register_slice(data: Slice, dataset_dir: Path) -> None:
    """Write both files and a dataset_info.json that LLaMA-Factory and anxin both read."""
    from anxin.atomic import write_jsonl
    from anxin.data.registry import canonical_entry

    dataset_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl(dataset_dir / "bench_train.jsonl", data.train)
    write_jsonl(dataset_dir / "bench_eval.jsonl", data.validation)
    info = {
        "bench_train": canonical_entry("bench_train.jsonl"),
        "bench_eval": canonical_entry("bench_eval.jsonl"),
    }
    write_json(dataset_dir / "dataset_info.json", info)
