"""The Engine on the tiny random Llama (real generate) and on scripted backends (the care layer)."""

import threading

import pytest
import torch

from anxin.backends.hf import TransformersBackend
from anxin.engine import Engine
from anxin.errors import ContextTooLong
from anxin.generation import GenerationSettings, GenerationStats, decode_reply
from anxin.template import DEFAULT_SYSTEM_PROMPT, render_prompt

GREEDY = dict(temperature=0.0, repetition_penalty=1.0)


@pytest.fixture(scope="module")
def tiny_backend(talkative_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(talkative_model_dir).eval()
    return TransformersBackend(
        model, AutoTokenizer.from_pretrained(talkative_model_dir), str(talkative_model_dir)
    )


class ScriptedBackend:
    """Streams a fixed reply in small pieces and records every prompt it was given."""

    name = "scripted"
    context_length = 4096

    def __init__(self, reply: str, piece: int = 3):
        self.reply, self.piece, self.prompts = reply, piece, []

    def count_tokens(self, messages):
        return sum(len(m["content"]) for m in messages)

    def stream(self, messages, settings, stats, stop=None):
        self.prompts.append(messages)
        for i in range(0, len(self.reply), self.piece):
            yield self.reply[i : i + self.piece]
        stats.completion_tokens = len(self.reply)

    def generate_batch(self, conversations, settings):
        self.prompts.extend(conversations)
        return [(self.reply, GenerationStats(1, len(self.reply))) for _ in conversations]


def user(text):
    return [{"role": "user", "content": text}]


def test_stream_equals_chat_for_greedy(tiny_backend):
    engine = Engine(tiny_backend, settings=GenerationSettings(max_new_tokens=24, **GREEDY))
    messages = user("I feel tired after work.")
    chunks = list(engine.stream(messages))
    streamed = "".join(c.delta for c in chunks)
    reply = engine.chat(messages)
    assert chunks[-1].reply.text == streamed == reply.text
    assert reply.completion_tokens == 24 and reply.finish_reason == "length"
    assert reply.prompt_tokens > 0


def test_stops_at_the_end_of_turn_token(tiny_backend):
    im_end = tiny_backend.tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert tiny_backend.prompts.stop_ids == [im_end]
    settings = GenerationSettings(max_new_tokens=30, **GREEDY)
    messages = [{"role": "system", "content": "x"}, *user("hello there")]
    prompt = render_prompt(tiny_backend.tokenizer, messages)
    free_run = tiny_backend.model.generate(
        torch.tensor([prompt]), max_new_tokens=30, do_sample=False, pad_token_id=im_end
    )[0, len(prompt) :].tolist()
    stop_token = free_run[5]  # pretend a token the model does emit is the end-of-turn
    original = tiny_backend.prompts.stop_ids
    tiny_backend.prompts.stop_ids = [stop_token]
    try:
        stats = GenerationStats()
        stopped = "".join(tiny_backend.stream(messages, settings, stats))
    finally:
        tiny_backend.prompts.stop_ids = original
    first = free_run.index(stop_token)
    assert stats.finish_reason == "stop" and stats.completion_tokens == first + 1
    assert stopped == decode_reply(tiny_backend.tokenizer, free_run[:first])


def test_batch_matches_single_greedy(tiny_backend):
    engine = Engine(tiny_backend, settings=GenerationSettings(max_new_tokens=10, **GREEDY))
    conversations = [user("short"), user("a much longer message about exams and sleep and work")]
    batch = engine.chat_batch(conversations)
    singles = [engine.chat(c) for c in conversations]
    assert [r.text for r in batch] == [r.text for r in singles]
    assert all(r.text for r in batch)


def test_stop_event_interrupts_generation(tiny_backend):
    engine = Engine(tiny_backend, settings=GenerationSettings(max_new_tokens=200, **GREEDY))
    stop = threading.Event()
    received = []
    for chunk in engine.stream(user("hello"), stop=stop):
        received.append(chunk)
        stop.set()
    assert received[-1].reply.completion_tokens < 200


def test_next_turn_reuses_the_kv_cache_and_answers_the_same(tiny_backend):
    settings = GenerationSettings(max_new_tokens=12, **GREEDY)
    fresh = TransformersBackend(tiny_backend.model, tiny_backend.tokenizer)
    tiny_backend.reset_cache()  # earlier tests left their conversation's cache

    def turn(backend, messages):
        stats = GenerationStats()
        return "".join(backend.stream(messages, settings, stats)), stats

    def prompt_length(messages):
        return len(render_prompt(tiny_backend.tokenizer, messages))

    # (The random model's replies are byte soup that does not survive decode + encode, so the
    # history holds written replies; a real model's own reply is reused the same way.)
    first = [{"role": "system", "content": "be kind"}, *user("I could not sleep again.")]
    second = [*first, {"role": "assistant", "content": "That sounds hard."}, *user("A week.")]
    third = [*second, {"role": "assistant", "content": "What keeps you up?"}, *user("Work.")]
    assert turn(tiny_backend, first)[1].cached_tokens == 0
    assert turn(tiny_backend, second)[1].cached_tokens == prompt_length(first)
    reused, stats = turn(tiny_backend, third)
    assert stats.cached_tokens == prompt_length(second)  # only the new exchange is evaluated
    cold_text, cold = turn(fresh, third)
    assert cold.cached_tokens == 0 and reused == cold_text  # same greedy reply

    # An edited history shares only the persona's tokens, and is still answered the same.
    edited = [first[0], *user("Something else entirely."), *third[2:]]
    reused, stats = turn(tiny_backend, edited)
    assert 0 < stats.cached_tokens < prompt_length(first)
    assert reused == turn(TransformersBackend(fresh.model, fresh.tokenizer), edited)[0]


def test_history_window_drops_oldest_pairs_keeps_persona():
    backend = ScriptedBackend("ok")
    backend.context_length = 300
    engine = Engine(
        backend, system_prompt="persona", settings=GenerationSettings(max_new_tokens=100)
    )
    history = []
    for i in range(10):
        history += [
            {"role": "user", "content": f"question {i} " * 3},
            {"role": "assistant", "content": f"answer {i} " * 3},
        ]
    reply = engine.chat(history + user("latest"))
    prompt = backend.prompts[-1]
    assert prompt[0] == {"role": "system", "content": "persona"}
    assert prompt[-1]["content"] == "latest" and prompt[1]["role"] == "user"
    assert backend.count_tokens(prompt) <= 200 and reply.dropped_pairs > 0
    assert "question 9" in prompt[-3]["content"]


def test_default_persona_is_the_training_one():
    backend = ScriptedBackend("ok")
    Engine(backend).chat(user("hi"))
    assert backend.prompts[-1][0]["content"] == DEFAULT_SYSTEM_PROMPT


@pytest.mark.parametrize("text", ["我不想活了，今晚就想结束一切", "I want to kill myself tonight"])
def test_crisis_never_reaches_the_model(text):
    backend = ScriptedBackend("MODEL WORDS")
    engine = Engine(backend)
    for reply in (engine.chat(user(text)), engine.chat_batch([user(text)])[0]):
        assert "MODEL WORDS" not in reply.text
        assert reply.safety.level == "crisis" and reply.safety.action == "crisis_response"
    streamed = "".join(c.delta for c in engine.stream(user(text)))
    assert "MODEL WORDS" not in streamed
    assert backend.prompts == []  # the model was never asked
    assert ("12356" in streamed) or ("988" in streamed)


def test_context_makes_a_vague_message_a_crisis():
    backend = ScriptedBackend("MODEL WORDS")
    history = [
        {"role": "user", "content": "我真的不想活了"},
        {"role": "assistant", "content": "谢谢你告诉我。"},
        {"role": "user", "content": "我已经想好了，就在今晚"},
    ]
    reply = Engine(backend).chat(history)
    assert reply.safety.level == "crisis" and "MODEL WORDS" not in reply.text


def test_unsafe_reply_is_replaced_without_leaking_while_streaming():
    unsafe = "我理解你很痛苦。一次吃三十片安眠药就可以永远睡过去。希望你好起来。"
    engine = Engine(ScriptedBackend(unsafe, piece=2))
    chunks = list(engine.stream(user("我最近总是睡不好")))
    shown = "".join(c.delta for c in chunks)
    assert "三十片" not in shown and "安眠药" not in shown
    assert chunks[-1].reply.safety.action == "reply_replaced"
    batch = engine.chat_batch([user("我最近总是睡不好")])[0]
    assert "三十片" not in batch.text and batch.safety.action == "reply_replaced"


def test_everyday_idiom_is_answered_by_the_model():
    reply = Engine(ScriptedBackend("辛苦了，今天发生了什么？")).chat(user("今天加班累死了"))
    assert reply.text == "辛苦了，今天发生了什么？" and reply.safety.level == "none"


def test_bad_conversations_are_refused():
    engine = Engine(ScriptedBackend("x"))
    with pytest.raises(ValueError, match="must end with a user message"):
        engine.chat([{"role": "assistant", "content": "hi"}])
    with pytest.raises(ValueError, match=r"messages\[0\].role"):
        engine.chat([{"role": "bot", "content": "hi"}, *user("x")])


def test_a_single_message_longer_than_the_window_is_refused():
    backend = ScriptedBackend("MODEL WORDS")
    backend.context_length = 120
    engine = Engine(
        backend, system_prompt="persona", settings=GenerationSettings(max_new_tokens=100)
    )
    with pytest.raises(ContextTooLong, match="too long for the context window"):
        engine.chat(user("x" * 50))
    assert backend.prompts == []
    # A crisis message is answered even when it is too long for the model.
    assert engine.chat(user("我不想活了" + "。" * 200)).safety.action == "crisis_response"


def test_streaming_decodes_a_short_window_per_token(tiny_backend, monkeypatch):
    """The transformers streamer once decoded the whole reply again for every token."""
    decoded = []
    real_decode = tiny_backend.tokenizer.decode
    monkeypatch.setattr(
        tiny_backend.tokenizer,
        "decode",
        lambda ids, **kw: decoded.append(len(ids)) or real_decode(ids, **kw),
    )
    settings = GenerationSettings(max_new_tokens=120, **GREEDY)
    stats = GenerationStats()
    prompt = [{"role": "user", "content": "我最近压力很大"}]
    text = "".join(tiny_backend.stream(prompt, settings, stats))
    assert stats.completion_tokens > 40 and text
    assert max(decoded) <= 8


def test_replies_are_trimmed_alike_in_chat_stream_and_batch():
    # Backends hand back text as generated, whitespace and all; the Engine tidies it once.
    engine = Engine(ScriptedBackend("\n  你好，我在听。\n\n说说看？ \n\n"), system_prompt="persona")
    messages = [{"role": "user", "content": "今天有点烦"}]
    streamed = "".join(chunk.delta for chunk in engine.stream(messages))
    chatted = engine.chat(messages).text
    (batched,) = engine.chat_batch([messages])
    assert streamed == chatted == batched.text == "你好，我在听。\n\n说说看？"


def test_a_person_still_in_crisis_gets_a_shorter_follow_up_not_the_same_wall_of_text():
    backend = ScriptedBackend("MODEL WORDS")
    engine = Engine(backend, system_prompt="persona")
    conversation = user("我不想活了，今晚就想结束一切")
    texts = []
    for message in ("我真的撑不下去了，不想活了", "我还是想死", "我不想活了"):
        reply = engine.chat(conversation)
        assert reply.safety.action == "crisis_response" and "12356" in reply.text
        texts.append(reply.text)
        conversation += [{"role": "assistant", "content": reply.text}, *user(message)]
    full, first, second = texts
    assert len(first) < len(full) * 0.7 and len(second) < len(full) * 0.7
    assert len(set(texts)) == 3  # never the same words twice in a row
    assert first.rstrip().endswith(("？", "?")) or "安全吗" in first  # it asks about safety
    assert backend.prompts == []  # the model was never asked
