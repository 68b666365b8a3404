import pytest

from anxin.template import (
    DEFAULT_SYSTEM_PROMPT,
    IGNORE_INDEX,
    TemplateError,
    apply_template,
    check_template,
    end_of_turn_id,
    render_conversation,
    render_prompt,
    save_template_card,
    with_system,
)

DIALOGUE = [
    {"role": "system", "content": "You are kind."},
    {"role": "user", "content": "I can't sleep."},
    {"role": "assistant", "content": "That sounds hard. What keeps you up?"},
    {"role": "user", "content": "Work."},
    {"role": "assistant", "content": "Tell me more about work."},
]


def trained_text(tokenizer, rendered):
    return tokenizer.decode(
        [t for t, label in zip(rendered.input_ids, rendered.labels) if label != IGNORE_INDEX]
    )


def test_chatml_golden(tiny_tokenizer):
    rendered = render_conversation(tiny_tokenizer, DIALOGUE)
    assert tiny_tokenizer.decode(rendered.input_ids) == (
        "<|im_start|>system\nYou are kind.<|im_end|>\n"
        "<|im_start|>user\nI can't sleep.<|im_end|>\n"
        "<|im_start|>assistant\nThat sounds hard. What keeps you up?<|im_end|>\n"
        "<|im_start|>user\nWork.<|im_end|>\n"
        "<|im_start|>assistant\nTell me more about work.<|im_end|>\n"
    )
    # Only the answers and their end-of-turn token are trained, never the newline glue.
    assert trained_text(tiny_tokenizer, rendered) == (
        "That sounds hard. What keeps you up?<|im_end|>Tell me more about work.<|im_end|>"
    )
    assert rendered.labels[-1] == IGNORE_INDEX  # ChatML's trailing "\n"
    assert end_of_turn_id(tiny_tokenizer) == tiny_tokenizer.convert_tokens_to_ids("<|im_end|>")


def test_llama3_golden(tiny_tokenizer):
    assert apply_template(tiny_tokenizer, "llama3") == "llama3"
    rendered = render_conversation(tiny_tokenizer, DIALOGUE[:3])
    bos = tiny_tokenizer.bos_token
    assert tiny_tokenizer.decode(rendered.input_ids) == (
        f"{bos}<|start_header_id|>system<|end_header_id|>\n\nYou are kind.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nI can't sleep.<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nThat sounds hard. What keeps you up?<|eot_id|>"
    )
    assert (
        trained_text(tiny_tokenizer, rendered) == "That sounds hard. What keeps you up?<|eot_id|>"
    )
    assert end_of_turn_id(tiny_tokenizer) == tiny_tokenizer.convert_tokens_to_ids("<|eot_id|>")


@pytest.mark.parametrize("template", ["chatml", "llama3"])
def test_training_render_equals_inference_prompt_plus_answer(tiny_tokenizer, template):
    apply_template(tiny_tokenizer, template)
    dialogue = with_system(
        [
            {"role": "user", "content": "我最近压力很大，晚上睡不着。"},
            {"role": "assistant", "content": "听起来你很辛苦。是什么让你最放不下？"},
            {"role": "user", "content": "考试。"},
            {"role": "assistant", "content": "考试前的担心很常见。你愿意多说说吗？"},
        ]
    )
    rendered = render_conversation(tiny_tokenizer, dialogue)
    prompt = render_prompt(tiny_tokenizer, dialogue[:-1])
    assert rendered.input_ids[: len(prompt)] == prompt
    answer = rendered.input_ids[len(prompt) :]
    assert (
        tiny_tokenizer.decode(answer, skip_special_tokens=True).strip() == dialogue[-1]["content"]
    )
    # Trained labels are the input ids themselves (no shift here: the model shifts).
    trained = [
        (t, label) for t, label in zip(rendered.input_ids, rendered.labels) if label != IGNORE_INDEX
    ]
    assert all(t == label for t, label in trained)
    assert rendered.labels[len(prompt) :][: len(answer) - 1] == answer[: len(answer) - 1]


def test_cutoff_drops_oldest_pairs_keeps_system_and_last_answer(tiny_tokenizer):
    long_history = [{"role": "system", "content": "Be kind."}]
    for i in range(6):
        long_history += [
            {"role": "user", "content": f"message number {i} about work and sleep"},
            {"role": "assistant", "content": f"reply number {i}, tell me more"},
        ]
    full = render_conversation(tiny_tokenizer, long_history)
    cut = render_conversation(tiny_tokenizer, long_history, cutoff_len=len(full.input_ids) // 2)
    assert len(cut.input_ids) <= len(full.input_ids) // 2
    assert cut.dropped_pairs >= 3 and not cut.truncated
    text = tiny_tokenizer.decode(cut.input_ids)
    assert text.startswith("<|im_start|>system\nBe kind.")
    assert "reply number 5, tell me more<|im_end|>" in text
    assert "message number 0" not in text


def test_single_long_turn_truncated_from_its_start(tiny_tokenizer):
    dialogue = [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": "START " + "very long story " * 60 + "END"},
        {"role": "assistant", "content": "I hear you."},
    ]
    rendered = render_conversation(tiny_tokenizer, dialogue, cutoff_len=80)
    assert rendered.truncated and len(rendered.input_ids) <= 80
    text = tiny_tokenizer.decode(rendered.input_ids)
    assert "START" not in text and "END" in text and "Be kind." in text
    assert trained_text(tiny_tokenizer, rendered) == "I hear you.<|im_end|>"


def test_unknown_template_and_missing_template(tiny_tokenizer):
    with pytest.raises(TemplateError, match="unknown template 'vicuna'"):
        apply_template(tiny_tokenizer, "vicuna")
    tiny_tokenizer.chat_template = None
    with pytest.raises(TemplateError, match="no chat_template"):
        apply_template(tiny_tokenizer, None)


def test_template_card_mismatch_is_refused(tiny_tokenizer, tmp_path):
    save_template_card(tmp_path, tiny_tokenizer, "default", DEFAULT_SYSTEM_PROMPT)
    check_template(tiny_tokenizer, tmp_path)  # same template: fine
    apply_template(tiny_tokenizer, "llama3")
    with pytest.raises(TemplateError, match="trained with template 'default'"):
        check_template(tiny_tokenizer, tmp_path)
    with pytest.warns(UserWarning):
        check_template(tiny_tokenizer, tmp_path, allow_mismatch=True)


def test_with_system_keeps_existing_system():
    assert with_system(DIALOGUE)[0]["content"] == "You are kind."
    assert with_system(DIALOGUE[1:])[0]["content"] == DEFAULT_SYSTEM_PROMPT
