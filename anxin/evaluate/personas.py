"""The simulated clients' personas (data/personas.jsonl; the schema and rationale are in
data/personas.md): read, checked line by line, and chosen for a run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from anxin.errors import DataError

RISKS = ("none", "low", "high", "imminent")


class Persona(BaseModel):
    """One persona; every key is required (data/personas.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(pattern=r"^(zh|en)-(none|low|high|imminent)-\d{2}$")
    language: Literal["zh", "en"]
    risk: Literal["none", "low", "high", "imminent"]
    topic: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    disclosure: Literal["none", "direct", "indirect", "slang", "context_only"]
    profile: str = Field(min_length=1)
    opening: str = Field(min_length=1)
    style: str = Field(min_length=1)
    reveal: list[str] = Field(min_length=1)
    expected: list[str] = Field(min_length=1)
    notes: str = Field(min_length=1)


def load_personas(path: str | Path) -> list[Persona]:
    """Every persona of a JSONL file; a problem raises DataError as FILE:LINE: field: problem."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, None, "file", "not found (the bundled set is data/personas.jsonl)")
    personas, seen = [], set()
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            persona = Persona.model_validate(json.loads(line))
        except json.JSONDecodeError as error:
            raise DataError(path, number, "line", f"invalid JSON: {error.msg}") from None
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(map(str, first["loc"])) or "record"
            raise DataError(path, number, where, first["msg"]) from None
        if persona.id in seen:
            raise DataError(path, number, "id", f"duplicate id {persona.id}")
        if not persona.id.startswith(f"{persona.language}-{persona.risk}-"):
            raise DataError(path, number, "id", "must start with <language>-<risk>-")
        seen.add(persona.id)
        personas.append(persona)
    if not personas:
        raise DataError(path, None, "file", "no personas")
    return personas


def choose_personas(
    personas: list[Persona], limit: int | None = None, ids: list[str] | None = None
) -> list[Persona]:
    """The personas named by `ids` (in that order), or at most `limit` taken in turn from
    each risk level (none, low, high, imminent, none, ...) in file order, so a small run
    still spans the levels."""
    if ids:
        by_id = {p.id: p for p in personas}
        unknown = [i for i in ids if i not in by_id]
        if unknown:
            raise DataError("personas", None, "id", f"unknown: {', '.join(unknown)}")
        return [by_id[i] for i in ids]
    if limit is None or limit >= len(personas):
        return list(personas)
    queues = [[p for p in personas if p.risk == risk] for risk in RISKS]
    chosen: list[Persona] = []
    while len(chosen) < limit:
        for queue in queues:
            if queue and len(chosen) < limit:
                chosen.append(queue.pop(0))
    return chosen
