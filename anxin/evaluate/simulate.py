"""`anxin eval simulate`: simulated clients in distress against the whole system, rated by a judge.

    anxin eval simulate --client http://gpu:8000/v1 --judge http://gpu:8000/v1 \\
        --personas data/personas.jsonl --model smollm2 --adapter saves/sft --out reports/sim

A client LLM plays each persona (data/personas.jsonl) for `--turns` messages, the first being
the persona's own opening, against the system under test: the Engine with its care layer,
over a local model or `--upstream`. Replies are generated for all conversations at once
(batched), then the client writes every conversation's next message (concurrently). The judge
then rates each whole conversation on five VERA-MH-style dimensions (best practice /
suboptimal / high risk), knowing the persona's true risk and what a safe system does.
Two checks need no judge: whether a help line from anxin's hotline file was offered when the
risk was high or imminent, and whether a shown reply gave lethal-means detail (the reply
guard's rules, `anxin.safety.check_reply`).

    calls = personas × (turns − 1) client + personas judge (+ one retry per invalid rating);
    the system under test writes personas × turns replies (external calls too with --upstream).

Outputs in --out: report.md, metrics.json, metrics.png; transcripts.jsonl (the conversations
and the judge's reasons) only with --save-transcripts.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from anxin.config import add_flags, arg, from_flags
from anxin.evaluate import prompts
from anxin.evaluate.judge import Judged, ask_for_json
from anxin.evaluate.personas import Persona, choose_personas, load_personas
from anxin.llm import LLMClient, Request

_PREFIX = re.compile(r"^\s*(?:来访者|客户|我|用户|client|me|user)\s*[:：]\s*", re.IGNORECASE)
_QUOTES = "\"'“”‘’「」"


@dataclass
class SimulateConfig:
    """`anxin eval simulate`'s own flags; the system under test takes `anxin chat`'s flags."""

    out: str = arg(help="folder for report.md, metrics.json and metrics.png", metavar="DIR")
    client: str = arg(help="OpenAI-compatible server whose model plays the personas", metavar="URL")
    judge: str = arg(
        help="OpenAI-compatible server whose model rates each conversation", metavar="URL"
    )
    personas: str = arg(
        "data/personas.jsonl", "persona file (schema: data/personas.md)", metavar="FILE"
    )
    turns: int = arg(8, "client messages per conversation, the opening included", metavar="N")
    limit: int | None = arg(
        None, "at most N personas, taken in turn from each risk level", metavar="N"
    )
    ids: str | None = arg(None, "only these persona ids, comma-separated", metavar="ID,ID")
    client_model: str | None = arg(
        None, "client's model (default: the server's first)", metavar="NAME"
    )
    client_key_env: str | None = arg(
        None, "NAME of the environment variable with the client's API key", metavar="NAME"
    )
    client_temperature: float = arg(0.7, "the client's sampling temperature", metavar="T")
    client_max_tokens: int = arg(256, "longest client message", metavar="N")
    judge_model: str | None = arg(
        None, "judge's model (default: the server's first)", metavar="NAME"
    )
    judge_key_env: str | None = arg(
        None, "NAME of the environment variable with the judge's API key", metavar="NAME"
    )
    judge_max_tokens: int = arg(768, "longest judge answer", metavar="N")
    batch_size: int = arg(8, "conversations the system under test answers at once", metavar="N")
    concurrency: int = arg(4, "calls in flight at once, per server role", metavar="N")
    timeout: float = arg(
        120.0, "seconds per client or judge call before it is retried", metavar="S"
    )
    retries: int = arg(5, "retries of a call on 429, 5xx and timeouts", metavar="N")
    save_transcripts: bool = arg(
        False, "also write transcripts.jsonl: the conversations and the judge's reasons"
    )
    progress: bool = arg(True, "progress bars")

    def __post_init__(self):
        for name in ("turns", "client_max_tokens", "judge_max_tokens", "batch_size", "concurrency"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1, got {self.limit}")
        if self.retries < 0 or self.timeout <= 0 or self.client_temperature < 0:
            raise ValueError("retries must be >= 0, timeout > 0 and client_temperature >= 0")

    def id_list(self) -> list[str] | None:
        return [i.strip() for i in self.ids.split(",") if i.strip()] if self.ids else None


@dataclass
class Conversation:
    persona: Persona
    messages: list[dict]  # what the system under test saw and said, user first
    notes: list = field(default_factory=list)  # the care layer's SafetyNote for each reply
    ended: str = ""  # why it stopped before the last turn ("" when it did not)


# --- the conversations ----------------------------------------------------------------------------


def clean_client_message(text: str) -> str:
    """The client's message alone: no thinking block, speaker prefix or wrapping quotes."""
    text = re.sub(r"<think>.*?</think>", "", text, flags=re.DOTALL).strip()
    text = _PREFIX.sub("", text).strip()
    if len(text) > 1 and text[0] in _QUOTES and text[-1] in _QUOTES:
        text = text[1:-1].strip()
    return text


def answer_all(engine, conversations: list[Conversation], batch_size: int) -> None:
    """The system under test replies to every open conversation (batched, care layer on)."""
    for begin in range(0, len(conversations), batch_size):
        chunk = conversations[begin : begin + batch_size]
        for conversation, reply in zip(
            chunk, engine.chat_batch([c.messages for c in chunk]), strict=True
        ):
            conversation.messages.append({"role": "assistant", "content": reply.text})
            conversation.notes.append(reply.safety)


def next_messages(client: LLMClient, conversations, turn: int, cfg: SimulateConfig) -> None:
    """The client writes message `turn` of every open conversation."""
    params = {"temperature": cfg.client_temperature, "max_tokens": cfg.client_max_tokens}
    requests = [
        Request(prompts.client_messages(c.persona, c.messages, turn, cfg.turns), params)
        for c in conversations
    ]
    desc = f"client messages, turn {turn}/{cfg.turns}"
    for conversation, answer in zip(
        conversations, client.complete_all(requests, desc, announce=False), strict=True
    ):
        text = clean_client_message(answer.text)
        if text:
            conversation.messages.append({"role": "user", "content": text})
        else:
            conversation.ended = f"the client wrote nothing at turn {turn}"


def converse(engine, client: LLMClient, personas: list[Persona], cfg: SimulateConfig):
    """Every persona's conversation, turn by turn for all of them together."""
    from tqdm import tqdm

    conversations = [Conversation(p, [{"role": "user", "content": p.opening}]) for p in personas]
    bar = tqdm(total=cfg.turns, desc="conversations", unit="turn", disable=not cfg.progress or None)
    for turn in range(1, cfg.turns + 1):
        answer_all(engine, [c for c in conversations if not c.ended], cfg.batch_size)
        bar.update()
        if turn < cfg.turns:
            next_messages(client, [c for c in conversations if not c.ended], turn + 1, cfg)
    bar.close()
    return conversations


def rate(judge: LLMClient, conversations: list[Conversation], max_tokens: int) -> list[Judged]:
    params = {"temperature": 0.0, "max_tokens": max_tokens}
    requests = [
        Request(prompts.conversation_prompt(c.persona, c.messages), params) for c in conversations
    ]
    schemas = [prompts.conversation_schema()] * len(requests)
    return ask_for_json(judge, requests, schemas, "rating conversations")


# --- the run ----------------------------------------------------------------------------------


def connect(cfg: SimulateConfig) -> tuple[LLMClient, LLMClient]:
    options = {"concurrency": cfg.concurrency, "timeout": cfg.timeout, "retries": cfg.retries}
    options["progress"] = cfg.progress
    client = LLMClient.connect(
        cfg.client, cfg.client_model, cfg.client_key_env, role="client", **options
    )
    judge = LLMClient.connect(
        cfg.judge, cfg.judge_model, cfg.judge_key_env, role="judge", **options
    )
    return client, judge


def plan_line(personas: int, turns: int, system: str) -> str:
    return (
        f"simulate: {personas} personas x {turns} turns: the client makes up to "
        f"{personas * (turns - 1)} calls, the judge {personas} (plus one retry per invalid "
        f"rating), the system under test ({system}) writes {personas * turns} replies; "
        "answers already cached cost nothing"
    )


def run_simulation(cfg: SimulateConfig, engine, system: str = "the engine") -> dict:
    """Converse, rate, write the outputs; returns metrics.json's content."""
    from anxin.evaluate.simulate_report import summarise, write_simulation

    personas = choose_personas(load_personas(cfg.personas), cfg.limit, cfg.id_list())
    client, judge = connect(cfg)  # before any reply: a wrong URL or key fails at once
    print(plan_line(len(personas), cfg.turns, system), file=sys.stderr)
    conversations = converse(engine, client, personas, cfg)
    ratings = rate(judge, conversations, cfg.judge_max_tokens)
    for llm in (client, judge):
        print(llm.usage_line(), file=sys.stderr)
    metrics = summarise(conversations, ratings)
    metrics["settings"] = asdict(cfg)
    metrics["system"] = system
    metrics["system_sampling"] = asdict(engine.settings)  # the replies' own settings
    metrics["client"], metrics["judge"] = client.describe(), judge.describe()
    write_simulation(Path(cfg.out), metrics, conversations, ratings, cfg.save_transcripts)
    return metrics


# --- the command ------------------------------------------------------------------------------

EPILOG = """\
examples:
  # a vLLM server plays the clients and judges; the tuned adapter answers through the care layer
  anxin eval simulate --client http://gpu:8000/v1 --judge http://gpu:8000/v1 \\
      --model smollm2 --adapter saves/smollm2-135m/lora/sft --out reports/simulate

  # a hosted judge (the key is read from the variable named, never given on the command line)
  anxin eval simulate --client http://gpu:8000/v1 --judge https://api.openai.com/v1 \\
      --judge-model gpt-4o --judge-key-env OPENAI_API_KEY --upstream http://gpu:8001/v1 --out sim

  # a quick look: three personas across risk levels, four turns each
  anxin eval simulate --client URL --judge URL --limit 3 --turns 4 --out sim

The system under test takes the same flags as `anxin chat` (--model, --adapter, --upstream,
sampling); --seed defaults to 42 here, so a rerun gives the same replies and every client and
judge answer comes from the cache ($ANXIN_HOME/cache/llm). Ctrl-C keeps the finished calls.
The personas describe suicidal thinking and self-harm (see data/personas.md)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from anxin.serve import add_engine_arguments

    parser.description = (
        "Simulated clients against the system under test (the Engine and its care layer), "
        "each whole conversation rated by an LLM judge on five VERA-MH-style dimensions; "
        "writes report.md, metrics.json and metrics.png."
    )
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    add_flags(parser.add_argument_group("simulation"), SimulateConfig)
    add_engine_arguments(parser)
    parser.set_defaults(seed=42)  # reproducible replies, so reruns hit the cache


def main(args: argparse.Namespace) -> int:
    from anxin.evaluate.simulate_report import summary_lines
    from anxin.serve import engine_from_args, model_label

    cfg = from_flags(SimulateConfig, args)
    engine = engine_from_args(args)
    kind = "upstream" if getattr(args, "upstream", None) else "local"
    metrics = run_simulation(cfg, engine, f"{kind}: {model_label(args, engine)}")
    print("\n".join(summary_lines(metrics)))
    print(f"\nwrote {Path(cfg.out) / 'report.md'}, metrics.json, metrics.png")
    return 0
