"""The one client for external OpenAI-compatible LLMs: the judge and the simulated client.

    llm = LLMClient.connect("http://gpu-box:8000/v1", role="judge", key_env="OPENAI_API_KEY")
    answers = llm.complete_all([Request(messages, {"temperature": 0, "max_tokens": 512})])
    print(llm.usage_line())

- at most `concurrency` calls run at once (threads: the openai client is synchronous);
- 429, 5xx, timeouts and dropped connections are retried with exponential backoff and jitter,
  and a server's Retry-After is honoured; other errors (a wrong key, an unknown model) stop the
  run with one line (`LLMError`);
- every answer is written to an on-disk cache as it arrives, keyed by sha256 of (model name,
  messages, parameters), so a rerun makes no calls and an interrupted run resumes;
- the number of calls (and how many are already cached) is printed before, token usage after;
- Ctrl-C stops the calls, keeps the finished ones and says how many there were.

The API key is read from the environment variable that `key_env` names: never a key on the
command line, never in a message, an error or the cache. The cache holds answers and token
counts only, not the prompts; delete `$ANXIN_HOME/cache/llm` to forget them.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import os
import queue
import random
import sys
import threading
import time
from concurrent.futures import Future, as_completed
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

from anxin.atomic import write_json
from anxin.errors import AnxinError
from anxin.paths import anxin_home

RETRIED_STATUSES = {408, 409, 429}  # and every 5xx
MAX_WAIT = 120.0  # seconds: longer Retry-After values are cut here, backoff stops growing at 60


class LLMError(AnxinError, RuntimeError):
    """An external LLM could not be used (unreachable after retries, refused, misconfigured)."""


def llm_cache_dir() -> Path:
    return anxin_home() / "cache" / "llm"


def api_base(url: str) -> str:
    """`http://host:8000` and `http://host:8000/v1/` both mean `http://host:8000/v1`."""
    url = url.rstrip("/")
    return url + "/v1" if urlsplit(url).path in ("", "/") else url


def read_key(key_env: str | None) -> str | None:
    """The key from the variable `key_env` names; None when no variable is named."""
    if not key_env:
        return None
    key = os.environ.get(key_env, "").strip()
    if not key:
        raise LLMError(f"${key_env} is empty or not set: export the API key in that variable")
    return key


@dataclass
class Request:
    messages: list[dict]
    params: dict = field(default_factory=dict)  # temperature, max_tokens, seed, ...
    salt: str = ""  # tells apart deliberate repeats of one request (judge self-consistency)


@dataclass
class Answer:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False


@dataclass
class Usage:
    calls: int = 0  # requests sent and answered
    cached: int = 0  # answers read from the cache instead
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0  # wall time inside complete_all

    def add(self, answer: Answer) -> None:
        if answer.cached:
            self.cached += 1
            return
        self.calls += 1
        self.prompt_tokens += answer.prompt_tokens
        self.completion_tokens += answer.completion_tokens


class LLMClient:
    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        role: str = "llm",
        concurrency: int = 4,
        timeout: float = 120.0,
        retries: int = 5,
        backoff: float = 1.0,
        cache_dir: str | Path | None = None,
        progress: bool = True,
    ):
        import openai

        self.base_url = api_base(base_url)
        self.model = model
        self.role = role
        self.concurrency = concurrency
        self.retries = retries
        self.backoff = backoff
        self.cache_dir = Path(cache_dir) if cache_dir else llm_cache_dir()
        self.progress = progress
        self.usage = Usage()
        self._key = api_key
        self._lock = threading.Lock()
        self._stop = threading.Event()
        # Local servers (vLLM, anxin serve) want no key, but the client insists on one.
        self._client = openai.OpenAI(
            base_url=self.base_url, api_key=api_key or "EMPTY", timeout=timeout, max_retries=0
        )

    @classmethod
    def connect(
        cls, base_url: str, model: str | None = None, key_env: str | None = None, **options
    ) -> LLMClient:
        """A client for `base_url`; without `model`, the first model the server lists."""
        client = cls(base_url, model or "", api_key=read_key(key_env), **options)
        if not model:
            client.model = client.first_model()
        return client

    def first_model(self) -> str:
        try:
            models = list(self._client.models.list())
        except Exception as error:  # any failure here means the same to the user
            raise LLMError(
                f"{self.role}: cannot list the models of {self.base_url} ({self._clean(error)}); "
                f"name one with --{self.role}-model"
            ) from None
        if not models:
            raise LLMError(f"{self.role}: {self.base_url} lists no models; name one")
        return models[0].id

    # --- one call -----------------------------------------------------------------------------

    def cache_key(self, request: Request) -> str:
        # The model's name, not the URL: the same model on another host or port is the same
        # judge, and its answers stay valid.
        content = {"model": self.model, "messages": request.messages, "params": request.params}
        if request.salt:
            content["salt"] = request.salt
        text = json.dumps(content, ensure_ascii=False, sort_keys=True)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def _cache_file(self, request: Request) -> Path:
        key = self.cache_key(request)
        return self.cache_dir / key[:2] / f"{key}.json"

    def cached(self, request: Request) -> Answer | None:
        path = self._cache_file(request)
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None  # missing, or unreadable: asking again is the repair
        return Answer(entry["text"], entry["prompt_tokens"], entry["completion_tokens"], True)

    def complete(self, request: Request) -> Answer:
        """The answer to one request: from the cache, else from the server (then cached)."""
        if (answer := self.cached(request)) is not None:
            return answer
        answer = self._call_with_retries(request)
        entry = {"model": self.model, **asdict(answer)}
        entry.pop("cached")
        write_json(self._cache_file(request), entry)
        return answer

    def _call_with_retries(self, request: Request) -> Answer:
        attempt = 0
        while True:
            try:
                return self._call(request)
            except Exception as error:  # sorted into retried and fatal below
                if not self._retried(error):
                    raise LLMError(f"{self.role}: {self._clean(error)}") from None
                if attempt >= self.retries or self._stop.is_set():
                    raise LLMError(
                        f"{self.role}: {self.base_url} still failing after {attempt} retries: "
                        f"{self._clean(error)}"
                    ) from None
                with self._lock:
                    self.usage.retries += 1
                self._stop.wait(retry_delay(error, attempt, self.backoff))
                attempt += 1

    def _call(self, request: Request) -> Answer:
        if self._stop.is_set():
            raise LLMError(f"{self.role}: stopped")
        completion = self._client.chat.completions.create(
            model=self.model, messages=request.messages, **request.params
        )
        text = (completion.choices[0].message.content or "") if completion.choices else ""
        usage = completion.usage
        return Answer(
            text,
            getattr(usage, "prompt_tokens", 0) or 0,
            getattr(usage, "completion_tokens", 0) or 0,
        )

    @staticmethod
    def _retried(error: Exception) -> bool:
        import openai

        if isinstance(error, openai.APIConnectionError):  # timeouts are connection errors too
            return True
        if isinstance(error, openai.APIStatusError):
            return error.status_code in RETRIED_STATUSES or error.status_code >= 500
        return False

    def _clean(self, error: Exception) -> str:
        """The error as one line, the key masked whatever the server echoed back."""
        import openai

        text = str(error)
        if isinstance(error, openai.APIStatusError):
            text = f"HTTP {error.status_code}: {_server_message(error)}"
        if self._key:
            text = text.replace(self._key, "***")
        return " ".join(text.split())[:300]

    # --- many calls ---------------------------------------------------------------------------

    def count_cached(self, requests: list[Request]) -> int:
        return sum(self._cache_file(r).is_file() for r in requests)

    def complete_all(
        self, requests: list[Request], desc: str = "", announce: bool = True
    ) -> list[Answer]:
        """Answers in request order, `concurrency` at a time, with a progress bar.

        An `LLMError` on one request stops the rest; Ctrl-C stops them too, keeps every
        finished answer in the cache and says how many there were before re-raising.
        """
        from tqdm import tqdm

        if announce:
            print(self.plan_line(requests, desc), file=sys.stderr)
        answers: list[Answer | None] = [None] * len(requests)
        # Identical requests (two models giving the care layer's same crisis reply) are asked
        # once; the copies are answered like cache hits.
        first: dict[str, int] = {}
        same: dict[int, list[int]] = {}  # the first of each request -> all its indices
        for i, request in enumerate(requests):
            same.setdefault(first.setdefault(self.cache_key(request), i), []).append(i)
        start = time.perf_counter()
        futures = run_in_threads(
            self.complete, {i: requests[i] for i in first.values()}, self.concurrency, self._stop
        )
        bar = tqdm(
            total=len(requests),
            desc=f"{self.role}: {desc}".rstrip(": "),
            unit="call",
            disable=None if self.progress else True,
        )
        try:
            for future in as_completed(futures):
                answer, index = future.result(), futures[future]
                for i in same[index]:
                    answers[i] = answer if i == index else replace(answer, cached=True)
                    with self._lock:
                        self.usage.add(answers[i])
                    bar.update()
        except KeyboardInterrupt:
            self._abort(futures)
            done = sum(a is not None for a in answers)
            print(
                f"\n{self.role}: interrupted: {done} of {len(requests)} calls done and kept in "
                f"{self.cache_dir}; run the same command again to resume",
                file=sys.stderr,
            )
            raise
        except BaseException:
            self._abort(futures)
            raise
        finally:
            bar.close()
            self.usage.seconds += time.perf_counter() - start
        return answers  # type: ignore[return-value]

    def _abort(self, futures: dict[Future, int]) -> None:
        """Start no more calls and let the process exit without waiting for those in flight:
        they run on daemon threads, and every finished answer is already in the cache."""
        self._stop.set()
        for future in futures:
            future.cancel()

    def plan_line(self, requests: list[Request], desc: str = "") -> str:
        unique = list({self.cache_key(r): r for r in requests}.values())
        cached = self.count_cached(unique)
        what = f" ({desc})" if desc else ""
        same = len(requests) - len(unique)
        identical = f"{same} identical to another, " if same else ""
        return (
            f"{self.role}: {len(requests)} calls{what} to {self.model} at {self.base_url}: "
            f"{cached} cached, {identical}{len(unique) - cached} to make"
        )

    def usage_line(self) -> str:
        u = self.usage
        return (
            f"{self.role}: {u.calls} calls made, {u.cached} from the cache, {u.retries} retries; "
            f"{u.prompt_tokens:,} prompt + {u.completion_tokens:,} completion tokens; "
            f"{u.seconds:.1f} s"
        )

    def describe(self) -> dict:
        """What metrics.json records about this LLM (never the key)."""
        return {"url": self.base_url, "model": self.model, "usage": asdict(self.usage)}


def run_in_threads(
    function, items: dict[int, object], workers: int, stop: threading.Event
) -> dict[Future, int]:
    """`function(item)` for every item on `workers` daemon threads; {future: index}.

    Daemon threads, not a ThreadPoolExecutor: after Ctrl-C the interpreter would wait for the
    executor's threads, that is for each call in flight to answer or time out (minutes with a
    slow judge). A call cut short this way is simply asked again on the next run.
    """
    jobs: queue.SimpleQueue = queue.SimpleQueue()
    futures: dict[Future, int] = {}
    for index, item in items.items():
        future: Future = Future()
        futures[future] = index
        jobs.put((future, item))

    def work() -> None:
        while not stop.is_set():
            try:
                future, item = jobs.get_nowait()
            except queue.Empty:
                return
            if not future.set_running_or_notify_cancel():
                continue  # cancelled while waiting
            try:
                future.set_result(function(item))
            except BaseException as error:  # handed to the caller through the future
                future.set_exception(error)

    for _ in range(min(workers, len(futures))):
        threading.Thread(target=work, name="anxin-llm", daemon=True).start()
    return futures


def retry_delay(error: Exception, attempt: int, backoff: float) -> float:
    """Seconds before retry `attempt` (0-based): the server's Retry-After if it gave one, else
    exponential backoff with jitter, so many clients do not come back in step."""
    header = _retry_after(error)
    if header is not None:
        return min(header, MAX_WAIT)
    ceiling = min(backoff * 2**attempt, 60.0)
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def _retry_after(error: Exception) -> float | None:
    response = getattr(error, "response", None)
    headers = getattr(response, "headers", None) or {}
    if (millis := headers.get("retry-after-ms")) is not None:
        try:
            return max(float(millis) / 1000, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:  # an HTTP date
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def _server_message(error) -> str:
    body = getattr(error, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
        if isinstance(inner, str):
            return inner
    return getattr(error, "message", "") or "no message"
