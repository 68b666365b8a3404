"""The Engine: the one place that turns a conversation into a reply.

Every interface (CLI chat, the OpenAI-compatible API, the web page, evaluation) goes through
`Engine.chat`, `Engine.stream` or `Engine.chat_batch`, so the persona, the history window, the
chat template and the care layer live here once and no interface can skip them:

    user message ─► crisis check ─► (crisis: fixed safe reply, the model is not asked)
                      │
                      ▼
               persona + history window ─► backend generates ─► reply check ─► user
                                                                 (unsafe: replaced)

Generation itself sits behind a small `Backend` interface: local transformers by default, a
remote OpenAI-compatible server (`anxin.serve.upstream`), or llama.cpp.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import Protocol

from anxin import safety
from anxin.template import DEFAULT_SYSTEM_PROMPT, with_system


@dataclass(frozen=True)
class GenerationSettings:
    """Sampling defaults chosen for supportive dialogue: varied but calm, no loops."""

    max_new_tokens: int = 256
    temperature: float = 0.7  # 0 means greedy decoding
    top_p: float = 0.9
    top_k: int = 50
    repetition_penalty: float = 1.1
    seed: int | None = None

    def __post_init__(self):
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass
class GenerationStats:
    """Filled in by a backend while it generates."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"  # "stop" | "length"
    cached_tokens: int = 0  # prompt tokens whose KV cache was reused from the previous turn


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


class Backend(Protocol):
    """What the Engine needs from a text generator."""

    name: str
    context_length: int

    def count_tokens(self, messages: list[dict]) -> int: ...

    def stream(
        self,
        messages: list[dict],
        settings: GenerationSettings,
        stats: GenerationStats,
        stop: threading.Event | None = None,
    ) -> Iterator[str]: ...

    def generate_batch(
        self, conversations: list[list[dict]], settings: GenerationSettings
    ) -> list[tuple[str, GenerationStats]]: ...


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
        device: str = "auto",
        dtype: str = "auto",
        template: str | None = None,
        system_prompt: str | None = None,
        allow_template_mismatch: bool = False,
        backend: str = "transformers",
        quantize: str | None = None,
        **engine_kwargs,
    ) -> Engine:
        """Load a local model (plus an unmerged adapter) behind the chosen backend."""
        from anxin.template import read_template_card

        if backend == "llamacpp":
            from anxin.llamacpp import LlamaCppBackend

            if quantize:
                from anxin.models import ModelError

                raise ModelError("--quantize is for the transformers backend (llama.cpp: q8_0)")
            local = LlamaCppBackend.from_model(
                model,
                adapter=adapter,
                template=template,
                allow_template_mismatch=allow_template_mismatch,
            )
        else:
            local = TransformersBackend.from_pretrained(
                model, adapter, device, dtype, template, allow_template_mismatch, quantize
            )
        card = read_template_card(adapter) or read_template_card(getattr(local, "model_path", None))
        persona = system_prompt or (card or {}).get("system_prompt") or DEFAULT_SYSTEM_PROMPT
        return cls(local, system_prompt=persona, **engine_kwargs)

    # --- the public calls ---------------------------------------------------------------------

    def chat(self, messages: list[dict], **overrides) -> Reply:
        chunks = list(self.stream(messages, **overrides))
        reply = chunks[-1].reply
        assert reply is not None
        return reply

    def stream(
        self, messages: list[dict], stop: threading.Event | None = None, **overrides
    ) -> Iterator[Chunk]:
        """Yield text deltas as they become safe to show; the last chunk carries the Reply."""
        settings = replace(self.settings, **overrides)
        check_conversation(messages)
        assessment = self.assess(messages)
        if assessment.level == "crisis":
            text = safety.crisis_response(assessment.language)
            note = SafetyNote("crisis", assessment.categories, "crisis_response")
            yield Chunk(text, Reply(text, safety=note))
            return
        prompt, dropped = self.fit_context(messages, settings)
        stats = GenerationStats()
        guard = safety.StreamGuard(assessment.language)
        shown: list[str] = []
        for delta in self.backend.stream(prompt, settings, stats, stop):
            safe_text = guard.feed(delta)
            if guard.blocked:
                break
            if safe_text:
                shown.append(safe_text)
                yield Chunk(safe_text)
        tail = "" if guard.blocked else guard.finish()
        note = SafetyNote(assessment.level, assessment.categories)
        if guard.blocked:
            # The unsafe sentence never left the guard; what was shown before it was safe.
            tail = ("\n\n" if shown else "") + safety.safe_replacement(assessment.language)
            note = replace(note, action="reply_replaced", reasons=list(guard.reasons))
        elif assessment.level == "concern":
            tail += "\n\n" + safety.concern_footer(assessment.language)
            note = replace(note, action="concern_footer")
        if tail:
            shown.append(tail)
            yield Chunk(tail)
        reply = Reply(
            "".join(shown),
            stats.finish_reason,
            stats.prompt_tokens,
            stats.completion_tokens,
            note,
            dropped,
        )
        yield Chunk("", reply)

    def chat_batch(
        self, conversations: list[list[dict]], context_length: int | None = None, **overrides
    ) -> list[Reply]:
        """Replies to many conversations at once (batched on the backend, same care layer).

        `context_length` narrows the history window below the model's own (evaluation uses the
        training cutoff, so a reply sees the context a training example of that turn kept).
        """
        settings = replace(self.settings, **overrides)
        replies: list[Reply | None] = [None] * len(conversations)
        pending, prompts, notes = [], [], {}
        for i, messages in enumerate(conversations):
            check_conversation(messages)
            assessment = self.assess(messages)
            notes[i] = assessment
            if assessment.level == "crisis":
                text = safety.crisis_response(assessment.language)
                replies[i] = Reply(
                    text, safety=SafetyNote("crisis", assessment.categories, "crisis_response")
                )
            else:
                prompt, _ = self.fit_context(messages, settings, context_length)
                pending.append(i)
                prompts.append(prompt)
        for i, (text, stats) in zip(
            pending, self.backend.generate_batch(prompts, settings), strict=True
        ):
            replies[i] = self._checked(text, stats, notes[i])
        return replies  # type: ignore[return-value]

    # --- the steps ----------------------------------------------------------------------------

    def assess(self, messages: list[dict]) -> safety.Assessment:
        *context, last = messages
        return self.detector.assess(last["content"], context=context)

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

    def _checked(self, text: str, stats: GenerationStats, assessment) -> Reply:
        verdict = safety.check_reply(text, assessment.language)
        note = SafetyNote(assessment.level, assessment.categories)
        if not verdict.ok:
            text = safety.safe_replacement(assessment.language)
            note = replace(note, action="reply_replaced", reasons=verdict.reasons)
        elif assessment.level == "concern":
            text += "\n\n" + safety.concern_footer(assessment.language)
            note = replace(note, action="concern_footer")
        return Reply(text, stats.finish_reason, stats.prompt_tokens, stats.completion_tokens, note)


class ContextTooLong(ValueError):
    """Even the newest message alone does not fit beside the persona and the reply budget."""


def check_conversation(messages: list[dict]) -> None:
    """The Engine answers a user: the last message must be theirs, roles must be known."""
    if not messages or messages[-1].get("role") != "user":
        raise ValueError("the conversation must end with a user message")
    for i, message in enumerate(messages):
        if message.get("role") not in ("system", "user", "assistant"):
            raise ValueError(f"messages[{i}].role: unknown role {message.get('role')!r}")
        if not isinstance(message.get("content"), str):
            raise ValueError(f"messages[{i}].content: must be a string")


# --- the local transformers backend -----------------------------------------------------------


class TransformersBackend:
    """Generation with a local transformers model: attention mask, template stop tokens,
    KV cache, incremental decoding that never splits a multi-byte character.

    All of the model's torch work runs on one long-lived thread (`call`, `torch_thread`),
    loading included. OpenMP keeps a pool of worker threads per thread that computes; once
    two pools exist, more threads than cores are managed and libgomp lets idle workers sleep
    almost at once, so every small matrix-vector product of decoding waits for a wake-up:
    generating in a fresh thread after loading in the main one ran at 17 tokens/s, not 34.
    """

    name = "transformers"

    def __init__(self, model, tokenizer, model_path: str | None = None):
        from anxin.template import stop_token_ids

        self.model = model
        self.tokenizer = tokenizer
        self.model_path = model_path
        self.stop_ids = stop_token_ids(tokenizer)
        self.pad_id = (
            tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.stop_ids[0]
        )
        self.context_length = int(getattr(model.config, "max_position_embeddings", 2048))
        self._cache = None  # the last conversation's KV cache (see _reusable_cache)
        self._cached_ids: list[int] = []

    @classmethod
    def from_pretrained(
        cls, model, adapter, device, dtype, template, allow_template_mismatch, quantize=None
    ):
        from anxin.models import ModelError, load_model, load_tokenizer, resolve_model
        from anxin.template import apply_template, check_template

        path = resolve_model(model)
        tokenizer = load_tokenizer(path, adapter)
        if template:
            apply_template(tokenizer, template)
        check_template(tokenizer, adapter or path, allow_template_mismatch)
        if quantize not in (None, "int8"):
            raise ModelError(f"unknown quantization {quantize!r}; choose int8")

        def load():
            loaded = load_model(path, adapter, dtype, device)
            if quantize == "int8":
                from anxin.quantize import quantize_int8

                if loaded.device.type != "cpu":
                    raise ModelError("--quantize int8 is for CPUs; a GPU runs bf16 faster")
                if adapter:
                    loaded = loaded.merge_and_unload()  # int8 layers replace plain Linear ones
                quantize_int8(loaded)
            return loaded

        return cls(torch_thread().submit(load).result(), tokenizer, path)

    def call(self, function, *args, **kwargs):
        """Run `function` on the torch thread and return its result."""
        return torch_thread().submit(function, *args, **kwargs).result()

    def count_tokens(self, messages: list[dict]) -> int:
        from anxin.template import render_prompt

        return len(render_prompt(self.tokenizer, messages))

    def _generate_kwargs(self, settings: GenerationSettings) -> dict:
        kwargs = {
            "max_new_tokens": settings.max_new_tokens,
            "eos_token_id": self.stop_ids,
            "pad_token_id": self.pad_id,
            "repetition_penalty": settings.repetition_penalty,
            "use_cache": True,
        }
        if settings.greedy:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            kwargs.update(
                do_sample=True,
                temperature=settings.temperature,
                top_p=settings.top_p,
                top_k=settings.top_k,
            )
        return kwargs

    def stream(self, messages, settings, stats, stop=None) -> Iterator[str]:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        from anxin.template import render_prompt

        prompt_ids = render_prompt(self.tokenizer, messages)
        stats.prompt_tokens = len(prompt_ids)
        input_ids = torch.tensor([prompt_ids], device=self.model.device)
        streamer = _DeltaStreamer(self.tokenizer, set(self.stop_ids))
        stop = stop or threading.Event()

        class StopOnEvent(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                return torch.full((input_ids.shape[0],), stop.is_set(), dtype=torch.bool)

        kwargs = self._generate_kwargs(settings)
        kwargs.update(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            streamer=streamer,
            stopping_criteria=StoppingCriteriaList([StopOnEvent()]),
            return_dict_in_generate=True,
        )
        errors: list[BaseException] = []

        def run():
            try:
                with torch.inference_mode():
                    if settings.seed is not None:
                        torch.manual_seed(settings.seed)
                    kwargs["cache"] = self._reusable_cache(prompt_ids, stats)
                    output = self.model.generate(**kwargs)
                    self._remember(output.sequences[0].tolist())
            except BaseException as error:  # surfaced in the caller's thread below
                self.reset_cache()
                errors.append(error)
            finally:
                streamer.end()

        job = torch_thread().submit(run)
        try:
            yield from streamer
            interrupted = stop.is_set()
        finally:
            stop.set()  # the consumer left early (Ctrl-C, closed connection): stop generating
            job.result()
        if errors:
            raise errors[0]
        stats.completion_tokens = streamer.generated
        ended = streamer.stopped_on_token or interrupted
        stats.finish_reason = "stop" if ended else "length"

    # --- the prefix cache: a chat's next turn only evaluates its new messages ------------------
    # The last conversation's KV cache is kept with the token ids it holds. The next prompt
    # usually starts with all of them (persona + history), so the cache is cropped to the
    # longest shared prefix and generate() computes only the rest (it skips the cached part of
    # input_ids itself). Token ids are compared, not text, so a reply the care layer changed, a
    # /undo or another user's conversation simply shares less. Runs on the torch thread, which
    # also keeps generations one at a time.

    def _reusable_cache(self, prompt_ids: list[int], stats: GenerationStats):
        from transformers import DynamicCache

        shared = 0
        for cached, new in zip(self._cached_ids, prompt_ids):
            if cached != new:
                break
            shared += 1
        shared = min(shared, len(prompt_ids) - 1)  # one new token at least, for the next logits
        reusable = self._cache is not None and shared > 0
        if reusable and self._cache.get_seq_length() > shared:
            try:  # transformers 5 crops by a negative count of tokens to drop
                self._cache.crop(shared - self._cache.get_seq_length())
            except (ValueError, RuntimeError):  # a sliding-window cache past its window
                reusable = False
        if not reusable:
            self._cache, shared = DynamicCache(config=self.model.config), 0
        stats.cached_tokens = shared
        return self._cache

    def _remember(self, sequence: list[int]) -> None:
        # The cache holds every token but the last one generated (it is never fed back).
        self._cached_ids = sequence[: self._cache.get_seq_length()]

    def reset_cache(self) -> None:
        self._cache, self._cached_ids = None, []

    def generate_batch(self, conversations, settings):
        """Left-padded batch generation with the KV cache (evaluation's fast path)."""
        return self.call(self._generate_batch, conversations, settings)

    def _generate_batch(self, conversations, settings):
        import torch

        from anxin.template import render_prompt

        prompts = [render_prompt(self.tokenizer, messages) for messages in conversations]
        width = max(len(p) for p in prompts)
        device = self.model.device
        input_ids = torch.tensor(
            [[self.pad_id] * (width - len(p)) + p for p in prompts], device=device
        )
        attention = torch.tensor(
            [[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device
        )
        with torch.inference_mode():
            if settings.seed is not None:
                torch.manual_seed(settings.seed)
            output = self.model.generate(
                input_ids=input_ids, attention_mask=attention, **self._generate_kwargs(settings)
            )
        results = []
        for prompt, row in zip(prompts, output[:, width:].tolist(), strict=True):
            stop_at = next((k for k, t in enumerate(row) if t in self.stop_ids), None)
            new = row if stop_at is None else row[:stop_at]
            stats = GenerationStats(len(prompt), len(new), "length" if stop_at is None else "stop")
            results.append((decode_reply(self.tokenizer, new), stats))
        return results


_torch_thread = None
_torch_thread_lock = threading.Lock()


def torch_thread():
    """The one thread (a single-worker executor) that runs every backend's torch work."""
    global _torch_thread
    with _torch_thread_lock:
        if _torch_thread is None:
            from concurrent.futures import ThreadPoolExecutor

            _torch_thread = ThreadPoolExecutor(1, thread_name_prefix="anxin-torch")
        return _torch_thread


def decode_reply(tokenizer, ids: list[int]) -> str:
    """Reply text without special tokens or a dangling partial character at the end."""
    return tokenizer.decode(ids, skip_special_tokens=True).rstrip("\ufffd")


class _DeltaStreamer:
    """A transformers streamer that yields text deltas of the decoded reply so far.

    Decoding the accumulated ids (not each token alone) keeps multi-byte characters whole;
    a delta is held back while the text ends in a partial character (U+FFFD).
    """

    def __init__(self, tokenizer, stop_ids: set[int]):
        import queue

        self.tokenizer = tokenizer
        self.stop_ids = stop_ids
        self.ids: list[int] = []
        self.sent = 0
        self.prompt_seen = False
        self.generated = 0
        self.stopped_on_token = False
        self.queue: queue.Queue = queue.Queue()

    def put(self, value) -> None:
        if not self.prompt_seen:  # generate() first hands over the prompt itself
            self.prompt_seen = True
            return
        for token_id in value.reshape(-1).tolist():
            if self.stopped_on_token:
                return
            self.generated += 1
            if token_id in self.stop_ids:
                self.stopped_on_token = True
                return
            self.ids.append(token_id)
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if text.endswith("\ufffd"):
            return
        if len(text) > self.sent:
            self.queue.put(text[self.sent :])
            self.sent = len(text)

    def end(self) -> None:
        text = decode_reply(self.tokenizer, self.ids)
        if len(text) > self.sent:
            self.queue.put(text[self.sent :])
        self.queue.put(None)

    def __iter__(self):
        while (delta := self.queue.get()) is not None:
            yield delta
