"""Time to first visible text: from a chat call to the first words the care layer releases.

    .venv/bin/python -m bench.first_visible                          # this checkout
    .venv/bin/python -m bench.first_visible --compare ../before      # another checkout, alternated

What a person sees first is not the model's first token: the reply check holds text back
until it has been checked (whole sentences before, clauses now). For each conversation, the
Engine answers greedily (`Engine.from_pretrained(model).stream(...)`, the only API this script
uses, so an older checkout runs it too); the time to the first non-empty chunk and to the
model's end are recorded. With `--compare DIR` each round runs this checkout and DIR's code in
turn, each in a fresh process (`PYTHONPATH=DIR`). Writes bench/results/first_visible.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
CONVERSATIONS = [
    "I have been feeling really stressed about work lately.",
    "My exams are next week and I cannot sleep.",
    "我最近压力很大，晚上总是睡不着。",
    "和男朋友分手以后，我每天都很难过。",
]


def measure(model: str, new_tokens: int) -> list[dict]:
    """In this process: each conversation answered once (after one warm-up)."""
    from anxin.engine import Engine

    engine = Engine.from_pretrained(model)
    settings = dict(temperature=0, max_new_tokens=new_tokens, repetition_penalty=1.0)
    list(engine.stream([{"role": "user", "content": "hello"}], max_new_tokens=4))  # warm-up
    rows = []
    for text in CONVERSATIONS:
        started, first = time.perf_counter(), None
        for chunk in engine.stream([{"role": "user", "content": text}], **settings):
            if chunk.delta and first is None:
                first = time.perf_counter() - started
        rows.append(
            {
                "message": text[:12],
                "first_visible_s": first,
                "total_s": time.perf_counter() - started,
            }
        )
    return rows


def run_child(code_dir: Path, model: str, new_tokens: int) -> list[dict]:
    env = {**os.environ, "PYTHONPATH": str(code_dir), "HF_HUB_OFFLINE": "1"}
    # Run as a script, not with -m from this checkout: `anxin` must come from PYTHONPATH.
    command = [sys.executable, str(Path(__file__).resolve()), "--child", "--model", model]
    command += ["--new-tokens", str(new_tokens)]
    out = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--compare", type=Path, help="another checkout's root, run alternately")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.model, args.new_tokens)))
        return 0
    from anxin.atomic import write_json, write_text
    from anxin.machine import machine_facts

    checkouts = {"this": ROOT} | ({"compare": args.compare.resolve()} if args.compare else {})
    runs: dict[str, list[dict]] = {name: [] for name in checkouts}
    for round_ in range(args.rounds):
        for name, path in checkouts.items():
            rows = run_child(path, args.model, args.new_tokens)
            runs[name] += rows
            print(f"round {round_ + 1} {name}: {rows}", file=sys.stderr)
    summary = {
        name: {
            "first_visible_s_median": round(
                statistics.median(r["first_visible_s"] for r in rows if r["first_visible_s"]), 3
            ),
            "total_s_median": round(statistics.median(r["total_s"] for r in rows), 3),
        }
        for name, rows in runs.items()
    }
    facts = machine_facts()
    write_json(RESULTS / "first_visible.json", {"machine": facts, "summary": summary, "runs": runs})
    lines = [
        f"# Time to first visible text ({args.model}, greedy, {args.new_tokens} tokens, "
        f"{len(CONVERSATIONS)} conversations × {args.rounds} rounds)",
        "",
        f"{facts['cpu']} ({' '.join(facts['cpu_flags'])}), torch {facts['torch']}.",
        "",
        "| code | first visible s (median) | whole reply s (median) |",
        "|---|---:|---:|",
    ]
    for name, cell in summary.items():
        where = checkouts[name]
        lines.append(
            f"| {name} ({where.name}) | {cell['first_visible_s_median']} | {cell['total_s_median']} |"
        )
    write_text(RESULTS / "first_visible.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
