"""Chat latency: time to first token and decode speed, anxin's Engine against llama.cpp.

Ways to answer the same conversations on the same model, greedy, same max_new_tokens:

    engine/transformers       anxin's Engine, the default HF backend (bf16 on CPUs with bf16,
                              the KV cache of the unchanged prefix kept across turns)
    engine/transformers int8  the same with `--quantize int8` (int8 matmul weights)
    engine/llamacpp           anxin's Engine, the llama.cpp backend (anxin.llamacpp): the HF
                              folder exported by anxin.export (q8_0), as a fine-tuned model is
    llama-cpp-python          llama-cpp-python alone, `Llama.generate` on the same token ids
                              and the same GGUF file as engine/llamacpp
    llama-cpp-python Q4_1     the same on the embedded model's original Q4_1 file (the file
                              behind the issue's llama.cpp figure); the ratios are against it

Scenarios: a 1-turn conversation; the 10th user turn of a conversation (9 earlier exchanges
of history) from a cold cache; the same turn right after the 9th was answered (warm: a backend
that keeps its KV cache evaluates only the new messages). Each configuration lives in its own
process (torch's and llama.cpp's thread pools in one process slow each other down); runs
alternate between them (A B C A B C ...) so that load from other processes hits all alike.

    .venv/bin/python bench/chat_latency.py                 # smollm2, 128 tokens, 3 repeats
    .venv/bin/python bench/chat_latency.py --repeats 1 --max-new-tokens 32   # a quick look

Writes bench/results/chat_latency.json (every run, plus machine facts) and chat_latency.md.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from anxin.atomic import write_json, write_text  # noqa: E402
from anxin.engine import Engine  # noqa: E402
from anxin.generation import GenerationStats  # noqa: E402
from anxin.template import DEFAULT_SYSTEM_PROMPT  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"

# English, because the embedded model's Chinese is not fluent (see shared/FINDINGS.md); the
# persona (Chinese) is still the Engine's system prompt, as in real use.
HISTORY = [
    (
        "I have been feeling really stressed about work lately.",
        "That sounds heavy. What part of work weighs on you the most right now?",
    ),
    (
        "My manager keeps adding tasks and I never finish anything.",
        "Having the list grow faster than you can finish it is exhausting. How long has it been like this?",
    ),
    (
        "About three months. I stay late almost every day.",
        "Three months of late days is a long stretch. How are you sleeping?",
    ),
    (
        "Badly. I wake up at 4 am and start thinking about emails.",
        "Waking early with your mind already at work is hard. What goes through your head then?",
    ),
    (
        "That I will be fired if I make one more mistake.",
        "That fear sounds frightening. Has anything happened that makes it feel so close?",
    ),
    (
        "Last week I sent a report with wrong numbers.",
        "One mistake can feel huge when you are this tired. How did your manager react?",
    ),
    (
        "He just said to fix it. But I keep replaying it.",
        "So he asked for a fix, yet your mind keeps going back to it. What do you tell yourself then?",
    ),
    (
        "That I am not good enough for this job.",
        "That is a painful thing to carry. Is that how the people you work with see you, too?",
    ),
    (
        "Probably not. A colleague said I help her a lot.",
        "It sounds like others see something you find hard to see right now. How did that feel to hear?",
    ),
    (
        "Nice, but I did not really believe it.",
        "It can be hard to take in kind words when we feel low. What would help you rest a little this week?",
    ),
]
LAST_USER = "Maybe talking to my manager about the workload. How should I start?"


def conversation(turns: int) -> list[dict]:
    """`turns` user messages: the last one new, the ones before with their answers."""
    messages = []
    for user, assistant in HISTORY[: turns - 1]:
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    return [*messages, {"role": "user", "content": LAST_USER if turns > 1 else HISTORY[0][0]}]


# --- timing -----------------------------------------------------------------------------------


class TimedBackend:
    """Wraps a backend: records when its first text arrives and when it finishes."""

    def __init__(self, backend):
        self.backend = backend
        self.name = backend.name
        self.context_length = backend.context_length
        self.first = self.done = 0.0
        self.stats = GenerationStats()

    def count_tokens(self, messages):
        return self.backend.count_tokens(messages)

    def stream(self, messages, settings, stats, stop=None):
        self.stats, self.first = stats, 0.0
        for delta in self.backend.stream(messages, settings, stats, stop):
            if not self.first:
                self.first = time.perf_counter()
            yield delta
        self.done = time.perf_counter()

    def generate_batch(self, conversations, settings):
        return self.backend.generate_batch(conversations, settings)


def run_engine(engine: Engine, timed: TimedBackend, messages, max_new: int) -> dict:
    started = time.perf_counter()
    shown = 0.0
    for chunk in engine.stream(
        messages, temperature=0, max_new_tokens=max_new, repetition_penalty=1.0
    ):
        if chunk.delta and not shown:
            shown = time.perf_counter()
    return measurement(started, timed.first, timed.done, timed.stats, shown)


def run_llama_cpp(llm, stop_ids: set[int], prompt: list[int], max_new: int) -> dict:
    stats = GenerationStats(prompt_tokens=len(prompt), finish_reason="length")
    started = time.perf_counter()
    first = 0.0
    tokens = llm.generate(prompt, temp=0.0, top_k=1, top_p=1.0, min_p=0.0, repeat_penalty=1.0)
    for token in tokens:
        stats.completion_tokens += 1
        if not first:
            first = time.perf_counter()
        if token in stop_ids:
            stats.finish_reason = "stop"
            break
        if stats.completion_tokens >= max_new:
            break
    tokens.close()
    return measurement(started, first, time.perf_counter(), stats)


def measurement(started, first, done, stats: GenerationStats, shown: float = 0.0) -> dict:
    decoded = max(stats.completion_tokens - 1, 0)
    return {
        "ttft_s": round(first - started, 4),
        "first_shown_s": round(shown - started, 4) if shown else None,
        "decode_tok_s": round(decoded / (done - first), 2) if decoded and done > first else None,
        "prompt_tokens": stats.prompt_tokens,
        "completion_tokens": stats.completion_tokens,
        "finish_reason": stats.finish_reason,
        "total_s": round(done - started, 4),
    }


# --- the configurations -----------------------------------------------------------------------


def config_names(model: str) -> list[str]:
    from anxin.models import EMBEDDED

    names = [
        "engine/transformers",
        "engine/transformers int8",
        "engine/llamacpp",
        "llama-cpp-python",
    ]
    if model in EMBEDDED:  # the file the llama.cpp figure (82-100 tok/s) is measured on
        names.append(f"llama-cpp-python {EMBEDDED[model].member.rsplit('.', 2)[-2]}")
    return names


def build_config(name: str, model: str, threads: int):
    """One configuration: (run(messages, max_new) -> dict, reset_cache(), close())."""
    from anxin.backends.llamacpp import LlamaCppBackend, embedded_gguf, import_llama_cpp
    from anxin.template import render_prompt

    def engine_config(backend, reset_cache, close=lambda: None):
        timed = TimedBackend(backend)
        engine = Engine(timed, system_prompt=DEFAULT_SYSTEM_PROMPT)
        return (lambda m, n: run_engine(engine, timed, m, n)), reset_cache, close

    if name.startswith("engine/transformers"):
        quantize = "int8" if name.endswith("int8") else None
        backend = Engine.from_pretrained(model, quantize=quantize).backend
        return engine_config(backend, backend.reset_cache)
    cpp = LlamaCppBackend.from_model(model, n_threads=threads)  # the HF folder, exported q8_0
    if name == "engine/llamacpp":
        return engine_config(cpp, cpp.llm.reset, cpp.close)
    gguf = cpp.gguf_path if name == "llama-cpp-python" else embedded_gguf(model)
    llm = import_llama_cpp().Llama(
        str(gguf), n_ctx=cpp.context_length, n_threads=threads, n_threads_batch=threads,
        verbose=False,
    )  # fmt: skip
    persona = [{"role": "system", "content": DEFAULT_SYSTEM_PROMPT}]

    def run(messages, max_new):
        prompt = render_prompt(cpp.prompts.tokenizer, persona + messages)
        return run_llama_cpp(llm, set(cpp.prompts.stop_ids), prompt, max_new)

    def close():
        llm.close()
        cpp.close()

    return run, llm.reset, close


def config_worker(name: str, model: str, threads: int, torch_threads: int | None, conn) -> None:
    """A process that holds one configuration and runs what the parent asks, in turn.

    Each configuration lives in its own process: torch's and llama.cpp's thread pools in one
    process slow each other down (llama.cpp decoded at 50-68 instead of 100 tok/s beside a
    loaded torch model), which would measure the neighbour, not the configuration.
    """
    if torch_threads:
        import torch

        torch.set_num_threads(torch_threads)
    try:
        run, reset_cache, close = build_config(name, model, threads)
        reset_cache()
        run(conversation(1), 4)  # warm-up: first calls pay one-off costs
    except Exception as error:  # a missing llama-cpp-python, a model that does not load
        conn.send(("skipped", f"{type(error).__name__}: {error}".splitlines()[0][:300]))
        return
    conn.send(("ready", None))
    while (request := conn.recv()) is not None:
        action, *args = request
        conn.send(reset_cache() if action == "reset" else run(*args))
    close()


def start_configs(
    model: str, threads: int, torch_threads: int | None, timeout: float
) -> tuple[dict, list, dict]:
    """name -> (run, reset_cache) proxies to one worker process per configuration, started one
    after another so that their loading does not overlap. A configuration that cannot start (a
    missing dependency) or does not answer within `timeout` seconds is skipped, with the reason.
    """
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    configs, processes, skipped = {}, [], {}
    for name in config_names(model):
        parent, child = context.Pipe()
        process = context.Process(
            target=config_worker, args=(name, model, threads, torch_threads, child), daemon=True
        )
        process.start()
        try:
            status, reason = _receive(parent, process, timeout)
        except TimeoutError as error:
            status, reason = "skipped", str(error)
        if status != "ready":
            print(f"skipping {name}: {reason}", file=sys.stderr)
            skipped[name] = reason
            process.kill()
            continue

        def ask(*request, conn=parent, process=process):
            conn.send(request)
            return _receive(conn, process, timeout)

        configs[name] = (lambda m, n, ask=ask: ask("run", m, n)), (lambda ask=ask: ask("reset"))
        processes.append((process, parent))
    return configs, processes, skipped


def _receive(conn, process, timeout: float):
    """The worker's next message; a worker that died or went silent raises TimeoutError."""
    deadline = time.monotonic() + timeout
    while not conn.poll(1.0):
        if not process.is_alive():
            raise TimeoutError(f"the worker exited (code {process.exitcode})")
        if time.monotonic() > deadline:
            raise TimeoutError(f"no answer within {timeout:g} s")
    return conn.recv()


SCENARIOS = {
    # name -> (turns, warm: answer the previous turn first so its prefix is cached)
    "1-turn": (1, False),
    "10-turn cold": (10, False),
    "10-turn warm": (10, True),
}


def run_all(configs: dict, repeats: int, max_new: int, runs: list[dict]) -> None:
    """Append every run to `runs` as it finishes (the caller writes them even if this stops);
    a configuration that fails mid-way is dropped from the remaining rounds."""
    for repeat in range(repeats):
        for scenario, (turns, warm) in SCENARIOS.items():
            for name, (run, reset_cache) in list(configs.items()):
                try:
                    reset_cache()
                    if warm:  # the previous turn, as a chat would have just answered it
                        run(conversation(turns)[:-2], 1)
                    result = run(conversation(turns), max_new)
                except TimeoutError as error:
                    print(f"{name}: {error}; dropped", file=sys.stderr)
                    del configs[name]
                    continue
                runs.append({"config": name, "scenario": scenario, "repeat": repeat, **result})
                print(
                    f"{scenario:13s} {name:24s} ttft {result['ttft_s']:.3f} s  "
                    f"shown {result['first_shown_s']} s  decode {result['decode_tok_s']} tok/s  "
                    f"({result['prompt_tokens']}+{result['completion_tokens']} tokens)",
                    file=sys.stderr,
                )


def summarise(runs: list[dict]) -> dict:
    """Median TTFT and decode speed per (scenario, config)."""
    table: dict = {}
    for run in runs:
        cell = table.setdefault(run["scenario"], {}).setdefault(
            run["config"], {"ttft": [], "tps": [], "shown": []}
        )
        cell["ttft"].append(run["ttft_s"])
        if run.get("first_shown_s"):
            cell["shown"].append(run["first_shown_s"])
        if run["decode_tok_s"]:
            cell["tps"].append(run["decode_tok_s"])
    return {
        scenario: {
            config: {
                "ttft_s": round(statistics.median(cell["ttft"]), 3),
                "first_shown_s": (
                    round(statistics.median(cell["shown"]), 3) if cell["shown"] else None
                ),
                "decode_tok_s": round(statistics.median(cell["tps"]), 1) if cell["tps"] else None,
            }
            for config, cell in configs.items()
        }
        for scenario, configs in table.items()
    }


def ratio(value: float | None, reference: float | None) -> str:
    return f"{value / reference:.2f}" if value and reference else "-"


def markdown(summary: dict, facts: dict, skipped: dict | None = None) -> str:
    """One row per (scenario, config): medians, and ratios to llama.cpp on the same GGUF file
    and on the original Q4_1 file (when the model has one)."""
    lines = [
        f"# Chat latency ({facts['model']}, greedy, max_new_tokens {facts['max_new_tokens']}, "
        f"median of {facts['repeats']})",
        "",
        f"{facts['cpu']} ({' '.join(facts['cpu_flags'])}), {facts['logical_cores']} cores, torch {facts['torch']} "
        f"({facts['torch_threads']} threads), llama-cpp-python {facts['llama_cpp_python']} "
        f"({facts['threads']} threads), load average at start {facts['load_average']}.",
        "",
        "| scenario | config | TTFT s | first shown s | decode tok/s "
        "| TTFT ÷ same-file llama.cpp | decode ÷ same-file | TTFT ÷ Q4_1 llama.cpp | decode ÷ Q4_1 |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for scenario, configs in summary.items():
        same = configs.get("llama-cpp-python", {})
        q4 = next((c for name, c in configs.items() if name.startswith("llama-cpp-python ")), {})
        for config, cell in configs.items():
            ttft, tps = cell["ttft_s"], cell["decode_tok_s"]
            shown = cell.get("first_shown_s")
            lines.append(
                f"| {scenario} | {config} | {ttft:.3f} | {shown if shown else '-'} | {tps} "
                f"| {ratio(ttft, same.get('ttft_s'))} | {ratio(tps, same.get('decode_tok_s'))} "
                f"| {ratio(ttft, q4.get('ttft_s'))} | {ratio(tps, q4.get('decode_tok_s'))} |"
            )
    for name, reason in (skipped or {}).items():
        lines.append(f"\nSkipped {name}: {reason}")
    lines += [
        "",
        "TTFT: from the call to the first token's text, inside the Engine. First shown: from the "
        "call to the first text the care layer releases (what a person sees first). Decode: "
        "(tokens - 1) / (end - first token).",
        "`warm`: the previous turn was answered just before, so a backend that keeps its KV "
        "cache evaluates only the new messages.",
    ]
    return "\n".join(lines) + "\n"


def machine_facts(args, threads: int) -> dict:
    from anxin.machine import machine_facts as facts

    try:
        import llama_cpp

        llama_version = llama_cpp.__version__
    except ImportError:
        llama_version = None
    return {
        **facts(),
        "model": args.model,
        "max_new_tokens": args.max_new_tokens,
        "repeats": args.repeats,
        "threads": threads,
        "torch_threads": args.torch_threads or facts()["torch_threads"],
        "llama_cpp_python": llama_version,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", default="smollm2", help="model name, HF folder (default smollm2)"
    )
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--threads", type=int, help="llama.cpp threads (default: the backend's, half the cores)"
    )
    parser.add_argument("--torch-threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the results")
    parser.add_argument(
        "--worker-timeout",
        type=float,
        default=600,
        help="seconds a configuration may take to load or answer before it is skipped",
    )
    args = parser.parse_args()
    from anxin.backends.llamacpp import default_threads

    threads = args.threads or default_threads()
    facts = machine_facts(args, threads)
    configs, processes, skipped = start_configs(
        args.model, threads, args.torch_threads, args.worker_timeout
    )
    runs: list[dict] = []
    try:
        run_all(configs, args.repeats, args.max_new_tokens, runs)
    finally:  # whatever was measured is written, even after Ctrl-C or a failure
        summary = summarise(runs)
        report = {"machine": facts, "summary": summary, "skipped": skipped, "runs": runs}
        write_json(args.out / "chat_latency.json", report)
        table = markdown(summary, facts, skipped)
        write_text(args.out / "chat_latency.md", table)
        print(table)
        for process, conn in processes:
            with contextlib.suppress(OSError):
                conn.send(None)
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
    return 0 if runs else 1


if __name__ == "__main__":
    sys.exit(main())
