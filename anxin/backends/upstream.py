"""Generation by another OpenAI-compatible server, behind anxin's Engine and care layer.

`UpstreamBackend` implements the Engine's `Backend` protocol over HTTP (httpx, streamed
server-sent events), so `anxin serve --upstream URL` keeps the persona, the history window and
the safety checks of a local Engine while vLLM, SGLang, a llama.cpp server or Ollama does the
heavy lifting on as many GPUs as they have. A crisis message never reaches the upstream.

Failures are explicit: an upstream that cannot be reached raises `UpstreamError` (the API
answers 502), one that stops sending for `timeout` seconds raises `UpstreamTimeout` (504).
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

from anxin.backends.prompts import ChatPrompts
from anxin.errors import UpstreamError, UpstreamTimeout
from anxin.generation import GenerationSettings, GenerationStats

DEFAULT_CONTEXT_LENGTH = 4096
PASSED_THROUGH = (400, 429)  # upstream statuses that mean the same thing to our client


def api_base(url: str) -> str:
    """`http://host:8000` and `http://host:8000/v1/` both mean `http://host:8000/v1`."""
    url = url.rstrip("/")
    return url + "/v1" if urlsplit(url).path in ("", "/") else url


def estimate_tokens(messages: list[dict]) -> int:
    """A deliberately high token estimate for when no tokenizer is at hand.

    Byte-level BPE vocabularies spend up to about two tokens per CJK character and one per
    three to four Latin characters; overestimating only drops old history a little early,
    underestimating would overflow the upstream's context window.
    """
    # 6 a message for its role header and end mark, 3 for the assistant header after them
    return 3 + sum(estimate_text_tokens(m["content"]) + 6 for m in messages)


def estimate_text_tokens(text: str) -> int:
    wide = sum(1 for ch in text if ord(ch) >= 0x2E80)  # CJK and the scripts after it
    return 2 * wide + (len(text) - wide + 2) // 3


class UpstreamBackend:
    name = "upstream"

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout: float = 60.0,
        context_length: int = DEFAULT_CONTEXT_LENGTH,
        prompts=None,
    ):
        import httpx

        self.base_url = api_base(base_url)
        self.model = model
        self.timeout = timeout
        self.context_length = context_length
        self.prompts = prompts  # ChatPrompts when a tokenizer was given: exact token counts
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # `read` bounds the wait for each next piece, so a slow but steady stream is fine and a
        # stalled upstream is noticed; connecting gets a shorter bound of its own.
        limits = httpx.Timeout(timeout, connect=min(timeout, 10.0))
        self.client = httpx.Client(base_url=self.base_url, headers=headers, timeout=limits)

    @classmethod
    def connect(
        cls,
        url: str,
        model: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float = 60.0,
        tokenizer: str | None = None,
        context_length: int | None = None,
        template: str | None = None,
        allow_template_mismatch: bool = False,
    ) -> UpstreamBackend:
        """Ask the upstream which model it serves (and its context window) unless told."""
        backend = cls(url, model or "", api_key=api_key, timeout=timeout)
        if tokenizer:
            from anxin.models import load_tokenizer

            backend.prompts = ChatPrompts.prepare(
                load_tokenizer(tokenizer), template, tokenizer, allow_template_mismatch
            )
        try:
            cards = backend.list_models()
        except UpstreamError as error:
            if not model:
                hint = "cannot ask it for its model (give --upstream-model)"
                raise UpstreamError(f"{error}; {hint}", error.status) from error
            print(f"anxin: warning: {error}; will keep trying per request", file=sys.stderr)
            cards = []
        card = next((c for c in cards if not model or c.get("id") == model), None)
        if card is None and cards:
            known = ", ".join(str(c.get("id")) for c in cards)
            raise UpstreamError(f"upstream {backend.base_url} does not serve '{model}' ({known})")
        if card is not None:
            backend.model = model or str(card["id"])
        backend.context_length = context_length or _context_length(card) or DEFAULT_CONTEXT_LENGTH
        return backend

    def close(self) -> None:
        self.client.close()

    # --- the Backend protocol -------------------------------------------------------------

    def count_tokens(self, messages: list[dict]) -> int:
        if self.prompts is None:
            return estimate_tokens(messages)
        return self.prompts.count_tokens(messages)

    def stream(self, messages, settings, stats, stop=None) -> Iterator[str]:
        """Text deltas of the reply (see anxin.generation.Backend)."""
        payload = self._payload(messages, settings, stream=True)
        stats.prompt_tokens = self.count_tokens(messages)  # until the upstream reports usage
        pieces: list[str] = []
        usage_seen = False
        with (
            self._errors(),
            self.client.stream("POST", "/chat/completions", json=payload) as answer,
        ):
            self._check_status(answer)
            for event in _sse_events(answer.iter_lines()):
                if stop is not None and stop.is_set():
                    stats.finish_reason = "stop"
                    break  # leaving the block closes the connection; the upstream stops too
                if "error" in event:
                    raise UpstreamError(f"upstream error: {_message(event)}")
                usage_seen = _read_usage(event, stats) or usage_seen
                for choice in event.get("choices") or []:
                    text = (choice.get("delta") or {}).get("content")
                    if text:
                        pieces.append(text)
                        yield text
                    if choice.get("finish_reason"):
                        stats.finish_reason = _finish_reason(choice["finish_reason"])
        if not usage_seen:
            stats.completion_tokens = estimate_text_tokens("".join(pieces))

    def complete(
        self, messages: list[dict], settings: GenerationSettings
    ) -> tuple[str, GenerationStats]:
        """One reply without streaming."""
        stats = GenerationStats(prompt_tokens=self.count_tokens(messages))
        with self._errors():
            answer = self.client.post(
                "/chat/completions", json=self._payload(messages, settings, stream=False)
            )
            self._check_status(answer)
            body = answer.json()
        choice = (body.get("choices") or [{}])[0]
        text = (choice.get("message") or {}).get("content") or ""
        stats.finish_reason = _finish_reason(choice.get("finish_reason") or "stop")
        if not _read_usage(body, stats):
            stats.completion_tokens = estimate_text_tokens(text)
        return text, stats

    def generate_batch(
        self, conversations: list[list[dict]], settings: GenerationSettings
    ) -> list[tuple[str, GenerationStats]]:
        """Concurrent requests: the upstream batches them on its side (continuous batching)."""
        if not conversations:
            return []
        with ThreadPoolExecutor(max_workers=min(16, len(conversations))) as pool:
            return list(pool.map(lambda m: self.complete(m, settings), conversations))

    # --- HTTP details ---------------------------------------------------------------------

    def list_models(self) -> list[dict]:
        with self._errors():
            answer = self.client.get("/models")
            self._check_status(answer)
            return list(answer.json().get("data") or [])

    def _payload(self, messages: list[dict], settings: GenerationSettings, stream: bool) -> dict:
        payload = {
            "model": self.model,
            "messages": messages,
            "max_tokens": settings.max_new_tokens,
            "temperature": settings.temperature,
            "top_p": settings.top_p,
            # vLLM, SGLang and llama.cpp read these two; servers that do not, ignore them.
            "top_k": settings.top_k,
            "repetition_penalty": settings.repetition_penalty,
            "stream": stream,
        }
        if settings.seed is not None:
            payload["seed"] = settings.seed
        if stream:
            payload["stream_options"] = {"include_usage": True}
        return payload

    @contextlib.contextmanager
    def _errors(self):
        """httpx's exceptions as the two failures the API knows how to answer."""
        import httpx

        try:
            yield
        except httpx.TimeoutException as error:
            raise UpstreamTimeout(
                f"upstream {self.base_url} sent nothing for {self.timeout:g} s"
                f" ({type(error).__name__})"
            ) from error
        except httpx.TransportError as error:
            raise UpstreamError(
                f"upstream {self.base_url} is unreachable ({type(error).__name__}: {error})"
            ) from error

    def _check_status(self, answer) -> None:
        if answer.status_code < 400:
            return
        answer.read()
        try:
            detail = _message(answer.json())
        except ValueError:
            detail = answer.text[:200]
        status = answer.status_code if answer.status_code in PASSED_THROUGH else 502
        raise UpstreamError(f"upstream answered {answer.status_code}: {detail}", status)


def _sse_events(lines: Iterator[str]) -> Iterator[dict]:
    """The JSON payloads of an OpenAI-style event stream, up to `data: [DONE]`."""
    for line in lines:
        if not line.startswith("data:"):
            continue  # blank separators, `: ping` comments, `event:` lines
        data = line[5:].strip()
        if data == "[DONE]":
            return
        try:
            yield json.loads(data)
        except json.JSONDecodeError as error:
            raise UpstreamError(f"upstream sent a malformed event: {error}") from error


def _read_usage(body: dict, stats: GenerationStats) -> bool:
    usage = body.get("usage")
    if not usage:
        return False
    stats.prompt_tokens = int(usage.get("prompt_tokens") or stats.prompt_tokens)
    stats.completion_tokens = int(usage.get("completion_tokens") or 0)
    return True


def _finish_reason(reason: str) -> str:
    return "length" if reason == "length" else "stop"


def _message(body) -> str:
    error = body.get("error", body) if isinstance(body, dict) else body
    text = error.get("message", error) if isinstance(error, dict) else error
    return str(text)[:300]


def _context_length(card: dict | None) -> int | None:
    """vLLM and anxin report `max_model_len`; llama.cpp's server reports `meta.n_ctx_train`."""
    if not card:
        return None
    value = card.get("max_model_len") or (card.get("meta") or {}).get("n_ctx_train")
    return int(value) if value else None
