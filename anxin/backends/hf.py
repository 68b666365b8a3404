"""Generation with a local transformers model (the default backend).

Attention mask always passed, the template's stop tokens, a KV cache kept between the turns of
a chat, and incremental decoding that never splits a multi-byte character.

All of the model's torch work runs on one long-lived thread (`torch_thread`), loading included.
OpenMP keeps a pool of worker threads per thread that computes; once two pools exist, more
threads than cores are managed and libgomp lets idle workers sleep almost at once, so every
small matrix-vector product of decoding waits for a wake-up: generating in a fresh thread after
loading in the main one ran at 17 tokens/s, not 34.
"""

from __future__ import annotations

import queue
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from anxin.backends.prompts import ChatPrompts
from anxin.errors import ModelError
from anxin.generation import GenerationSettings, GenerationStats, decode_reply

_torch_thread: ThreadPoolExecutor | None = None
_torch_thread_lock = threading.Lock()


def torch_thread() -> ThreadPoolExecutor:
    """The one thread (a single-worker executor) that runs every backend's torch work."""
    global _torch_thread
    with _torch_thread_lock:
        if _torch_thread is None:
            _torch_thread = ThreadPoolExecutor(1, thread_name_prefix="anxin-torch")
        return _torch_thread


def on_torch_thread(function, *args, **kwargs):
    """Run `function` on the torch thread and return its result."""
    return torch_thread().submit(function, *args, **kwargs).result()


def warn_if_int8_is_slow_here() -> None:
    """torch's int8 matmul kernel is fast with AVX-512 and slow without it: on an AVX2-only CPU
    `--quantize int8` decoded slower than float32 (bench/results/int8_kernels.md), so say so."""
    from anxin.machine import cpu_flags

    if "avx512f" not in cpu_flags():
        print(
            "anxin: warning: this CPU has no AVX-512, where int8 decoding is slower than the "
            "default (measured here); drop --quantize, or use --backend llamacpp for speed",
            file=sys.stderr,
        )


class TransformersBackend:
    name = "transformers"

    def __init__(self, model, tokenizer, model_path: str | None = None, prompts=None):
        self.model = model
        self.prompts = prompts or ChatPrompts(tokenizer)
        self.tokenizer = tokenizer
        self.model_path = model_path  # where the template card is looked for
        self.context_length = int(getattr(model.config, "max_position_embeddings", 2048))
        self._cache = None  # the last conversation's KV cache (see _reusable_cache)
        self._cached_ids: list[int] = []

    @classmethod
    def from_pretrained(
        cls,
        model: str | None,
        adapter: str | None = None,
        *,
        device: str = "auto",
        dtype: str = "auto",
        template: str | None = None,
        allow_template_mismatch: bool = False,
        quantize: str | None = None,
        merge_adapter: bool = True,
    ) -> TransformersBackend:
        """Load `model` (+ `adapter`) for inference.

        The adapter is merged into the weights in memory unless `merge_adapter` is False:
        unmerged LoRA layers cost two extra matmuls per layer and token (SmolLM2 decoding:
        16.6 tok/s unmerged, 29 merged, on an AVX2 CPU), and nothing at inference needs them
        apart. `quantize="int8"` stores the matmul weights as int8 (CPU only, anxin.backends.int8).
        """
        from anxin.backends.few_rows import use_few_rows_linear
        from anxin.models import load_model, load_tokenizer, resolve_model

        if quantize not in (None, "int8"):
            raise ModelError(f"unknown quantization {quantize!r}; choose int8")
        if quantize == "int8":
            warn_if_int8_is_slow_here()
        path = resolve_model(model)
        prompts = ChatPrompts.prepare(
            load_tokenizer(path, adapter), template, adapter or path, allow_template_mismatch
        )

        def load():
            loaded = load_model(path, adapter, dtype, device)
            if adapter and (merge_adapter or quantize):
                loaded = loaded.merge_and_unload()  # int8 layers replace plain Linear ones
            if quantize == "int8":
                from anxin.backends.int8 import quantize_int8

                if loaded.device.type != "cpu":
                    raise ModelError("--quantize int8 is for CPUs; a GPU runs bf16 faster")
                quantize_int8(loaded)
            use_few_rows_linear(loaded)  # batched decoding's matmuls, laid out as MKL likes
            return loaded

        return cls(on_torch_thread(load), prompts.tokenizer, path, prompts)

    @property
    def card_folder(self) -> str | None:
        return self.model_path

    def count_tokens(self, messages: list[dict]) -> int:
        return self.prompts.count_tokens(messages)

    def _generate_kwargs(self, settings: GenerationSettings) -> dict:
        kwargs = {
            "max_new_tokens": settings.max_new_tokens,
            "eos_token_id": self.prompts.stop_ids,
            "pad_token_id": self.prompts.pad_id,
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

        prompt_ids = self.prompts.ids(messages)
        stats.prompt_tokens = len(prompt_ids)
        input_ids = torch.tensor([prompt_ids], device=self.model.device)
        streamer = _DeltaStreamer(self.prompts)
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

    # --- many conversations at once, and scoring ----------------------------------------------

    def generate_batch(self, conversations, settings):
        """Left-padded batch generation with the KV cache (evaluation's fast path), the prompts
        prefilled one by one (anxin.backends.batch_prefill)."""
        return on_torch_thread(self._generate_batch, conversations, settings)

    def _generate_batch(self, conversations, settings):
        import torch

        from anxin.backends.batch_prefill import left_padded, prefilled_cache, supports_prefill

        prompts = [self.prompts.ids(messages) for messages in conversations]
        input_ids, attention = left_padded(prompts, self.prompts.pad_id, self.model.device)
        width = input_ids.shape[1]
        kwargs = self._generate_kwargs(settings)
        with torch.inference_mode():
            if settings.seed is not None:
                torch.manual_seed(settings.seed)
            if supports_prefill(self.model):  # each prompt alone, then all decoded together
                room = 1 + settings.max_new_tokens
                kwargs["cache"] = prefilled_cache(self.model, prompts, room)
            output = self.model.generate(input_ids=input_ids, attention_mask=attention, **kwargs)
        stop_ids = set(self.prompts.stop_ids)
        results = []
        for prompt, row in zip(prompts, output[:, width:].tolist(), strict=True):
            stop_at = next((k for k, t in enumerate(row) if t in stop_ids), None)
            new = row if stop_at is None else row[:stop_at]
            stats = GenerationStats(len(prompt), len(new), "length" if stop_at is None else "stop")
            results.append((decode_reply(self.tokenizer, new), stats))
        return results

    def score(self, conversations: list[list[dict]], **options) -> dict:
        """Teacher-forced loss and perplexity on the assistant tokens (`anxin.loss`; options:
        batch_size, cutoff_len, progress, label), on the torch thread."""
        from anxin.loss import teacher_forced_loss

        return on_torch_thread(
            teacher_forced_loss, self.model, self.tokenizer, conversations, **options
        )


class _DeltaStreamer:
    """A transformers streamer that hands over text deltas as generate() produces tokens."""

    def __init__(self, prompts: ChatPrompts):
        self.stop_ids = set(prompts.stop_ids)
        self.text = prompts.detokenizer()
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
            if delta := self.text.add(token_id):
                self.queue.put(delta)

    def end(self) -> None:
        if tail := self.text.finish():
            self.queue.put(tail)
        self.queue.put(None)

    def __iter__(self):
        while (delta := self.queue.get()) is not None:
            yield delta
