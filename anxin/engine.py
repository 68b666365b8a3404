"""The Engine: the one place that turns a conversation into a reply.

Every interface (CLI chat, the OpenAI-compatible API, the web page, evaluation) goes through
`Engine.chat`, `Engine.stream` or `Engine.chat_batch`, so the persona, the history window, the
chat template and the care layer live here once and no interface can skip them:

    user message ─► assess ─► (crisis: the care layer answers; the model is not asked)
                      │
                      ▼
               persona + history window ─► backend generates ─► reply check ─► user
                                                                 (unsafe: replaced)

Generation itself sits behind `anxin.generation.Backend` (see `anxin.backends`): local
transformers by default, llama.cpp, or another OpenAI-compatible server.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace

from anxin import safety
from anxin.errors import ContextTooLong
from anxin.generation import Backend, GenerationSettings, GenerationStats
from anxin.safety.responses import crisis_followup, crisis_turns_so_far
from anxin.template import DEFAULT_SYSTEM_PROMPT, read_template_card, with_system


@dataclass
class SafetyNote:
    """What the care layer did to a turn. Holds levels and categories, never message text."""

    level: str
    categories: list[str] = field(default_factory=list)
    action: str = "none"  # none | crisis_response | concern_footer | reply_replaced
    reasons: list[str] = field(default_factory=list)


@dataclass
class Reply:
    text: str
    finish_reason: str = "stop"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    safety: SafetyNote | None = None
    dropped_pairs: int = 0  # oldest exchanges left out to fit the context window

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Chunk:
    """One piece of a streamed reply; the last one carries the whole `Reply`."""

    delta: str
    reply: Reply | None = None


class Engine:
    def __init__(
        self,
        backend: Backend,
        system_prompt: str | None = DEFAULT_SYSTEM_PROMPT,
        settings: GenerationSettings | None = None,
        detector: safety.CrisisDetector | None = None,
    ):
        self.backend = backend
        self.system_prompt = system_prompt
        self.settings = settings or GenerationSettings()
        self.detector = detector or safety.CrisisDetector()

    @classmethod
    def from_pretrained(
        cls,
        model: str | None = None,
        adapter: str | None = None,
        *,
        backend: str = "transformers",
        device: str = "auto",
        dtype: str = "auto",
        template: str | None = None,
        system_prompt: str | None = None,
        allow_template_mismatch: bool = False,
        quantize: str | None = None,
        **engine_kwargs,
    ) -> Engine:
        """Load a local model (plus an adapter) behind the chosen backend; the persona is the
        one saved with the adapter or model unless `system_prompt` is given."""
        from anxin.backends import load_backend

        local = load_backend(
            backend,
            model,
            adapter,
            device=device,
            dtype=dtype,
            template=template,
            allow_template_mismatch=allow_template_mismatch,
            quantize=quantize,
        )
        card = read_template_card(adapter) or read_template_card(
            getattr(local, "card_folder", None)
        )
        persona = system_prompt or (card or {}).get("system_prompt") or DEFAULT_SYSTEM_PROMPT
        return cls(local, system_prompt=persona, **engine_kwargs)

    # --- the public calls ---------------------------------------------------------------------

    def chat(self, messages: list[dict], **overrides) -> Reply:
        *_, last = self.stream(messages, **overrides)
        assert last.reply is not None
        return last.reply

    def stream(
        self,
        messages: list[dict],
        stop: threading.Event | None = None,
        assessment: safety.Assessment | None = None,
        **overrides,
    ) -> Iterator[Chunk]:
        """Yield text deltas as they become safe to show; the last chunk carries the Reply.

        `assessment` is the care layer's reading of these messages when the caller already made
        it (an API that answers a crisis before queueing); otherwise it is made here.
        """
        settings = replace(self.settings, **overrides)
        check_conversation(messages)
        assessment = assessment or self.assess(messages)
        if (answer := self.care_reply(assessment, messages)) is not None:
            yield Chunk(answer.text, answer)
            return
        prompt, dropped = self.fit_context(messages, settings)
        stats = GenerationStats()
        checked = _CheckedText(assessment.language)
        for delta in self.backend.stream(prompt, settings, stats, stop):
            if piece := checked.feed(delta):
                yield Chunk(piece)
            if checked.blocked:
                break
        shown = len(checked.shown)
        reply = self._finish(checked, assessment, stats, dropped)
        if tail := reply.text[shown:]:
            yield Chunk(tail)
        yield Chunk("", reply)

    def chat_batch(
        self, conversations: list[list[dict]], context_length: int | None = None, **overrides
    ) -> list[Reply]:
        """Replies to many conversations at once (batched on the backend, same care layer, and
        the same text `chat` gives for the same generated tokens).

        `context_length` narrows the history window below the model's own (evaluation uses the
        training cutoff, so a reply sees the context a training example of that turn kept).
        """
        settings = replace(self.settings, **overrides)
        replies: list[Reply | None] = [None] * len(conversations)
        waiting: dict[int, tuple] = {}
        for i, messages in enumerate(conversations):
            check_conversation(messages)
            assessment = self.assess(messages)
            replies[i] = self.care_reply(assessment, messages)
            if replies[i] is None:
                prompt, dropped = self.fit_context(messages, settings, context_length)
                waiting[i] = (prompt, assessment, dropped)
        prompts = [prompt for prompt, _, _ in waiting.values()]
        generated = self.backend.generate_batch(prompts, settings) if prompts else []
        for (i, (_, assessment, dropped)), (text, stats) in zip(
            waiting.items(), generated, strict=True
        ):
            checked = _CheckedText(assessment.language)
            checked.feed(text)
            replies[i] = self._finish(checked, assessment, stats, dropped)
        return replies  # type: ignore[return-value]

    # --- the steps ----------------------------------------------------------------------------

    def assess(self, messages: list[dict]) -> safety.Assessment:
        """The care layer's reading of the last user message in its conversation."""
        *context, last = messages
        return self.detector.assess(last["content"], context=context)

    def care_reply(self, assessment: safety.Assessment, messages: list[dict] = ()) -> Reply | None:
        """The care layer's own answer when the model must not be asked (a crisis), else None.

        The first crisis turn of a conversation gets the full crisis reply; a person still in
        crisis later gets a shorter follow-up that stays with them and asks about their safety
        (one help line kept in view), not the same wall of text again. Needs no model, so
        callers with a queue in front of the model can answer it at once.
        """
        if assessment.level != "crisis":
            return None
        language, categories = assessment.language, list(assessment.categories)
        earlier = crisis_turns_so_far(messages)
        if earlier:
            text = crisis_followup(language, earlier)
        else:
            text = safety.crisis_response(language, categories=categories)
        return Reply(text, safety=SafetyNote("crisis", categories, "crisis_response"))

    def fit_context(
        self, messages: list[dict], settings: GenerationSettings, context_length: int | None = None
    ):
        """Persona first, then drop the oldest whole exchanges until prompt + reply fit."""
        prompt = with_system(messages, self.system_prompt)
        system = prompt[:1] if prompt[0]["role"] == "system" else []
        turns = prompt[len(system) :]
        window = min(self.backend.context_length, context_length or self.backend.context_length)
        budget = window - settings.max_new_tokens
        dropped = 0
        while len(turns) > 1 and self.backend.count_tokens(system + turns) > budget:
            turns = turns[2:] if turns[0]["role"] == "user" and len(turns) > 2 else turns[1:]
            dropped += 1
        if self.backend.count_tokens(system + turns) > budget:
            raise ContextTooLong(
                f"the message is too long for the context window ({window}"
                f" tokens, {settings.max_new_tokens} kept for the reply); shorten it"
            )
        return system + turns, dropped

    def _finish(self, checked, assessment, stats: GenerationStats, dropped: int) -> Reply:
        """The one ending of every generated reply: replaced if unsafe, a help line on concern."""
        text = checked.finish()
        note = SafetyNote(assessment.level, list(assessment.categories))
        if checked.blocked:
            # The unsafe sentence never left the check; what was shown before it was safe.
            text += ("\n\n" if text else "") + safety.safe_replacement(assessment.language)
            note = replace(note, action="reply_replaced", reasons=list(checked.reasons))
        elif assessment.level == "concern":
            text += "\n\n" + safety.concern_footer(assessment.language)
            note = replace(note, action="concern_footer")
        return Reply(
            text,
            stats.finish_reason,
            stats.prompt_tokens,
            stats.completion_tokens,
            note,
            dropped,
        )


class _CheckedText:
    """A reply passed through the care layer's reply check as it grows, trimmed of surrounding
    whitespace, the same way whether it arrives token by token or all at once.

    `feed` returns the text that is now safe to show; once a sentence fails the check,
    `blocked` is set and nothing more is released.
    """

    def __init__(self, language: str):
        self.guard = safety.StreamGuard(language)
        self.shown = ""
        self.held = ""  # whitespace that only counts if more text follows it

    @property
    def blocked(self) -> bool:
        return self.guard.blocked

    @property
    def reasons(self) -> list[str]:
        return self.guard.reasons

    def feed(self, delta: str) -> str:
        return self._release(self.guard.feed(delta))

    def finish(self) -> str:
        """Everything shown, plus what the guard still held if it passes."""
        if not self.guard.blocked:
            self._release(self.guard.finish())
        return self.shown

    def _release(self, text: str) -> str:
        if self.guard.blocked or not text:
            return ""
        if not self.shown:
            text = text.lstrip()
        text = self.held + text
        body = text.rstrip()
        self.held = text[len(body) :]
        self.shown += body
        return body


def check_conversation(messages: list[dict]) -> None:
    """The Engine answers a user: the last message must be theirs, roles must be known."""
    if not messages or messages[-1].get("role") != "user":
        raise ValueError("the conversation must end with a user message")
    for i, message in enumerate(messages):
        if message.get("role") not in ("system", "user", "assistant"):
            raise ValueError(f"messages[{i}].role: unknown role {message.get('role')!r}")
        if not isinstance(message.get("content"), str):
            raise ValueError(f"messages[{i}].content: must be a string")
