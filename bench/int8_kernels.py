"""Weight-only int8 on the CPU: anxin's Int8Linear against torchao's Int8WeightOnlyConfig.

    .venv/bin/python -m bench.int8_kernels                     # smollm2, 64 tokens, 3 rounds
    python -m bench.int8_kernels --python /path/venv/python    # where torchao is installed

The same model (the embedded SmolLM2 HF folder) is decoded greedily in one process, the
configurations alternating within each round (A B C A B C ...), so load from other processes
hits all alike: the model's own dtype (bf16 on CPUs with native bf16, else float32), anxin's
`Int8Linear` (`anxin.backends.int8`: `torch._weight_int8pack_mm` for decode rows), and torchao's
`quantize_(model, Int8WeightOnlyConfig())` when torchao imports. Reports decode tokens/s
(median per configuration), the ratio to the model's own dtype, and the machine's CPU flags:
int8 kernels differ by instruction set, so compare only within one report.
Writes bench/results/int8_kernels.{json,md}.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

from anxin.atomic import write_json, write_text
from anxin.machine import machine_facts

RESULTS = Path(__file__).resolve().parent / "results"
PROMPT = [
    {"role": "system", "content": "You are a kind listener."},
    {"role": "user", "content": "I have been feeling really stressed about work lately."},
]


def configurations(model):
    """name -> a model ready to decode (each a deep copy of `model`), or a reason it is skipped."""
    import torch

    from anxin.backends.int8 import quantize_int8

    configs: dict = {"native": model}
    ours = copy.deepcopy(model)
    quantize_int8(ours)
    configs["anxin Int8Linear"] = ours
    try:
        from torchao.quantization import Int8WeightOnlyConfig, quantize_
    except ImportError as error:
        configs["torchao Int8WeightOnly"] = f"skipped: torchao is not installed ({error.name})"
        return configs
    theirs = copy.deepcopy(model)
    with torch.no_grad():
        quantize_(theirs, Int8WeightOnlyConfig())
    configs["torchao Int8WeightOnly"] = theirs
    return configs


def decode_speed(model, tokenizer, new_tokens: int) -> float:
    """Decode tokens/s after the first token (prompt time left out), greedy."""
    import torch
    from transformers import LogitsProcessor

    ids = tokenizer.apply_chat_template(PROMPT, add_generation_prompt=True, return_tensors="pt")
    ids = ids["input_ids"] if hasattr(ids, "keys") else ids
    stamps: list[float] = []

    class Stamp(LogitsProcessor):  # called once per generated token: its timestamps
        def __call__(self, input_ids, scores):
            stamps.append(time.perf_counter())
            return scores

    with torch.inference_mode():
        model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            logits_processor=[Stamp()],
            pad_token_id=tokenizer.eos_token_id,
        )
    return (len(stamps) - 1) / (stamps[-1] - stamps[0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2", help="model name or HF folder")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    import torch

    from anxin.models import load_model, load_tokenizer

    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(args.model)
    tokenizer = load_tokenizer(args.model)
    configs = configurations(model)
    runs: dict[str, list[float]] = {name: [] for name in configs}
    for round_ in range(args.rounds + 1):  # round 0 warms every configuration up
        for name, candidate in configs.items():
            if isinstance(candidate, str):
                continue
            speed = decode_speed(candidate, tokenizer, args.new_tokens)
            if round_:
                runs[name].append(round(speed, 2))
                print(f"round {round_} {name:24s} {speed:6.1f} tok/s", file=sys.stderr)
    native = statistics.median(runs["native"])
    summary = {
        name: (
            {"skipped": configs[name]}
            if isinstance(configs[name], str)
            else {
                "decode_tok_s": round(statistics.median(values), 1),
                "ratio_to_native": round(statistics.median(values) / native, 2),
                "runs": values,
            }
        )
        for name, values in runs.items()
    }
    facts = {**machine_facts(), "dtype": str(next(model.parameters()).dtype)}
    write_json(args.out / "int8_kernels.json", {"machine": facts, "summary": summary})
    lines = [
        f"# Weight-only int8 decode ({args.model}, greedy, {args.new_tokens} tokens, "
        f"median of {args.rounds})",
        "",
        f"{facts['cpu']} ({' '.join(facts['cpu_flags'])}), {facts['torch_threads']} threads, "
        f"torch {facts['torch']}, native dtype {facts['dtype']}.",
        "",
        "| configuration | decode tok/s | ÷ native |",
        "|---|---:|---:|",
    ]
    for name, cell in summary.items():
        if "skipped" in cell:
            lines.append(f"| {name} | {cell['skipped']} | |")
        else:
            lines.append(f"| {name} | {cell['decode_tok_s']} | {cell['ratio_to_native']} |")
    write_text(args.out / "int8_kernels.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
