"""The OpenAI chat-completions wire format, as pydantic models (the API's one schema module).

Only what anxin serves is modelled: `/v1/models`, `/v1/chat/completions` (plain and streamed as
server-sent events) and OpenAI's error shape. Unknown request fields are ignored, as OpenAI-
compatible servers do, so existing clients work unchanged; but a request that asks for
something anxin cannot do (tools, structured output, log-probabilities, stop sequences) is
refused with a 400 naming the parameter rather than answered as if it had been honoured. The
`developer` role is read as `system`, as OpenAI does. Two sampling extensions that vLLM also
accepts are honoured: `top_k` and `repetition_penalty`. Responses carry an `anxin` field saying
what the care layer did (levels and actions only, never text).
"""

from __future__ import annotations

import time
import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Role = Literal["system", "developer", "user", "assistant"]


class TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Role
    content: str | list[TextPart]

    @field_validator("content")
    @classmethod
    def join_text_parts(cls, content: str | list[TextPart]) -> str:
        """Clients may send content as a list of text parts; the Engine wants one string."""
        return content if isinstance(content, str) else "".join(p.text for p in content)


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    top_k: int | None = Field(default=None, ge=0)
    repetition_penalty: float | None = Field(default=None, gt=0)
    seed: int | None = None
    n: int = Field(default=1, ge=1, le=1)
    # Accepted only to be refused with a clear message (see `unsupported`).
    tools: list | None = None
    tool_choice: str | dict | None = None
    functions: list | None = None
    function_call: str | dict | None = None
    response_format: dict | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    logit_bias: dict | None = None
    stop: str | list[str] | None = None

    def unsupported(self) -> tuple[str, str] | None:
        """(parameter, why) for the first thing asked that anxin cannot honour, else None."""
        asked = {
            "tools": self.tools,
            "tool_choice": self.tool_choice not in (None, "none") and self.tool_choice,
            "functions": self.functions,
            "function_call": self.function_call not in (None, "none") and self.function_call,
            "response_format": (self.response_format or {}).get("type", "text") != "text",
            "logprobs": self.logprobs,
            "top_logprobs": self.top_logprobs,
            "logit_bias": self.logit_bias,
            "stop": self.stop,
        }
        why = {
            "response_format": "structured output is not supported; only text replies",
            "stop": "stop sequences are not supported; replies end at the model's end of turn",
        }
        for name, value in asked.items():
            if value:
                return name, why.get(name, f"{name} is not supported by anxin")
        return None

    def wanted_max_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def settings_overrides(self) -> dict:
        """The request's sampling fields as GenerationSettings overrides (unset ones omitted)."""
        fields = {
            "max_new_tokens": self.wanted_max_tokens(),
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "repetition_penalty": self.repetition_penalty,
            "seed": self.seed,
        }
        return {key: value for key, value in fields.items() if value is not None}

    def conversation(self) -> list[dict]:
        """The messages as the Engine reads them; `developer` is OpenAI's newer name for system."""
        return [
            {"role": "system" if m.role == "developer" else m.role, "content": m.content}
            for m in self.messages
        ]


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int

    @classmethod
    def of(cls, prompt_tokens: int, completion_tokens: int) -> Usage:
        return cls(
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            total_tokens=prompt_tokens + completion_tokens,
        )


class CareNote(BaseModel):
    """What the care layer did to this reply (the `anxin` extension field)."""

    level: str
    action: str
    categories: list[str] = []
    dropped_pairs: int = 0


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: str


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def now() -> int:
    return int(time.time())


class ChatCompletion(BaseModel):
    id: str = Field(default_factory=completion_id)
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=now)
    model: str
    choices: list[Choice]
    usage: Usage
    anxin: CareNote | None = None


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    finish_reason: str | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None
    anxin: CareNote | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = Field(default_factory=now)
    owned_by: str = "anxin"
    max_model_len: int | None = None
    disclaimer: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
    502: "upstream_error",
    503: "server_error",
    504: "upstream_timeout",
}


def error_body(status: int, message: str, param: str | None = None, code: str | None = None):
    """OpenAI's error JSON: {"error": {"message", "type", "param", "code"}}."""
    kind = ERROR_TYPES.get(status, "server_error")
    return ErrorResponse(error=ErrorBody(message=message, type=kind, param=param, code=code))
