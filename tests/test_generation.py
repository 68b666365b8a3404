"""anxin.generation: settings, and the one incremental detokenizer every backend streams with."""

import pytest

from anxin.generation import GenerationSettings, IncrementalDetokenizer, setting_defaults


def test_detokenizer_streams_whole_characters(tiny_tokenizer):
    text = "谢谢你愿意听我说，晚安。 It makes sense to feel anxious."
    ids = tiny_tokenizer(text, add_special_tokens=False)["input_ids"]
    stream = IncrementalDetokenizer(tiny_tokenizer)
    deltas = [stream.add(token) for token in ids] + [stream.finish()]
    assert "".join(deltas) == text
    assert not any("\ufffd" in delta for delta in deltas)
    assert "" in deltas  # some ids completed no character and were held back


def test_detokenizer_drops_a_dangling_partial_character(tiny_tokenizer):
    ids = tiny_tokenizer("好", add_special_tokens=False)["input_ids"]
    if len(ids) == 1:  # "好" is one token here: cut it from its byte pieces instead
        ids = tiny_tokenizer.convert_tokens_to_ids(
            list(tiny_tokenizer.convert_ids_to_tokens(ids)[0])
        )
    stream = IncrementalDetokenizer(tiny_tokenizer)
    assert [stream.add(token) for token in ids[:-1]] == [""] * (len(ids) - 1)
    assert stream.finish() == ""


def test_detokenizer_cost_per_token_does_not_grow_with_the_reply(tiny_tokenizer):
    """Each step decodes a short window, not the whole reply again (that was quadratic)."""
    decoded = []
    real_decode = tiny_tokenizer.decode

    def counting_decode(ids, **kwargs):
        decoded.append(len(ids))
        return real_decode(ids, **kwargs)

    text = "我最近压力很大，晚上总是睡不着。It makes sense to feel anxious. " * 20
    ids = tiny_tokenizer(text, add_special_tokens=False)["input_ids"]
    tiny_tokenizer.decode = counting_decode
    stream = IncrementalDetokenizer(tiny_tokenizer)
    out = "".join(stream.add(token) for token in ids) + stream.finish()
    assert out == text
    assert len(ids) > 300 and max(decoded) <= 8  # windows of a few tokens only
    assert sum(decoded) <= 8 * len(ids)


def test_settings_are_checked_and_defaults_have_one_source():
    assert setting_defaults()["temperature"] == GenerationSettings().temperature == 0.7
    for bad in ({"max_new_tokens": 0}, {"top_p": 0}, {"temperature": -1}, {"top_k": -1}):
        with pytest.raises(ValueError):
            GenerationSettings(**bad)
