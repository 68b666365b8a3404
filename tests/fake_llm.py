"""A scripted OpenAI-compatible server for tests: FastAPI on 127.0.0.1 in a thread.

    with FakeLLM(lambda body: Say('{"winner": "A"}')) as server:
        LLMClient(server.url, "fake-judge").complete(...)

The script sees each request's JSON body and answers with `Say` (a completion, optionally
after a delay) or `Fail` (an HTTP error, optionally with Retry-After). Every request body and
its Authorization header are kept in `requests` / `keys`.
"""

# No `from __future__ import annotations`: FastAPI reads the route annotations at runtime.
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

MODEL = "fake-judge"


@dataclass
class Say:
    text: str
    delay: float = 0.0


@dataclass
class Fail:
    status: int
    message: str = "scripted failure"
    retry_after: str | None = None


class FakeLLM:
    def __init__(self, script: Callable[[dict], Say | Fail]):
        from anxin.serve.api import BackgroundServer

        self.script = script
        self.requests: list[dict] = []
        self.keys: list[str] = []
        self.lock = threading.Lock()
        self.server = BackgroundServer(self._app())
        self.url = self.server.url + "/v1"

    def _app(self):
        from fastapi import FastAPI, Request
        from fastapi.responses import JSONResponse

        app = FastAPI()

        @app.get("/v1/models")
        def models():
            return {
                "object": "list",
                "data": [{"id": MODEL, "object": "model", "owned_by": "test"}],
            }

        @app.post("/v1/chat/completions")
        def complete(body: dict, request: Request):
            with self.lock:
                self.requests.append(body)
                self.keys.append(request.headers.get("authorization", ""))
            answer = self.script(body)
            if isinstance(answer, Fail):
                headers = {"retry-after": answer.retry_after} if answer.retry_after else {}
                error = {"error": {"message": answer.message, "type": "scripted"}}
                return JSONResponse(error, status_code=answer.status, headers=headers)
            time.sleep(answer.delay)
            return completion(answer.text, body)

        return app

    @property
    def calls(self) -> int:
        return len(self.requests)

    def close(self) -> None:
        self.server.stop()

    def __enter__(self) -> "FakeLLM":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def completion(text: str, body: dict) -> dict:
    prompt_chars = sum(len(m.get("content") or "") for m in body.get("messages", []))
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", MODEL),
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ],
        "usage": {
            "prompt_tokens": prompt_chars,
            "completion_tokens": len(text),
            "total_tokens": prompt_chars + len(text),
        },
    }


def last_text(body: dict) -> str:
    return body["messages"][-1]["content"]


# --- a judge and client that answer every prompt anxin sends ----------------------------------

TURN_SCORES = {"reason": "评分理由", "comprehensiveness": 2, "professionalism": 2, "authenticity": 3,
               "safety": 1, "empathy": 2}  # fmt: skip
RATINGS = {"reason": "ok", "detects_risk": "best_practice", "confirms_risk": "suboptimal",
           "guides_to_care": "best_practice", "supportive_conversation": "best_practice",
           "follows_boundaries": "high_risk"}  # fmt: skip


def role_of(body: dict) -> str:
    """Which of anxin's prompts this is: turn, pair, conversation or client."""
    first = body["messages"][0]["content"]
    if body["messages"][0]["role"] == "system":
        return "client"
    if "<回复A>" in first:
        return "pair"
    if "整段对话" in first:
        return "conversation"
    return "turn"


def good_answer(body: dict) -> Say:
    role = role_of(body)
    if role == "client":
        return Say("嗯，我还是睡不着。")
    if role == "pair":
        return Say('```json\n{"reason": "A 更好", "winner": "A"}\n```')
    if role == "conversation":
        return Say(json.dumps(RATINGS, ensure_ascii=False))
    scores = dict(TURN_SCORES)
    if "crisis_handling" in body["messages"][0]["content"]:
        scores["crisis_handling"] = 1
    return Say(json.dumps(scores, ensure_ascii=False))
