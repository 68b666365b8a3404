"""The `anxin` command: a table of verbs, each a module with `add_arguments` and `main`.

Modules are imported only when their verb runs, so `anxin --help` answers instantly and a
missing optional dependency (gradio, fastapi) only affects the verb that needs it.
"""

from __future__ import annotations

import argparse
import importlib
import os
import select
import sys

from anxin.errors import AnxinError

# verb -> (module, one-line help). Order is the order of the pipeline.
COMMANDS: dict[str, tuple[str, str]] = {
    "models": ("anxin.models", "pull the embedded default model, list cached models"),
    "data": ("anxin.data.commands", "convert, check, describe and download dialogue data"),
    "train": ("anxin.train", "LoRA fine-tuning (SFT) from a LLaMA-Factory-style YAML config"),
    "plot": ("anxin.plot", "redraw the loss curves of a training run"),
    "eval": ("anxin.evaluate", "validation loss, perplexity, BLEU/ROUGE; base vs fine-tuned"),
    "merge": ("anxin.merge", "merge a LoRA adapter into its base and save a standalone model"),
    "export": ("anxin.export", "export a model as GGUF (llama.cpp, Ollama) with a Modelfile"),
    "chat": ("anxin.serve.chat", "talk to a model in the terminal (streaming, with history)"),
    "serve": ("anxin.serve.api", "OpenAI-compatible HTTP API, or a safety proxy to an upstream"),
    "web": ("anxin.serve.web", "a Gradio chat page in the browser"),
    "board": ("anxin.board", "the whole workflow in the browser: data, train, eval, chat, export"),
    "safety": ("anxin.safety.commands", "crisis detection: check a message, evaluate on a set"),
    "demo": ("anxin.demo", "the whole job end to end on the embedded model (make demo)"),
}
# verb -> {sub-verb: (module, help)}: `anxin eval simulate ...` runs its own module, while
# `anxin eval --data ...` stays the verb itself.
SUBVERBS: dict[str, dict[str, tuple[str, str]]] = {
    "eval": {
        "simulate": (
            "anxin.evaluate.simulate",
            "simulated clients against the system, each conversation rated by an LLM judge",
        )
    },
}
# Verbs that load torch; OpenMP's wait policy is chosen before they start.
USES_TORCH = {"train", "eval", "merge", "export", "chat", "serve", "web", "board", "demo"}

EPILOG = """\
the flow:  anxin models pull smollm2
           anxin data convert --format smilechat path/to/smile/data -o data/smile.jsonl
           anxin train configs/smollm2-135m/lora_sft.yaml
           anxin eval --model smollm2 --adapter saves/smollm2-135m/lora/sft \\
                      --data saves/smollm2-135m/lora/sft/validation.jsonl --out reports/eval
           anxin chat --model smollm2 --adapter saves/smollm2-135m/lora/sft

Run `anxin VERB --help` for a verb's options. Conversations are never logged or sent anywhere.
"""


def top_level_help() -> str:
    width = max(len(verb) for verb in COMMANDS)
    lines = [
        "usage: anxin VERB [options]",
        "",
        "anxin (安心): fine-tune and run careful emotional-support chat models.",
        "",
    ]
    lines += ["verbs:"] + [f"  {verb:<{width}}  {text}" for verb, (_, text) in COMMANDS.items()]
    return "\n".join(lines + ["", EPILOG])


def main(argv: list[str] | None = None) -> int:
    try:
        code = _run(sys.argv[1:] if argv is None else argv)
        sys.stdout.flush()  # here, not at exit, so that a closed pipe is caught below
        return code
    except BrokenPipeError:
        if not _stdout_closed():
            raise  # a pipe of the verb's own (a subprocess, a socket): a real error
        # the reader went away (anxin safety eval FILE | head): stop quietly, as a program
        # killed by SIGPIPE does, and send what is still buffered nowhere, so that Python's
        # flush at exit does not fail again
        _send_stdout_nowhere()
        return 141  # 128 + SIGPIPE (13): what a shell reports for a program the signal ended


def _stdout_closed() -> bool:
    """Whether standard output is a pipe whose reader is gone (poll says POLLERR)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):
        return False  # no descriptor to ask (a test's captured stream): not a closed reader


def _send_stdout_nowhere() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _run(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(top_level_help())
        return 0
    if argv[0] in ("-V", "--version"):
        from anxin import __version__

        print(f"anxin {__version__}")
        return 0
    verb, rest = argv[0], argv[1:]
    if verb not in COMMANDS:
        import difflib

        hint = difflib.get_close_matches(verb, COMMANDS, n=1)
        print(f"anxin: unknown verb '{verb}'" + (f"; did you mean '{hint[0]}'?" if hint else ""))
        print(f"verbs: {', '.join(COMMANDS)}")
        return 2
    module_name, text = COMMANDS[verb]
    uses_torch = verb in USES_TORCH
    if rest and rest[0] in SUBVERBS.get(verb, {}):
        module_name, text = SUBVERBS[verb][rest[0]]
        verb, rest = f"{verb} {rest[0]}", rest[1:]
    if uses_torch and not {"-h", "--help"} & set(rest):
        from anxin.openmp import choose_wait_policy

        choose_wait_policy()  # spin or sleep: decided before torch loads (see anxin.openmp)
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(
        prog=f"anxin {verb}", description=text, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    module.add_arguments(parser)
    args = parser.parse_args(rest)
    try:
        return int(module.main(args) or 0)
    except KeyboardInterrupt:
        print("\nanxin: interrupted", file=sys.stderr)
        return 130
    except AnxinError as error:  # raised on purpose: the message is the whole story
        print(f"anxin {verb}: error: {one_line(error)}", file=sys.stderr)
        return 2


def one_line(error: BaseException) -> str:
    """The error's message on one line (a path or a quoted value may hold newlines)."""
    return " | ".join(line.strip() for line in str(error).splitlines() if line.strip())


if __name__ == "__main__":
    sys.exit(main())
