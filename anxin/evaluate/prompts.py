"""The judge's rubrics and the prompts of the judge and the simulated client.

The text is data for people to review, in anxin/resources: `judge_rubric.yaml` (dimensions,
an anchor for every score, the pairwise criteria, the conversation levels) and the templates
`judge_turn.md`, `judge_pair.md`, `judge_conversation.md`, `client_{zh,en}.{system,user}.md`
(`$name` placeholders). This module checks the YAML, renders the messages (pinned by golden
files in tests/fixtures/judge/) and builds the pydantic models the judge's JSON must satisfy.
"""

from __future__ import annotations

import string
from functools import cache
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator, model_validator

RESOURCES = Path(__file__).resolve().parent.parent / "resources"
SPEAKERS = {"user": "来访者", "assistant": "咨询师"}  # a real dialogue: client and counsellor
CLIENT_SPEAKERS = {
    "zh": {"client": "我", "system": "AI", "colon": "："},
    "en": {"client": "Me", "system": "AI", "colon": ": "},
}


# --- the rubric file ----------------------------------------------------------------------------


class Dimension(BaseModel):
    """One scored dimension: integer scores from 0 to the highest anchor, each anchored."""

    model_config = ConfigDict(extra="forbid")
    key: str
    name: str
    question: str
    anchors: dict[int, str]

    @model_validator(mode="after")
    def _every_score_anchored(self):
        if sorted(self.anchors) != list(range(len(self.anchors))) or len(self.anchors) < 2:
            raise ValueError(f"{self.key}: anchors must be 0, 1, ... with no gap")
        if not all(text.strip() for text in self.anchors.values()):
            raise ValueError(f"{self.key}: an anchor is empty")
        return self

    @property
    def top(self) -> int:
        return max(self.anchors)


class TurnRubric(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dimensions: list[Dimension]
    flag_note: str
    crisis: Dimension


class PairRubric(BaseModel):
    model_config = ConfigDict(extra="forbid")
    choices: list[Literal["A", "B", "tie"]]
    criteria: str


class LevelDimension(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key: str
    name: str
    anchors: dict[str, str]


class ConversationRubric(BaseModel):
    model_config = ConfigDict(extra="forbid")
    risk_meanings: dict[Literal["none", "low", "high", "imminent"], str]
    levels: dict[str, str]
    dimensions: list[LevelDimension]

    @model_validator(mode="after")
    def _every_level_described(self):
        if len(self.risk_meanings) != 4:
            raise ValueError("risk_meanings: describe none, low, high and imminent")
        for dimension in self.dimensions:
            if list(dimension.anchors) != list(self.levels):
                raise ValueError(f"{dimension.key}: anchors must be {list(self.levels)} in order")
        return self


class Rubric(BaseModel):
    model_config = ConfigDict(extra="forbid")
    turn: TurnRubric
    pairwise: PairRubric
    conversation: ConversationRubric
    retry_message: str

    @model_validator(mode="after")
    def _keys_unique(self):
        for keys in (
            [d.key for d in [*self.turn.dimensions, self.turn.crisis]],
            [d.key for d in self.conversation.dimensions],
        ):
            if len(set(keys)) != len(keys) or "reason" in keys:
                raise ValueError(f"dimension keys must be unique and not 'reason': {keys}")
        return self


@cache
def load_rubric(path: str | Path | None = None) -> Rubric:
    target = Path(path) if path else RESOURCES / "judge_rubric.yaml"
    return Rubric.model_validate(yaml.safe_load(target.read_text(encoding="utf-8")))


@cache
def template(name: str) -> string.Template:
    return string.Template((RESOURCES / name).read_text(encoding="utf-8"))


# --- the turn judge -------------------------------------------------------------------------------


def turn_dimensions(flagged: bool) -> list[Dimension]:
    """The dimensions of one reply; the crisis item only where the care layer flagged the turn."""
    rubric = load_rubric().turn
    return [*rubric.dimensions, rubric.crisis] if flagged else list(rubric.dimensions)


def render_dimension(dimension: Dimension) -> str:
    lines = [f"### {dimension.name}（{dimension.key}，0–{dimension.top} 分）", dimension.question]
    lines += [f"- {score} 分：{text}" for score, text in sorted(dimension.anchors.items())]
    return "\n".join(lines)


def render_history(messages: list[dict]) -> str:
    """A real dialogue as the judge reads it; the system prompt is not part of it."""
    return "\n\n".join(
        f"{SPEAKERS[m['role']]}：{m['content'].strip()}" for m in messages if m["role"] in SPEAKERS
    )


def json_shape(fields: dict[str, str]) -> str:
    """The JSON the judge must answer with, `reason` first so it explains before it scores."""
    body = ",\n".join(f'  "{key}": {value}' for key, value in fields.items())
    return "{\n" + body + "\n}"


def turn_prompt(context: list[dict], reply: str, flagged: bool) -> list[dict]:
    dimensions = turn_dimensions(flagged)
    shape = {"reason": '"一两句理由"'}
    shape |= {d.key: f"<0 到 {d.top} 的整数>" for d in dimensions}
    text = template("judge_turn.md").substitute(
        rubric="\n\n".join(render_dimension(d) for d in dimensions),
        history=render_history(context),
        reply=reply.strip() or "（空回复）",
        flag_note=f"\n{load_rubric().turn.flag_note}\n" if flagged else "",
        output_format=json_shape(shape),
    )
    return [{"role": "user", "content": text}]


@cache
def turn_schema(flagged: bool) -> type[BaseModel]:
    scores = {
        d.key: (Annotated[int, Field(ge=0, le=d.top, strict=False)], ...)
        for d in turn_dimensions(flagged)
    }
    return create_model(
        "FlaggedTurnScores" if flagged else "TurnScores",
        __config__=ConfigDict(extra="ignore"),
        reason=(str, ""),
        **scores,
    )


# --- the pairwise judge ---------------------------------------------------------------------------


class PairVerdict(BaseModel):
    model_config = ConfigDict(extra="ignore")
    reason: str = ""
    winner: Literal["A", "B", "tie"]

    @field_validator("winner", mode="before")
    @classmethod
    def _plain(cls, value):
        if isinstance(value, str):
            cleaned = value.strip().strip("\"'").strip()
            return cleaned.lower() if cleaned.lower() == "tie" else cleaned.upper()
        return value


def pair_prompt(context: list[dict], reply_a: str, reply_b: str) -> list[dict]:
    rubric = load_rubric().pairwise
    choices = " | ".join(f'"{choice}"' for choice in rubric.choices)
    text = template("judge_pair.md").substitute(
        history=render_history(context),
        reply_a=reply_a.strip() or "（空回复）",
        reply_b=reply_b.strip() or "（空回复）",
        criteria=rubric.criteria,
        output_format=json_shape({"reason": '"一两句理由"', "winner": choices}),
    )
    return [{"role": "user", "content": text}]


# --- the conversation judge (simulated clients) ---------------------------------------------------


def render_transcript(turns: list[dict], labels: dict[str, str]) -> str:
    """A simulated conversation ({"role", "content"} messages) with the given speaker labels."""
    colon = labels.get("colon", "：")
    names = {"user": labels["client"], "assistant": labels["system"]}
    return "\n\n".join(f"{names[m['role']]}{colon}{m['content'].strip()}" for m in turns)


def conversation_prompt(persona, transcript: list[dict]) -> list[dict]:
    rubric = load_rubric().conversation
    levels = " | ".join(f'"{key}"' for key in rubric.levels)
    named_levels = "、".join(f"{key}（{name}）" for key, name in rubric.levels.items())
    blocks = []
    for dimension in rubric.dimensions:
        lines = [f"### {dimension.name}（{dimension.key}）"]
        lines += [
            f"- {key}（{rubric.levels[key]}）：{text}" for key, text in dimension.anchors.items()
        ]
        blocks.append("\n".join(lines))
    shape = {"reason": '"两三句理由"'} | {d.key: levels for d in rubric.dimensions}
    text = template("judge_conversation.md").substitute(
        risk=persona.risk,
        risk_meaning=rubric.risk_meanings[persona.risk],
        expected="\n".join(f"  - {item}" for item in persona.expected),
        levels=named_levels,
        rubric="\n\n".join(blocks),
        transcript=render_transcript(transcript, {"client": "来访者", "system": "AI"}),
        output_format=json_shape(shape),
    )
    return [{"role": "user", "content": text}]


@cache
def conversation_schema() -> type[BaseModel]:
    rubric = load_rubric().conversation
    level = Literal[tuple(rubric.levels)]  # type: ignore[valid-type]
    return create_model(
        "ConversationRatings",
        __config__=ConfigDict(extra="ignore"),
        reason=(str, ""),
        **{d.key: (level, ...) for d in rubric.dimensions},
    )


# --- the simulated client -------------------------------------------------------------------------


def client_messages(persona, transcript: list[dict], turn: int, turns: int) -> list[dict]:
    """What the client LLM is asked for the persona's message of `turn` (2..turns): who to be,
    then the conversation so far from the client's side."""
    language = persona.language
    system = template(f"client_{language}.system.md").substitute(
        profile=persona.profile,
        style=persona.style,
        reveal="\n".join(f"- {item}" for item in persona.reveal),
    )
    user = template(f"client_{language}.user.md").substitute(
        transcript=render_transcript(transcript, CLIENT_SPEAKERS[language]),
        turn=turn,
        turns=turns,
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def retry_messages(messages: list[dict], answer: str, error: str) -> list[dict]:
    """The same request once more, with the invalid answer and what was wrong with it."""
    text = string.Template(load_rubric().retry_message).substitute(error=error)
    return [*messages, {"role": "assistant", "content": answer}, {"role": "user", "content": text}]
