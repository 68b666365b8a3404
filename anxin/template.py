"""One chat template, end to end: the same rendering trains the model and prompts it later.

Rendering uses the tokenizer's own `chat_template`; `llama3` and `chatml` are built in for bases
without one. `render_conversation` returns `input_ids` and `labels`, with labels -100 on every
token that is not assistant content (the assistant's end-of-turn token *is* trained, or the model
never learns to stop). The template used for training is saved with every adapter and merged
model (`anxin_template.json`), and loading checks it.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from anxin.atomic import write_json
from anxin.errors import TemplateError

IGNORE_INDEX = -100
TEMPLATE_CARD = "anxin_template.json"

# The counsellor persona used whenever a conversation has no system message: in training data
# and at chat time alike, so the model sees the same prefix in both.
DEFAULT_SYSTEM_PROMPT = (
    "你是安心，一位温暖、耐心的心理支持陪伴者。请先倾听和理解对方的感受，用简短、真诚的话回应；"
    "一次只问一个开放性的问题；不做诊断，不给药物建议，不说教。"
    "如果对方提到伤害自己或他人的想法，请认真对待，关心对方此刻的安全，并建议联系专业帮助。"
)

# Meta-Llama-3-Instruct's template, as shipped with the model.
LLAMA3 = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    " + message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

BUILTIN_TEMPLATES = {"llama3": LLAMA3, "chatml": CHATML}
# `default` (or no template) means: the tokenizer's own chat_template.
TEMPLATE_ALIASES = {None: "default", "": "default", "auto": "default", "smollm2": "default"}


def apply_template(tokenizer, template: str | None = "default") -> str:
    """Set `tokenizer.chat_template` from a template name; return the resolved name."""
    name = TEMPLATE_ALIASES.get(template, template)
    if name == "default":
        if not tokenizer.chat_template:
            raise TemplateError(
                "this tokenizer has no chat_template; choose one with template: "
                + " or ".join(BUILTIN_TEMPLATES)
            )
        return name
    if name not in BUILTIN_TEMPLATES:
        known = ", ".join(["default", *BUILTIN_TEMPLATES])
        raise TemplateError(f"unknown template '{template}'; choose one of: {known}")
    tokenizer.chat_template = BUILTIN_TEMPLATES[name]
    return name


def with_system(messages: list[dict], system_prompt: str | None = DEFAULT_SYSTEM_PROMPT):
    """Prepend the persona unless the conversation brings its own system message."""
    if system_prompt and (not messages or messages[0]["role"] != "system"):
        return [{"role": "system", "content": system_prompt}, *messages]
    return list(messages)


def _render_text(tokenizer, messages: list[dict], generation_prompt: bool) -> str:
    if not messages:
        return ""
    return tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=generation_prompt
    )


def _encode(tokenizer, text: str) -> list[int]:
    # The template text already holds every special token (bos included where the template
    # puts it), so the tokenizer must not add its own.
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def end_of_turn_id(tokenizer) -> int:
    """The special token the template closes an assistant turn with (<|im_end|>, <|eot_id|>)."""
    sentinel = "ANXIN_SENTINEL"
    text = _render_text(
        tokenizer,
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": sentinel}],
        False,
    )
    after = text[text.index(sentinel) + len(sentinel) :]
    special = set(tokenizer.all_special_ids)
    for token_id in _encode(tokenizer, after):
        if token_id in special:
            return token_id
    if tokenizer.eos_token_id is None:
        raise TemplateError("cannot find the template's end-of-turn token")
    return tokenizer.eos_token_id


def stop_token_ids(tokenizer) -> list[int]:
    """Generation stops at the end-of-turn token, and at eos when it differs."""
    ids = [end_of_turn_id(tokenizer)]
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


def render_prompt(tokenizer, messages: list[dict]) -> list[int]:
    """The inference prompt: the conversation so far plus the assistant's header."""
    return _encode(tokenizer, _render_text(tokenizer, messages, True))


@dataclass
class Rendered:
    input_ids: list[int]
    labels: list[int]
    dropped_pairs: int = 0  # oldest user/assistant pairs dropped to fit cutoff_len
    truncated: bool = False  # a single turn was cut to fit
    trained_tokens: int = field(init=False)

    def __post_init__(self):
        self.trained_tokens = sum(1 for label in self.labels if label != IGNORE_INDEX)


def _segments(tokenizer, messages: list[dict]) -> tuple[list[int], list[int]]:
    """Tokenise turn by turn: prompt pieces get -100, assistant answers (to end-of-turn) train."""
    eot = end_of_turn_id(tokenizer)
    input_ids: list[int] = []
    labels: list[int] = []
    rendered = ""
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = _render_text(tokenizer, messages[:i], True)
        full = _render_text(tokenizer, messages[: i + 1], False)
        if not prompt.startswith(rendered) or not full.startswith(prompt):
            raise TemplateError(
                "the chat template does not render prefixes consistently; "
                "cannot align training labels with inference prompts"
            )
        prompt_ids = _encode(tokenizer, prompt[len(rendered) :])
        answer_ids = _encode(tokenizer, full[len(prompt) :])
        input_ids += prompt_ids
        labels += [IGNORE_INDEX] * len(prompt_ids)
        # Train the answer through its end-of-turn token; the template's glue after it
        # (ChatML's newline) belongs to the next prompt and stays masked.
        trained = answer_ids.index(eot) + 1 if eot in answer_ids else len(answer_ids)
        input_ids += answer_ids
        labels += answer_ids[:trained] + [IGNORE_INDEX] * (len(answer_ids) - trained)
        rendered = full
    return input_ids, labels


def render_conversation(tokenizer, messages: list[dict], cutoff_len: int | None = None):
    """Token ids and labels for training on one conversation (see module doc).

    A conversation longer than `cutoff_len` loses its oldest whole user/assistant pairs, never
    the system prompt and never the last assistant turn. If the last exchange alone is still
    too long, the user's message is cut from its start, then the answer from its end.
    """
    system = messages[:1] if messages and messages[0]["role"] == "system" else []
    turns = messages[len(system) :]
    dropped = 0
    input_ids, labels = _segments(tokenizer, messages)
    while cutoff_len and len(input_ids) > cutoff_len and len(turns) > 2:
        turns = turns[2:]
        dropped += 1
        input_ids, labels = _segments(tokenizer, system + turns)
    if cutoff_len and len(input_ids) > cutoff_len:
        input_ids, labels = _truncate_last_exchange(tokenizer, system, turns, cutoff_len)
        return Rendered(input_ids, labels, dropped, truncated=True)
    return Rendered(input_ids, labels, dropped)


def _truncate_last_exchange(tokenizer, system, turns, cutoff_len):
    user, answer = dict(turns[0]), dict(turns[1])

    def fits(u: str, a: str):
        ids, labels = _segments(
            tokenizer, system + [{**user, "content": u}, {**answer, "content": a}]
        )
        return (ids, labels) if len(ids) <= cutoff_len else None

    def longest(text: str, build) -> tuple | None:
        # Binary search for the longest piece of `text` that still fits.
        lo, hi, best = 0, len(text), None
        while lo <= hi:
            mid = (lo + hi) // 2
            result = build(mid)
            if result:
                best, lo = result, mid + 1
            else:
                hi = mid - 1
        return best

    content = user["content"]
    best = longest(content, lambda n: fits(content[len(content) - n :], answer["content"]))
    if best is None:
        reply = answer["content"]
        best = longest(reply, lambda n: fits("", reply[:n]))
    if best is None:
        raise TemplateError(f"cutoff_len={cutoff_len} is too small for even an empty exchange")
    return best


# --- saving and checking the template with a model or adapter ---------------------------------


def template_fingerprint(tokenizer) -> str:
    return hashlib.sha256((tokenizer.chat_template or "").encode("utf-8")).hexdigest()[:16]


def save_template_card(folder: str | Path, tokenizer, name: str, system_prompt: str | None):
    """Record which template (and persona) trained this model, beside the tokenizer files."""
    write_json(
        Path(folder) / TEMPLATE_CARD,
        {
            "template": name,
            "chat_template_sha256": template_fingerprint(tokenizer),
            "system_prompt": system_prompt,
            "end_of_turn_token": tokenizer.convert_ids_to_tokens(end_of_turn_id(tokenizer)),
        },
    )


def read_template_card(folder: str | Path | None) -> dict | None:
    if folder is None:
        return None
    card = Path(folder) / TEMPLATE_CARD
    return json.loads(card.read_text(encoding="utf-8")) if card.is_file() else None


def check_template(tokenizer, folder: str | Path | None, allow_mismatch: bool = False) -> None:
    """Refuse to chat with a different template than the one the model was trained with."""
    card = read_template_card(folder)
    if card is None or card["chat_template_sha256"] == template_fingerprint(tokenizer):
        return
    message = (
        f"{folder}: trained with template '{card['template']}' but the tokenizer now renders a "
        "different chat template; answers will suffer. Use the tokenizer saved with the model, "
        "or pass --allow-template-mismatch."
    )
    if not allow_mismatch:
        raise TemplateError(message)
    warnings.warn(message, stacklevel=2)
