"""An optional guard model, for deployments with a GPU: a second opinion that can only raise.

    anxin serve --model ... --safety-judge http://gpu-box:8000/v1 --safety-judge-model guard

A guard model (Llama Guard 3, Qwen3Guard-Gen) served by vLLM or SGLang reads the conversation
and answers in its own format; `parse_verdict` reads both, and `rules/judge.yaml` says what each
of their categories means here. The care layer's own decision is made first and stands: the
guard is asked only when that decision is below crisis, and its verdict may raise the level,
never lower it. A guard that does not answer within `timeout` seconds (default 2), answers an
error, or answers something unreadable is ignored for that message, and the assessment's
reasons (which the audit log records) say so: `judge:timeout`, `judge:unavailable`,
`judge:unreadable`.

Privacy: the conversation is sent to the guard's server, and nowhere else; choose one you
trust with it. Nothing is cached or logged here.
"""

from __future__ import annotations

import json
import re
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml

from anxin.safety.rules import CATEGORIES, FOLDER, LEVELS

MAPPING_FILE = FOLDER / "judge.yaml"
CONTEXT_MESSAGES = 6  # the guard reads the last few turns too: 就今晚吧 means little alone
_ANSWER_TOKENS = 24  # "unsafe\nS1,S11" or "Safety: Unsafe\nCategories: Violent, ..."
# A worker per judged message in flight; the Engine assesses one message per request.
_POOL = ThreadPoolExecutor(max_workers=8, thread_name_prefix="anxin-judge")


# Reasons that say the guard gave no verdict, so the local decision stood alone.
JUDGE_FAILURES = frozenset({"judge:timeout", "judge:unavailable", "judge:unreadable"})


@dataclass(frozen=True)
class Verdict:
    """What the guard said, in the care layer's terms: `level` None means nothing to raise."""

    level: str | None
    categories: list[str] = field(default_factory=list)
    reason: str = "judge:safe"


@dataclass(frozen=True)
class Meaning:
    level: str
    category: str


@lru_cache(maxsize=1)
def guard_meanings(path: Path = MAPPING_FILE) -> dict[str, dict]:
    """rules/judge.yaml, checked: {"llama_guard": {code: Meaning}, "qwen3guard": {...}}."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))

    def meaning(where: str, entry: object) -> Meaning:
        if not isinstance(entry, dict) or set(entry) != {"level", "category"}:
            raise ValueError(f"{path.name}: {where}: needs exactly level and category")
        if entry["level"] not in LEVELS[1:] or entry["category"] not in CATEGORIES:
            raise ValueError(f"{path.name}: {where}: unknown level or category {entry}")
        return Meaning(entry["level"], entry["category"])

    if not isinstance(data, dict) or set(data) != {"llama_guard", "qwen3guard"}:
        raise ValueError(f"{path.name}: needs exactly llama_guard and qwen3guard")
    qwen = data["qwen3guard"]
    if not isinstance(qwen, dict) or not set(qwen) <= {"unsafe", "controversial"}:
        raise ValueError(f"{path.name}: qwen3guard: only unsafe and controversial")
    return {
        "llama_guard": {code: meaning(code, e) for code, e in data["llama_guard"].items()},
        "qwen3guard": {
            f"{safety}:{name}": meaning(f"{safety}: {name}", entry)
            for safety, entries in qwen.items()
            for name, entry in entries.items()
        },
    }


# --- reading a guard's answer ------------------------------------------------------------------

_LLAMA_GUARD = re.compile(r"^\s*(safe|unsafe)[ \t]*(?:\r?\n\s*(s\d+(?:[ \t]*,[ \t]*s\d+)*))?", re.I)
_QWEN_SAFETY = re.compile(r"Safety:\s*(Safe|Unsafe|Controversial)", re.I)
_QWEN_CATEGORIES = re.compile(r"Categories:\s*([^\n]+)", re.I)


def parse_verdict(answer: str) -> Verdict | None:
    """The care layer's reading of a Llama Guard 3 or Qwen3Guard answer; None if unreadable."""
    meanings = guard_meanings()
    if found := _QWEN_SAFETY.search(answer):
        safety = found.group(1).lower()
        listed = _QWEN_CATEGORIES.search(answer)
        names = [n.strip() for n in listed.group(1).split(",")] if listed else []
        hits = [meanings["qwen3guard"].get(f"{safety}:{name}") for name in names]
        return _verdict("qwen3guard", safety, names, hits)
    if found := _LLAMA_GUARD.match(answer):
        codes = [c.strip().upper() for c in (found.group(2) or "").split(",") if c.strip()]
        hits = [meanings["llama_guard"].get(code) for code in codes]
        return _verdict("llama_guard", found.group(1).lower(), codes, hits)
    return None


def _verdict(guard: str, safety: str, names: list[str], hits: list) -> Verdict:
    meant = [hit for hit in hits if hit is not None]
    reason = f"judge:{guard}:{safety}" + (f":{','.join(names)}" if names else "")
    if not meant:
        return Verdict(None, [], reason)
    level = max((hit.level for hit in meant), key=LEVELS.index)
    categories = list(dict.fromkeys(hit.category for hit in meant if hit.level == level))
    return Verdict(level, categories, reason)


# --- asking the guard --------------------------------------------------------------------------


class SafetyJudge:
    """Ask a guard model on an OpenAI-compatible server about a user message in context."""

    def __init__(
        self,
        url: str,
        model: str | None = None,
        timeout: float = 2.0,
        api_key: str | None = None,
    ):
        if timeout <= 0:
            raise ValueError("the guard's timeout must be above 0 seconds")
        self.base = url.rstrip("/") if url.rstrip("/").endswith("/v1") else url.rstrip("/") + "/v1"
        self.model = model
        self.timeout = timeout
        self.api_key = api_key

    def judge(self, text: str, context: list = ()) -> Verdict:
        """The guard's verdict, or a Verdict(None) whose reason says why there is none."""
        future = _POOL.submit(self._ask, _conversation(text, context))
        try:
            answer = future.result(timeout=self.timeout)
        except FutureTimeout:
            return Verdict(None, [], "judge:timeout")
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            return Verdict(None, [], "judge:unavailable")
        return parse_verdict(answer) or Verdict(None, [], "judge:unreadable")

    def _ask(self, messages: list[dict]) -> str:
        model = self.model or self._first_model()
        body = {"model": model, "messages": messages, "temperature": 0}
        body["max_tokens"] = _ANSWER_TOKENS
        reply = self._call("/chat/completions", body)
        return reply["choices"][0]["message"]["content"] or ""

    def _first_model(self) -> str:
        self.model = self._call("/models")["data"][0]["id"]
        return self.model

    def _call(self, path: str, body: dict | None = None) -> dict:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        data = None if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8")
        request = urllib.request.Request(self.base + path, data=data, headers=headers)
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            return json.loads(response.read().decode("utf-8"))


def _conversation(text: str, context) -> list[dict]:
    """The last turns and the message, as guard chat templates want them: user first,
    user and assistant taking turns (two turns of one speaker joined), no system prompt."""
    turns: list[dict] = []
    for message in [*list(context)[-CONTEXT_MESSAGES:], {"role": "user", "content": text}]:
        role, content = _role_and_content(message)
        if role not in ("user", "assistant") or not content.strip():
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] += "\n" + content
        elif turns or role == "user":
            turns.append({"role": role, "content": content})
    return turns


def _role_and_content(message) -> tuple[str, str]:
    if isinstance(message, str):
        return "user", message
    if isinstance(message, dict) and isinstance(message.get("content"), str):
        return str(message.get("role", "user")), message["content"]
    return "", ""
