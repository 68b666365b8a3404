"""`anxin serve`: an OpenAI-compatible HTTP API over the Engine (FastAPI + server-sent events).

    GET  /health                  liveness and queue depth (no key needed)
    GET  /v1/models               the served model; its card carries the disclaimer
    POST /v1/chat/completions     OpenAI chat completions, `stream: true` as SSE ending [DONE]

Every reply goes through `Engine.stream`, so the persona, history window and care layer are the
same as in the terminal and the web page. With `--upstream URL` the generation itself happens on
another OpenAI-compatible server (see `anxin.serve.upstream`).

The care layer answers first: every request is assessed before it takes a place in the
generation queue, and a crisis gets the care layer's fixed reply at once, never a 429 and never
a wait behind other people's replies.

Safety of the service itself: it binds 127.0.0.1 unless an API key is set; at most
`concurrency` replies are generated at once and `queue_size` more wait, anything beyond gets
429 at once (with Retry-After); oversized bodies and `max_tokens` answer 400 in OpenAI's error
shape. Chat requests must be `Content-Type: application/json` (415 otherwise) and a request
from a web page (an `Origin` header) is refused unless that origin was allowed with
`--cors-origin`: without both rules, any page the user visits could start generations on a
local server that has no key. A client that goes away stops its generation, streamed or not.
Request bodies are never logged (uvicorn's access log is off too).
"""

# No `from __future__ import annotations` here: FastAPI reads the route functions' annotations
# at runtime, and `Request` is imported inside create_app to keep `anxin serve --help` fast.
import argparse
import asyncio
import contextlib
import hmac
import logging
import os
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from anxin.errors import ConfigError
from anxin.serve import add_engine_arguments, engine_from_args, http_url, is_loopback, model_label

if TYPE_CHECKING:
    from fastapi import FastAPI

    from anxin.engine import Engine

log = logging.getLogger("anxin.serve")

EPILOG = """\
examples:
  anxin serve --model smollm2 --adapter saves/smollm2-135m/lora/sft
  anxin serve --model merged/ --host 0.0.0.0 --api-key-file key.txt  (a key is required off localhost)
  anxin serve --upstream http://gpu-box:8000/v1 --upstream-model anxin  (vLLM generates, anxin cares)

then, with any OpenAI client:
  curl http://127.0.0.1:8000/v1/chat/completions -H 'Content-Type: application/json' \\
       -d '{"messages": [{"role": "user", "content": "最近总是睡不好"}], "stream": true}'

  from openai import OpenAI
  client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="KEY or anything")
  client.chat.completions.create(model="anxin", messages=[{"role": "user", "content": "hi"}])
"""


class ApiError(Exception):
    """An error answered in OpenAI's shape: {"error": {"message", "type", "param", "code"}}."""

    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        code: str | None = None,
        headers: dict | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.headers = headers or {}


class RequestGate:
    """At most `concurrency` generations at once and `queue_size` waiting; more is refused.

    Refusing at once (429) keeps latency honest under load instead of piling up requests that
    would time out anyway. A slot is freed when its generation has really stopped, not when
    the client left, so an abandoned reply cannot overlap the next one.
    """

    def __init__(self, concurrency: int, queue_size: int):
        self.concurrency = concurrency
        self.capacity = concurrency + queue_size
        self.admitted = 0
        self.running = 0
        self.slots = asyncio.Semaphore(concurrency)
        self.mean_reply_s = 5.0  # a running mean of how long a reply holds its slot
        self._started: list[float] = []

    def admit(self) -> None:
        if self.admitted >= self.capacity:
            raise ApiError(
                429,
                f"the server is busy ({self.running} replies running, "
                f"{self.admitted - self.running} waiting); retry in a moment",
                code="queue_full",
                headers={"Retry-After": str(self.retry_after())},
            )
        self.admitted += 1

    def retry_after(self) -> int:
        """Whole seconds until a place is likely free: the queue ahead, at the mean reply time."""
        waves = (self.admitted - self.running) / self.concurrency + 1
        return max(1, min(120, round(waves * self.mean_reply_s)))

    async def wait_for_slot(self) -> None:
        try:
            await self.slots.acquire()
        except BaseException:
            self.admitted -= 1
            raise
        self.running += 1
        self._started.append(time.monotonic())

    def done(self) -> None:
        if self._started:
            took = time.monotonic() - self._started.pop(0)
            self.mean_reply_s = 0.8 * self.mean_reply_s + 0.2 * took
        self.running -= 1
        self.admitted -= 1
        self.slots.release()


_END = object()
DISCONNECT_POLL_S = 0.25  # how often a non-streamed request checks that its client is still there


class GenerationJob:
    """Runs `engine.stream` in a worker thread and hands its chunks to the event loop."""

    def __init__(self, engine: "Engine", messages: list[dict], overrides: dict, on_done):
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue = asyncio.Queue()
        self.stop = threading.Event()
        self.on_done = on_done
        self.worker = threading.Thread(
            target=self._run, args=(engine, messages, overrides), daemon=True
        )
        self.worker.start()

    def _run(self, engine: "Engine", messages: list[dict], overrides: dict) -> None:
        try:
            for chunk in engine.stream(messages, stop=self.stop, **overrides):
                self._hand_over(chunk)
        except BaseException as error:  # surfaced to the request as an HTTP error
            self._hand_over(error)
        finally:
            self._hand_over(_END)
            self._call(self.on_done)

    def _call(self, fn, *args) -> None:
        # RuntimeError: the event loop is gone because the server is shutting down.
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(fn, *args)

    def _hand_over(self, item) -> None:
        self._call(self.queue.put_nowait, item)

    async def next(self):
        """The next chunk, an exception, or _END."""
        return await self.queue.get()


class AnsweredJob:
    """A reply the care layer already gave (no model, no queue), read like a GenerationJob."""

    def __init__(self, reply):
        from anxin.engine import Chunk

        self.stop = threading.Event()
        self.items = [Chunk(reply.text, reply), _END]

    async def next(self):
        return self.items.pop(0)


def as_api_error(error: BaseException) -> ApiError:
    from anxin.engine import ContextTooLong
    from anxin.errors import UpstreamError

    if isinstance(error, ApiError):
        return error
    if isinstance(error, ContextTooLong):
        return ApiError(400, str(error), param="messages", code="context_length_exceeded")
    if isinstance(error, UpstreamError):
        return ApiError(error.status, str(error), code="upstream")
    log.error("generation failed: %s", type(error).__name__)  # no message: it may quote text
    return ApiError(500, f"generation failed ({type(error).__name__})")


def create_app(
    engine: "Engine",
    *,
    model_name: str = "anxin",
    api_key: str | None = None,
    concurrency: int = 1,
    queue_size: int = 16,
    max_request_bytes: int = 1_000_000,
    max_tokens_limit: int = 2048,
    language: str = "zh",
    cors_origins: tuple[str, ...] = (),
) -> "FastAPI":
    from fastapi import Depends, FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    from anxin import safety
    from anxin.serve import protocol

    app = FastAPI(title="anxin", description="OpenAI-compatible API over the anxin Engine")
    if cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    gate = RequestGate(concurrency, queue_size)
    disclaimer = safety.disclaimer(language)
    max_tokens_limit = min(max_tokens_limit, engine.backend.context_length - 1)

    def error_response(error: ApiError) -> JSONResponse:
        body = protocol.error_body(error.status, error.message, error.param, error.code)
        return JSONResponse(body.model_dump(), status_code=error.status, headers=error.headers)

    @app.exception_handler(ApiError)
    async def on_api_error(request: Request, error: ApiError):
        return error_response(error)

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, error: RequestValidationError):
        return error_response(ApiError(400, str(error)))

    @app.exception_handler(HTTPException)
    async def on_http_error(request: Request, error: HTTPException):
        return error_response(ApiError(error.status_code, str(error.detail)))

    def require_allowed_origin(request: Request) -> None:
        # Browsers send Origin on cross-site requests; SDKs and curl send none.
        origin = request.headers.get("origin")
        if origin is not None and origin not in cors_origins:
            raise ApiError(
                403,
                f"requests from web pages at {origin} are not allowed; start the server with "
                "--cors-origin ORIGIN to allow one",
                code="origin_not_allowed",
            )

    def require_key(request: Request) -> None:
        require_allowed_origin(request)
        if api_key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode(), api_key.encode()
        ):
            raise ApiError(
                401,
                "missing or wrong API key: send 'Authorization: Bearer KEY'",
                code="invalid_api_key",
            )

    @app.get("/health")
    async def health():
        waiting = gate.admitted - gate.running
        return {
            "status": "ok",
            "model": model_name,
            "backend": engine.backend.name,
            "running": gate.running,
            "waiting": waiting,
            "capacity": gate.capacity,
        }

    @app.get("/v1/models", dependencies=[Depends(require_key)])
    async def models() -> protocol.ModelList:
        card = protocol.ModelCard(
            id=model_name, max_model_len=engine.backend.context_length, disclaimer=disclaimer
        )
        return protocol.ModelList(data=[card])

    @app.post("/v1/chat/completions", dependencies=[Depends(require_key)])
    async def chat_completions(request: Request):
        require_json(request)
        body = await read_limited(request, max_request_bytes)
        chat = parse_request(body, max_tokens_limit)
        messages, overrides = chat.conversation(), chat.settings_overrides()
        check_request(engine, messages, overrides)
        # The care layer first: a crisis is answered here, before (and whatever) the queue.
        assessment = await asyncio.to_thread(engine.assess, messages)
        if (answer := engine.care_reply(assessment, messages)) is not None:
            job = AnsweredJob(answer)
        else:
            gate.admit()
            await gate.wait_for_slot()
            overrides["assessment"] = assessment
            job = GenerationJob(engine, messages, overrides, gate.done)
        if chat.stream:
            return await stream_response(job, chat, model_name)
        return await complete_response(job, model_name, request)

    return app


def require_json(request) -> None:
    """415 for anything but a JSON body: a form or text/plain POST is what a cross-site page can
    send without asking the browser first."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        raise ApiError(
            415,
            f"Content-Type must be application/json, not {kind or 'missing'}",
            code="unsupported_media_type",
        )


async def read_limited(request, limit: int) -> bytes:
    """The request body, refused as soon as it grows past `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ApiError(
            400, f"request body is {declared} bytes; the limit is {limit}", code="too_large"
        )
    body = bytearray()
    async for piece in request.stream():
        body += piece
        if len(body) > limit:
            raise ApiError(
                400, f"request body exceeds the limit of {limit} bytes", code="too_large"
            )
    return bytes(body)


def parse_request(body: bytes, max_tokens_limit: int):
    from pydantic import ValidationError

    from anxin.serve.protocol import ChatCompletionRequest

    try:
        chat = ChatCompletionRequest.model_validate_json(body)
    except ValidationError as error:
        first = error.errors()[0]
        if first["type"] == "json_invalid":
            raise ApiError(400, f"the request body is not valid JSON: {first['msg']}") from None
        param = ".".join(str(part) for part in first["loc"]) or None
        where = f"{param}: " if param else ""
        raise ApiError(400, f"{where}{first['msg']}", param=param) from None
    if refused := chat.unsupported():
        param, why = refused
        raise ApiError(400, why, param=param, code="unsupported_parameter")
    wanted = chat.wanted_max_tokens()
    if wanted is not None and wanted > max_tokens_limit:
        param = "max_completion_tokens" if chat.max_completion_tokens else "max_tokens"
        raise ApiError(
            400, f"{param} is {wanted}; this server allows at most {max_tokens_limit}", param
        )
    return chat


def check_request(engine: "Engine", messages: list[dict], overrides: dict) -> None:
    """Refuse a bad conversation or setting with 400 before it takes a place in the queue."""
    from anxin.engine import check_conversation

    try:
        check_conversation(messages)
    except ValueError as error:
        raise ApiError(400, str(error), param="messages") from None
    try:
        replace(engine.settings, **overrides)
    except ValueError as error:
        raise ApiError(400, str(error)) from None


def care_note(reply):
    from anxin.serve.protocol import CareNote

    note = reply.safety
    if note is None:
        return None
    return CareNote(
        level=note.level,
        action=note.action,
        categories=list(note.categories),
        dropped_pairs=reply.dropped_pairs,
    )


async def complete_response(job, model_name: str, request=None):
    """The whole reply as one JSON body. While it is being generated the client is watched: one
    that goes away stops the generation (it would hold the generation slot for nobody)."""
    from anxin.serve import protocol

    reply = None
    waiting = asyncio.ensure_future(job.next())
    checked = time.monotonic()
    while True:
        done, _ = await asyncio.wait({waiting}, timeout=DISCONNECT_POLL_S)
        if request is not None and time.monotonic() - checked >= DISCONNECT_POLL_S:
            checked = time.monotonic()
            if await request.is_disconnected():
                job.stop.set()
        if not done:
            continue
        item = waiting.result()
        if item is _END:
            break
        if isinstance(item, BaseException):
            job.stop.set()
            raise as_api_error(item)
        reply = item.reply or reply
        waiting = asyncio.ensure_future(job.next())
    if reply is None:
        raise ApiError(500, "generation ended without a reply")
    return protocol.ChatCompletion(
        model=model_name,
        choices=[
            protocol.Choice(
                message=protocol.AssistantMessage(content=reply.text),
                finish_reason=reply.finish_reason,
            )
        ],
        usage=protocol.Usage.of(reply.prompt_tokens, reply.completion_tokens),
        anxin=care_note(reply),
    )


async def stream_response(job, chat, model_name: str):
    """SSE chunks in OpenAI's order: role, content pieces, finish, optional usage, [DONE].

    The first item is awaited before answering, so a conversation refused or an upstream that is
    down or silent still gets a proper HTTP status rather than a broken stream.
    """
    from sse_starlette import EventSourceResponse

    from anxin.serve import protocol

    first = await job.next()
    if isinstance(first, BaseException):
        job.stop.set()
        raise as_api_error(first)
    base = protocol.ChatCompletionChunk(
        id=protocol.completion_id(), created=protocol.now(), model=model_name, choices=[]
    )
    include_usage = bool(chat.stream_options and chat.stream_options.include_usage)

    def event(delta: dict | None = None, finish: str | None = None, **extra) -> dict:
        choices = (
            []
            if delta is None
            else [protocol.ChunkChoice(delta=protocol.Delta(**delta), finish_reason=finish)]
        )
        chunk = base.model_copy(update={"choices": choices, **extra})
        return {"data": chunk.model_dump_json(exclude_none=True)}

    async def events():
        try:
            yield event({"role": "assistant", "content": ""})
            item, reply = first, None
            while item is not _END:
                if isinstance(item, BaseException):
                    error = as_api_error(item)
                    body = protocol.error_body(error.status, error.message, code=error.code)
                    yield {"data": body.model_dump_json()}
                    return
                if item.delta:
                    yield event({"content": item.delta})
                reply = item.reply or reply
                item = await job.next()
            yield event({}, reply.finish_reason, anxin=care_note(reply))
            if include_usage:
                usage = protocol.Usage.of(reply.prompt_tokens, reply.completion_tokens)
                yield event(None, usage=usage)
            yield {"data": "[DONE]"}
        finally:
            job.stop.set()  # the client left early: stop generating for nobody

    return EventSourceResponse(events(), ping=15)


# --- running it -------------------------------------------------------------------------------


class BackgroundServer:
    """uvicorn in a thread on a free port: for tests, notebooks and the demo.

    with BackgroundServer(app) as server:
        httpx.get(server.url + "/health")
    """

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0, startup_timeout: float = 20):
        import socket
        import time

        import uvicorn

        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind((host, port))
        self.port = self.socket.getsockname()[1]
        self.url = http_url(host, self.port)
        config = uvicorn.Config(
            app, log_level="warning", access_log=False, timeout_graceful_shutdown=3
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True
        )
        self.thread.start()
        deadline = time.monotonic() + startup_timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the server on {self.url} did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.socket.close()

    def __enter__(self) -> "BackgroundServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Serve the Engine as an OpenAI-compatible API (chat completions, streaming as SSE), "
        "locally or as a care layer in front of another OpenAI-compatible server."
    )
    parser.epilog = EPILOG
    add_engine_arguments(parser)
    http = parser.add_argument_group("http")
    http.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    http.add_argument("--port", type=int, default=8000)
    http.add_argument(
        "--api-key-file",
        metavar="FILE",
        help="require 'Authorization: Bearer KEY' with the key read from FILE (first line); "
        "or set $ANXIN_API_KEY. A key is needed off localhost",
    )
    http.add_argument(
        "--api-key",
        help="the key itself (visible to other users in `ps`: prefer --api-key-file or "
        "$ANXIN_API_KEY)",
    )
    http.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="allow requests from web pages at ORIGIN (e.g. http://localhost:3000); repeatable. "
        "Requests from any other page are refused",
    )
    http.add_argument(
        "--served-model-name", help="the model id clients see (default: the folder's name)"
    )
    http.add_argument(
        "--concurrency",
        type=int,
        help="replies generated at once (default: 1 locally, 16 with --upstream)",
    )
    http.add_argument(
        "--queue-size", type=int, default=16, help="requests allowed to wait; more get 429"
    )
    http.add_argument("--max-request-bytes", type=int, default=1_000_000)
    http.add_argument(
        "--max-tokens-limit", type=int, default=2048, help="largest max_tokens a request may ask"
    )


def read_api_key(args: argparse.Namespace) -> str | None:
    """The key from --api-key-file, $ANXIN_API_KEY or (with a warning) --api-key."""
    if args.api_key_file:
        try:
            key = Path(args.api_key_file).read_text(encoding="utf-8").strip().splitlines()
        except OSError as error:
            raise ConfigError(
                f"{args.api_key_file}: cannot read the key ({error.strerror})"
            ) from None
        if not key or not key[0].strip():
            raise ConfigError(f"{args.api_key_file}: the key file is empty")
        return key[0].strip()
    if args.api_key:
        print(
            "anxin serve: warning: a key on the command line is visible to every user of this "
            "machine (ps); use --api-key-file or $ANXIN_API_KEY",
            file=sys.stderr,
        )
        return args.api_key
    return os.environ.get("ANXIN_API_KEY") or None


def main(args: argparse.Namespace) -> int:
    import uvicorn

    from anxin import safety

    api_key = read_api_key(args)
    if not is_loopback(args.host) and not api_key:
        raise ConfigError(
            f"binding {args.host} exposes the API beyond this machine; set --api-key-file "
            "(or $ANXIN_API_KEY), or keep --host 127.0.0.1"
        )
    engine = engine_from_args(args)
    concurrency = args.concurrency or (16 if args.upstream else 1)
    app = create_app(
        engine,
        model_name=args.served_model_name or model_label(args, engine),
        api_key=api_key,
        concurrency=concurrency,
        queue_size=args.queue_size,
        max_request_bytes=args.max_request_bytes,
        max_tokens_limit=args.max_tokens_limit,
        language=args.language,
        cors_origins=tuple(args.cors_origin),
    )
    print(safety.disclaimer(args.language), file=sys.stderr)
    print(f"anxin: serving on {http_url(args.host, args.port, '/v1')}", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, access_log=False, log_level="warning")
    return 0
