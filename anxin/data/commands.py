"""`anxin data`: convert corpora to canonical JSONL, check them, measure them, download them.

Each sub-command is a parser function and a run function in the SUBCOMMANDS table; the
library functions they call (readers, check_records, dialogue_stats...) work from Python too.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anxin.atomic import atomic_path, write_jsonl
from anxin.data.pairs import add_pairs_arguments, run_pairs
from anxin.data.readers import READERS, REPAIR_BY_DEFAULT, detect_format, read_records
from anxin.data.record import CheckReport, check_records, location
from anxin.data.registry import canonical_entry, register_dataset

FORMAT_CHOICES = ["auto", *READERS]
MAX_PROBLEMS_SHOWN = 20

EPILOG = """\
examples:
  anxin data convert --format smilechat smile/data -o data/smilechat.jsonl \\
      --register data --name smilechat
  anxin data check data/smilechat.jsonl --rubric
  anxin data stats data/smilechat.jsonl --model smollm2 --plot lengths.png
  anxin data pairs data/smilechat.jsonl -o data/pairs.jsonl --model smollm2 --rubric --register data
  anxin data download --help

formats: alpaca, sharegpt (LLaMA-Factory), messages (OpenAI, our canonical JSONL),
smilechat (folder of <n>.json), cpsycound (folder of case_<n>.txt), emollm (XTuner JSON)."""


# ---------------------------------------------------------------------------------------------
# Reading with checks, shared by the sub-commands


def read_checked(
    source: str | Path,
    fmt: str = "auto",
    *,
    skip_invalid: bool = False,
    repair: bool | None = None,
) -> tuple[list[dict], CheckReport, str]:
    """Read `source` and check every record; returns (records, report, format used).

    `repair` None repairs the corpora whose quirks are known (smilechat, cpsycound).
    """
    fmt = detect_format(source) if fmt == "auto" else fmt
    repair = fmt in REPAIR_BY_DEFAULT if repair is None else repair
    report = CheckReport(skip_invalid=skip_invalid)
    stream = read_records(source, fmt, on_error=report.add_problem)
    records, report = check_records(stream, skip_invalid=skip_invalid, repair=repair, report=report)
    return records, report, fmt


def print_problems(report: CheckReport, limit: int = MAX_PROBLEMS_SHOWN) -> None:
    for problem in report.problems[:limit]:
        print(problem, file=sys.stderr)
    if len(report.problems) > limit:
        print(f"... and {len(report.problems) - limit} more problems", file=sys.stderr)


def _add_source_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format",
        "-f",
        default="auto",
        choices=FORMAT_CHOICES,
        help="source format (default: auto, guessed from the layout and keys)",
    )
    parser.add_argument(
        "--repair",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="join one speaker's consecutive turns and drop a last unanswered user turn "
        "(default: on for smilechat and cpsycound, off otherwise)",
    )


# ---------------------------------------------------------------------------------------------
# convert


def add_convert_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="file or folder to read")
    parser.add_argument("-o", "--output", required=True, help="canonical JSONL file to write")
    _add_source_arguments(parser)
    parser.add_argument(
        "--skip-invalid",
        action="store_true",
        help="skip invalid records and count them by reason (default: stop at the first)",
    )
    parser.add_argument(
        "--register",
        metavar="DATASET_DIR",
        help="also add the output to DATASET_DIR/dataset_info.json",
    )
    parser.add_argument("--name", help="dataset name to register (default: the output's stem)")


def run_convert(args: argparse.Namespace) -> int:
    if args.name and not args.register:
        print("error: --name needs --register DATASET_DIR", file=sys.stderr)
        return 2
    records, report, fmt = read_checked(
        args.source, args.format, skip_invalid=args.skip_invalid, repair=args.repair
    )
    # Everything is read and checked before this point, so a bad input writes nothing.
    # Conversations are the most private text there is: the file is the owner's only (0600).
    written = write_jsonl(args.output, records, private=True)
    print_problems(report)
    print(f"format {fmt}: {report.summary()}")
    print(f"wrote {written} dialogues to {args.output}")
    if args.register:
        name = args.name or Path(args.output).stem
        entry = canonical_entry(_file_name_in(args.output, args.register))
        path = register_dataset(args.register, name, entry)
        print(f"registered {name!r} in {path}")
    return 0


def _file_name_in(output: str, dataset_dir: str) -> str:
    """`output` relative to the dataset folder when it lies inside, else absolute."""
    output_path, folder = Path(output).resolve(), Path(dataset_dir).resolve()
    if output_path.is_relative_to(folder):
        return output_path.relative_to(folder).as_posix()
    return str(output_path)


# ---------------------------------------------------------------------------------------------
# check


def add_check_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="file or folder to check")
    _add_source_arguments(parser)
    parser.add_argument(
        "--rubric",
        action="store_true",
        help="also apply the emotional-support rubric (anxin.data.rubric) to valid dialogues, "
        "or to both replies of each preference pair",
    )
    parser.add_argument(
        "--max-problems", type=int, default=MAX_PROBLEMS_SHOWN, help="problems to print at most"
    )


def run_check(args: argparse.Namespace) -> int:
    if is_pair_file(args.file):
        return run_pair_check(args)
    records, report, fmt = read_checked(
        args.file, args.format, skip_invalid=True, repair=args.repair
    )
    print_problems(report, args.max_problems)
    print(f"format {fmt}: {report.summary()}")
    warn_long_turns(records)
    failed = bool(report.problems)
    if args.rubric:
        from anxin.data.rubric import check_rubric  # written separately; imported on demand

        issues = check_rubric(records)
        for issue in issues[: args.max_problems]:
            print(issue, file=sys.stderr)
        print(f"rubric: {len(issues)} issues")
        failed = failed or bool(issues)
    print("FAILED" if failed else "OK")
    return 1 if failed else 0


# A turn this long is almost surely a mistake (a whole book pasted in, a broken export): training
# would cut it to cutoff_len tokens anyway. It is legal data, so it is a warning, not a failure.
LONG_TURN_CHARACTERS = 20_000


def warn_long_turns(records: list[dict], limit: int = LONG_TURN_CHARACTERS) -> int:
    """Warn about messages longer than `limit` characters, naming where the first one is."""
    long = [
        (record, i, len(message["content"]))
        for record in records
        for i, message in enumerate(record["messages"])
        if len(message["content"]) > limit
    ]
    if long:
        record, i, size = long[0]
        file, line = location(record)
        where = f"{file}:{line}: " if file else ""
        print(
            f"warning: {len(long)} messages longer than {limit:,} characters, e.g. "
            f"{where}messages[{i}] ({size:,} characters); training keeps cutoff_len tokens",
            file=sys.stderr,
        )
    return len(long)


def is_pair_file(path: str | Path) -> bool:
    """Whether `path` is a JSONL file of preference pairs (its first record has chosen/rejected)."""
    path = Path(path)
    if not path.is_file() or path.suffix != ".jsonl":
        return False
    with path.open(encoding="utf-8", errors="replace") as handle:  # the readers name bad bytes
        first = next((line for line in handle if line.strip()), "")
    try:
        record = json.loads(first)
    except json.JSONDecodeError:
        return False  # the format checks report it
    return isinstance(record, dict) and "chosen" in record and "rejected" in record


def run_pair_check(args: argparse.Namespace) -> int:
    """Preference pairs (history, chosen, rejected): their shape, and with --rubric each reply."""
    from anxin.data.rubric import check_pairs, read_jsonl  # written separately; imported on demand

    records, problems = read_jsonl(Path(args.file))
    report = check_pairs(records, rubric=args.rubric)
    problems += [f"{args.file}: {problem}" for problem in report.problems]
    for problem in problems[: args.max_problems]:
        print(problem, file=sys.stderr)
    if len(problems) > args.max_problems:
        print(f"... and {len(problems) - args.max_problems} more problems", file=sys.stderr)
    print(report.summary())
    print(f"pairs: {len(records)} read, {len(problems)} problems")
    print("FAILED" if problems else "OK")
    return 1 if problems else 0


# ---------------------------------------------------------------------------------------------
# stats


@dataclass
class Lengths:
    """Per-dialogue and per-message lengths, the raw material of stats and plots."""

    messages_per_dialogue: list[int] = field(default_factory=list)
    replies_per_dialogue: list[int] = field(default_factory=list)
    characters_per_dialogue: list[int] = field(default_factory=list)
    characters_by_role: dict[str, list[int]] = field(default_factory=dict)
    tokens_by_role: dict[str, list[int]] = field(default_factory=dict)
    tokens_per_dialogue: list[int] = field(default_factory=list)  # with the chat template


def measure(records: Sequence[dict], tokenizer: Any = None) -> Lengths:
    """Count characters (and tokens, given a tokenizer) per role and per dialogue."""
    lengths = Lengths()
    for record in records:
        messages = record["messages"]
        lengths.messages_per_dialogue.append(len(messages))
        lengths.replies_per_dialogue.append(sum(m["role"] == "assistant" for m in messages))
        lengths.characters_per_dialogue.append(sum(len(m["content"]) for m in messages))
        for message in messages:
            role = message["role"]
            lengths.characters_by_role.setdefault(role, []).append(len(message["content"]))
            if tokenizer is not None:
                count = len(tokenizer.encode(message["content"], add_special_tokens=False))
                lengths.tokens_by_role.setdefault(role, []).append(count)
        if tokenizer is not None and getattr(tokenizer, "chat_template", None):
            lengths.tokens_per_dialogue.append(_template_tokens(tokenizer, messages))
    return lengths


def _template_tokens(tokenizer: Any, messages: list[dict]) -> int:
    ids = tokenizer.apply_chat_template(messages, tokenize=True)
    if hasattr(ids, "keys"):  # transformers 5 returns a BatchEncoding by default
        ids = ids["input_ids"]
    return len(ids)


def summarize_values(values: Sequence[int]) -> dict[str, float]:
    if not values:
        return {"count": 0, "mean": 0.0, "median": 0.0, "max": 0}
    return {
        "count": len(values),
        "mean": round(statistics.fmean(values), 2),
        "median": statistics.median(values),
        "max": max(values),
    }


def dialogue_stats(records: Sequence[dict], tokenizer: Any = None) -> dict[str, Any]:
    """Dialogue, turn, character and token statistics, as a JSON-ready dict."""
    return summarize(measure(records, tokenizer))


def summarize(lengths: Lengths) -> dict[str, Any]:
    stats: dict[str, Any] = {
        "dialogues": len(lengths.messages_per_dialogue),
        "messages_per_dialogue": summarize_values(lengths.messages_per_dialogue),
        "replies_per_dialogue": summarize_values(lengths.replies_per_dialogue),
        "characters_per_dialogue": summarize_values(lengths.characters_per_dialogue),
        "characters_by_role": _by_role(lengths.characters_by_role),
    }
    if lengths.tokens_by_role:
        stats["tokens_by_role"] = _by_role(lengths.tokens_by_role)
    if lengths.tokens_per_dialogue:
        stats["tokens_per_dialogue"] = summarize_values(lengths.tokens_per_dialogue)
    return stats


def _by_role(values: dict[str, list[int]]) -> dict[str, dict]:
    order = {"system": 0, "user": 1, "assistant": 2}
    return {role: summarize_values(values[role]) for role in sorted(values, key=order.get)}


def format_stats(stats: dict[str, Any]) -> str:
    def line(label: str, s: dict) -> str:
        return f"{label:<28}{s['mean']:>10}{s['median']:>10}{s['max']:>10}"

    rows = [f"dialogues: {stats['dialogues']}", f"{'':<28}{'mean':>10}{'median':>10}{'max':>10}"]
    for key in (
        "messages_per_dialogue",
        "replies_per_dialogue",
        "characters_per_dialogue",
        "tokens_per_dialogue",
    ):
        if key in stats:
            rows.append(line(key.replace("_", " "), stats[key]))
    for key, unit in (("characters_by_role", "characters"), ("tokens_by_role", "tokens")):
        for role, s in stats.get(key, {}).items():
            rows.append(line(f"{unit} per {role} turn", s))
    return "\n".join(rows)


def plot_lengths(lengths: Lengths, target: str | os.PathLike) -> None:
    """Histograms of dialogue lengths (characters; tokens too when measured) as a PNG."""
    from matplotlib.figure import Figure  # Figure needs no pyplot or GUI backend

    panels = [("characters per dialogue", lengths.characters_per_dialogue)]
    if lengths.tokens_per_dialogue:
        panels.append(("tokens per dialogue (chat template)", lengths.tokens_per_dialogue))
    figure = Figure(figsize=(6 * len(panels), 4), layout="tight")
    for index, (title, values) in enumerate(panels, start=1):
        axes = figure.add_subplot(1, len(panels), index)
        axes.hist(values, bins=min(50, max(1, len(set(values)))))
        axes.set_title(title)
        axes.set_xlabel(title.split(" per ")[0])
        axes.set_ylabel("dialogues")
    with atomic_path(target, suffix=".png") as tmp:
        figure.savefig(tmp, format="png", dpi=100)


def add_stats_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="file or folder to measure")
    _add_source_arguments(parser)
    parser.add_argument("--model", metavar="M", help="count tokens with this model's tokenizer")
    parser.add_argument("--plot", metavar="OUT.png", help="write a histogram of dialogue lengths")
    parser.add_argument("--json", action="store_true", help="print the statistics as JSON")


def run_stats(args: argparse.Namespace) -> int:
    records, report, _ = read_checked(args.file, args.format, skip_invalid=True, repair=args.repair)
    if report.problems:
        print(
            f"note: {len(report.problems)} invalid records left out (see anxin data check)",
            file=sys.stderr,
        )
    tokenizer = None
    if args.model:
        from anxin.models import load_tokenizer  # heavy (transformers): only when asked

        tokenizer = load_tokenizer(args.model)
    lengths = measure(records, tokenizer)
    stats = summarize(lengths)
    print(json.dumps(stats, ensure_ascii=False, indent=2) if args.json else format_stats(stats))
    if args.plot:
        plot_lengths(lengths, args.plot)
        print(f"wrote {args.plot}")
    return 0


# ---------------------------------------------------------------------------------------------
# download (written in anxin/data/download.py)


def add_download_arguments(subparsers: argparse._SubParsersAction) -> None:
    try:
        from anxin.data import download
    except ModuleNotFoundError as error:
        if error.name != "anxin.data.download":
            raise
        subparsers.add_parser("download", help="download a public corpus (not installed)")
        return
    summary = (download.__doc__ or "download a public corpus").strip().splitlines()[0]
    parser = subparsers.add_parser(
        "download",
        help=summary,
        description=download.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    download.add_arguments(parser)


def run_download(args: argparse.Namespace) -> int:
    try:
        from anxin.data import download
    except ModuleNotFoundError as error:
        if error.name != "anxin.data.download":
            raise
        print("error: anxin.data.download is not available in this install", file=sys.stderr)
        return 1
    return download.main(args)


# ---------------------------------------------------------------------------------------------
# The `data` verb


Subcommand = tuple[str, Callable[[argparse.ArgumentParser], None], Callable[..., int]]

SUBCOMMANDS: dict[str, Subcommand] = {
    "convert": ("convert a corpus to canonical messages JSONL", add_convert_arguments, run_convert),
    "check": ("validate a dataset; exit code 1 on problems", add_check_arguments, run_check),
    "stats": ("dialogue, turn, character and token statistics", add_stats_arguments, run_stats),
    "pairs": ("preference pairs: counsellor vs model replies", add_pairs_arguments, run_pairs),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__.splitlines()[0]
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    subparsers = parser.add_subparsers(dest="data_command", metavar="COMMAND", required=True)
    for name, (summary, add, _) in SUBCOMMANDS.items():
        sub = subparsers.add_parser(
            name,
            help=summary,
            description=summary,
            epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        add(sub)
    add_download_arguments(subparsers)


def main(args: argparse.Namespace) -> int:
    """Bad input raises DataError (and unwritable output OutputError): `anxin.cli` prints it as
    one line with exit status 2. Status 1 means the data was read and has problems."""
    runners = {name: run for name, (_, _, run) in SUBCOMMANDS.items()} | {"download": run_download}
    return runners[args.data_command](args)
