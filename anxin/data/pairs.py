"""`anxin data pairs`: preference pairs from SFT dialogues, for stage dpo.

For each counsellor reply of each dialogue (or a seeded sample of them), the chosen answer is
the counsellor's reply and the rejected answer is what a model says to the same history,
generated in batches through the Engine (template, persona, history window, care layer). The
model should be the one DPO will train, or the base it was tuned from, so that the pairs show
it where it falls short of the counsellors.

Left out, and counted: turns the care layer answered instead of the model (its fixed crisis
reply is not a rejected answer), empty replies, and with the filters
- `--rubric`: pairs whose chosen reply breaks the counsellor rubric (anxin.data.rubric), which
  is no example to prefer;
- `--max-similarity`: pairs whose two answers are near-identical (character similarity at or
  above the threshold), which teach nothing.

The output is LLaMA-Factory's sharegpt ranking layout with OpenAI-style messages, as
data/anxin_pairs.jsonl; `--register DIR` adds it to DIR/dataset_info.json with "ranking": true.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from anxin.atomic import write_jsonl

CARE_LAYER_ANSWERED = "the care layer answered instead of the model"
EMPTY_REPLY = "the model's reply was empty"
CHOSEN_BREAKS_RUBRIC = "the counsellor's reply breaks the rubric"
NEAR_IDENTICAL = "the two answers are near-identical"


@dataclass
class PairsReport:
    """How many pairs were made from how many turns, and why the others were left out."""

    turns: int = 0
    pairs: int = 0
    left_out: Counter = field(default_factory=Counter)

    def summary(self) -> str:
        lines = [f"{self.pairs} pairs from {self.turns} counsellor replies"]
        lines += [f"  left out ({why}): {n}" for why, n in sorted(self.left_out.items())]
        return "\n".join(lines)


def similarity(a: str, b: str) -> float:
    """Character-level similarity in [0, 1] (difflib's ratio; 1 for identical texts)."""
    return difflib.SequenceMatcher(None, a.strip(), b.strip(), autojunk=False).ratio()


def pair_record(record: dict, turn, reply_text: str, model_name: str) -> dict:
    return {
        "id": f"{record.get('id', f'dialogue-{turn.dialogue + 1}')}-r{turn.position}",
        "source": record.get("source"),
        "rejected_by": model_name,
        "messages": turn.context,
        "chosen": {"role": "assistant", "content": turn.reference},
        "rejected": {"role": "assistant", "content": reply_text},
    }


def why_left_out(turn, reply, rubric: bool, max_similarity: float | None) -> str | None:
    """The reason to leave this turn's pair out, or None to keep it."""
    from anxin.data.rubric import record_language, turn_problems

    if reply.safety is not None and reply.safety.action in ("crisis_response", "reply_replaced"):
        return CARE_LAYER_ANSWERED
    if not reply.text.strip():
        return EMPTY_REPLY
    if rubric:
        language = record_language({"messages": [*turn.context, {"content": turn.reference}]})
        if turn_problems(turn.reference, language):
            return CHOSEN_BREAKS_RUBRIC
    if max_similarity is not None and similarity(turn.reference, reply.text) >= max_similarity:
        return NEAR_IDENTICAL
    return None


def make_pairs(
    records: list[dict],
    engine,
    *,
    model_name: str,
    max_pairs: int | None = None,
    batch_size: int = 8,
    settings: dict | None = None,
    rubric: bool = False,
    max_similarity: float | None = None,
    seed: int = 42,
) -> tuple[list[dict], PairsReport]:
    """Pairs (chosen: the counsellor; rejected: the engine's reply) and what was left out."""
    from anxin.evaluate.measure import generate_replies, pick_turns

    turns = pick_turns(records, max_pairs, seed)
    replies = generate_replies(engine, turns, batch_size, settings or {}, label="pairs")
    report, pairs = PairsReport(turns=len(turns)), []
    for turn, reply in zip(turns, replies, strict=True):
        reason = why_left_out(turn, reply, rubric, max_similarity)
        if reason is not None:
            report.left_out[reason] += 1
            continue
        pairs.append(pair_record(records[turn.dialogue], turn, reply.text, model_name))
    report.pairs = len(pairs)
    return pairs, report


def ranking_entry(file_name: str) -> dict:
    """The dataset_info.json entry of a pairs file (the layout of data/anxin_pairs.jsonl)."""
    from anxin.data.registry import CANONICAL_ENTRY_TEMPLATE

    return {
        "file_name": file_name,
        "formatting": "sharegpt",
        "ranking": True,
        "columns": {"messages": "messages", "chosen": "chosen", "rejected": "rejected"},
        "tags": dict(CANONICAL_ENTRY_TEMPLATE["tags"]),
    }


# --- the sub-command --------------------------------------------------------------------------


def _relative(output: str, dataset_dir: str) -> str:
    """`output` relative to the dataset folder when it lies inside, else absolute (as convert)."""
    output_path, folder = Path(output).resolve(), Path(dataset_dir).resolve()
    if output_path.is_relative_to(folder):
        return output_path.relative_to(folder).as_posix()
    return str(output_path)


def add_pairs_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="SFT dialogues, any format `anxin data` reads")
    parser.add_argument("-o", "--output", required=True, help="pairs JSONL to write")
    parser.add_argument("--format", default="auto", help="the source's format (default: auto)")
    parser.add_argument("--model", default=None, help="model whose replies are rejected")
    parser.add_argument("--adapter", default=None, help="LoRA adapter to apply to --model")
    parser.add_argument("--template", default=None, help="chat template (default: the model's)")
    parser.add_argument(
        "--max-pairs", type=int, default=None, help="sample this many replies (default: all)"
    )
    parser.add_argument("--batch-size", type=int, default=8, help="replies generated at once")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="longest reply")
    parser.add_argument("--temperature", type=float, default=0.7, help="0 means greedy")
    parser.add_argument("--cutoff-len", type=int, default=1024, help="history window in tokens")
    parser.add_argument("--seed", type=int, default=42, help="sampling of turns and replies")
    parser.add_argument(
        "--rubric", action="store_true", help="leave out pairs whose chosen reply breaks the rubric"
    )
    parser.add_argument(
        "--max-similarity", type=float, default=0.9,
        help="leave out pairs whose answers are at least this similar, 0..1 (default 0.9; "
        "1.01 keeps all)",
    )  # fmt: skip
    parser.add_argument("--register", metavar="DIR", help="add the file to DIR/dataset_info.json")
    parser.add_argument("--name", help="dataset name for --register (default: file stem)")


def run_pairs(args: argparse.Namespace) -> int:
    from anxin.data.readers import REPAIR_BY_DEFAULT, detect_format, read_records
    from anxin.data.record import check_records
    from anxin.data.registry import register_dataset
    from anxin.engine import Engine

    # Invalid dialogues stop the command (FILE:LINE: field: problem) before any model loads.
    fmt = detect_format(args.source) if args.format == "auto" else args.format
    stream = read_records(args.source, fmt)
    records, _ = check_records(stream, repair=fmt in REPAIR_BY_DEFAULT)
    engine = Engine.from_pretrained(args.model, args.adapter, template=args.template)
    settings = {
        "max_new_tokens": args.max_new_tokens,
        "temperature": args.temperature,
        "seed": args.seed,
        "context_length": args.cutoff_len,
    }
    pairs, report = make_pairs(
        records,
        engine,
        model_name=args.model or "smollm2",
        max_pairs=args.max_pairs,
        batch_size=args.batch_size,
        settings=settings,
        rubric=args.rubric,
        max_similarity=args.max_similarity,
        seed=args.seed,
    )
    write_jsonl(args.output, pairs, private=True)  # conversations: the owner's only, as convert
    print(report.summary(), file=sys.stderr)
    if args.register:
        name = args.name or Path(args.output).stem
        register_dataset(args.register, name, ranking_entry(_relative(args.output, args.register)))
        print(f"registered {name} in {args.register}/dataset_info.json", file=sys.stderr)
    print(args.output)
    return 0 if pairs else 1
