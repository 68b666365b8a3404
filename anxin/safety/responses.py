"""The fixed words anxin says when the model must not speak, and the help lines they give.

Every number lives in one data file, `anxin/resources/hotlines.json`, with the source of each
and the date it was last checked. To update it: check each number at its source, edit the
entry, set `last_checked`, run `pytest tests/test_safety_responses.py`. To use another list
without touching the package, set ANXIN_HOTLINES=/path/to/hotlines.json (same shape);
ANXIN_LOCALE picks the default locale (zh-CN, en-US, en-GB, ...).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import date
from functools import lru_cache
from pathlib import Path

HOTLINES_ENV = "ANXIN_HOTLINES"
LOCALE_ENV = "ANXIN_LOCALE"
PACKAGED_HOTLINES = Path(__file__).resolve().parent.parent / "resources" / "hotlines.json"
ENTRY_FIELDS = ("name", "number", "hours", "note")
LANGUAGES = ("zh", "en")


class HotlineFileError(ValueError):
    """A hotline file that cannot be trusted; the message names the file and the field."""


# --- the data file ------------------------------------------------------------------------------


def hotline_file_path() -> Path:
    override = os.environ.get(HOTLINES_ENV)
    return Path(override) if override else PACKAGED_HOTLINES


def load_hotline_file(path: str | Path | None = None) -> dict:
    """The whole validated file: `source`, `last_checked`, `locales` {locale: [entries]}."""
    return _load_validated(*_hotline_file_version(path))


def _hotline_file_version(path: str | Path | None = None) -> tuple[str, int]:
    """The hotline file's path and modification time: what caches built from it are keyed by."""
    path = Path(path) if path else hotline_file_path()
    try:
        return str(path), path.stat().st_mtime_ns
    except OSError as error:
        raise HotlineFileError(f"{path}: cannot read hotline file ({error.strerror})") from None


@lru_cache(maxsize=8)
def _load_validated(path: str, stamp: int) -> dict:  # stamp: reload when the file changes
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise HotlineFileError(f"{path}:{error.lineno}: not valid JSON ({error.msg})") from None
    _validate(data, path)
    return data


def _validate(data: object, path: str) -> None:
    def fail(field: str, problem: str) -> None:
        raise HotlineFileError(f"{path}: {field}: {problem}")

    if not isinstance(data, dict):
        fail("(top level)", "must be a JSON object")
    for key in ("source", "last_checked"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            fail(key, "missing or empty")
    try:
        date.fromisoformat(data["last_checked"])
    except ValueError:
        fail("last_checked", f"{data['last_checked']!r} is not a YYYY-MM-DD date")
    locales = data.get("locales")
    if not isinstance(locales, dict) or not locales:
        fail("locales", "must map each locale (e.g. zh-CN) to a list of hotlines")
    for locale, entries in locales.items():
        if not isinstance(entries, list) or not entries:
            fail(f"locales.{locale}", "must be a non-empty list")
        for i, entry in enumerate(entries):
            where = f"locales.{locale}[{i}]"
            if not isinstance(entry, dict):
                fail(where, "must be an object with name, number, hours, note")
            for key in ENTRY_FIELDS:
                if not isinstance(entry.get(key), str) or not entry[key].strip():
                    fail(f"{where}.{key}", "missing or empty")
            if not re.search(r"\d", entry["number"]):
                fail(f"{where}.number", f"{entry['number']!r} has no digits")
        if not any(not entry.get("emergency") for entry in entries):
            fail(
                f"locales.{locale}", "needs at least one help line that is not an emergency number"
            )
    for language, locale in (data.get("default_locale") or {}).items():
        if locale not in locales:
            fail(f"default_locale.{language}", f"{locale!r} is not one of the locales")
    regions = data.get("regions", {})
    if not isinstance(regions, dict):
        fail("regions", "must map a locale to the place its numbers work (zh-HK: 香港)")
    for locale, region in regions.items():
        if locale not in locales or not isinstance(region, str) or not region.strip():
            fail(f"regions.{locale}", "must name one of the locales and a place")


def resolve_locale(locale: str | None = None, language: str | None = None) -> str:
    """An exact locale if the file has it, else the default for its language (en_GB → en-GB)."""
    data = load_hotline_file()
    locales = data["locales"]
    wanted = (locale or os.environ.get(LOCALE_ENV) or "").replace("_", "-")
    for known in locales:
        if known.lower() == wanted.lower():
            return known
    language = (wanted.split("-")[0] if wanted else None) or language or "zh"
    defaults = data.get("default_locale") or {}
    if language in defaults:
        return defaults[language]
    for known in locales:
        if known.lower().split("-")[0] == language.lower():
            return known
    return next(iter(locales))


def load_hotlines(locale: str | None = None) -> dict:
    """Hotlines for one locale: {"locale", "source", "last_checked", "hotlines": [entries]}.

    `locale` may be a full locale (en-GB) or a language (zh, en); None uses ANXIN_LOCALE or zh.
    """
    data = load_hotline_file()
    resolved = resolve_locale(locale)
    return {
        "locale": resolved,
        "source": data["source"],
        "last_checked": data["last_checked"],
        "hotlines": [dict(entry) for entry in data["locales"][resolved]],
    }


def _lines_for(language: str, locale: str | None) -> tuple[list[dict], list[dict], list[dict]]:
    """(help lines, emergency numbers, help lines of other locales in the same language: the
    first of each, with `region` set where the file's `regions` names its place)."""
    data = load_hotline_file()
    resolved = resolve_locale(locale, language)
    entries = data["locales"][resolved]
    helplines = [e for e in entries if not e.get("emergency")]
    emergency = [e for e in entries if e.get("emergency")]
    prefix = resolved.split("-")[0]
    regions = data.get("regions", {})
    elsewhere = [
        {**entries_[0], "region": regions.get(other)}
        for other, entries_ in data["locales"].items()
        if other != resolved and other.split("-")[0] == prefix and not entries_[0].get("emergency")
    ]
    return helplines, emergency, elsewhere


def _where_zh(entry: dict) -> str:
    """Where another Chinese locale's line works (在香港拨打), else its note."""
    return f"在{entry['region']}拨打" if entry.get("region") else entry["note"]


def _language(language: str | None) -> str:
    return language if language in LANGUAGES else "zh"


# --- the words ------------------------------------------------------------------------------------


def crisis_response(
    language: str = "zh", locale: str | None = None, categories: Sequence[str] = ()
) -> str:
    """The fixed, warm message sent instead of the model's words when a crisis is detected."""
    language = _language(language)
    helplines, emergency, elsewhere = _lines_for(language, locale)
    if language == "en":
        return _crisis_en(helplines, emergency, elsewhere, set(categories))
    return _crisis_zh(helplines, emergency, elsewhere, set(categories))


def _crisis_zh(
    helplines: list[dict], emergency: list[dict], elsewhere: list[dict], categories: set[str]
) -> str:
    safety_line = "此刻最要紧的是你的安全。"
    if "abuse_danger" in categories:
        safety_line += (
            "如果你正处在危险中，请尽量去一个安全的地方（锁上门、去邻居家或人多的地方）。"
        )
    if "harm_others" in categories:
        safety_line += "如果你有伤害别人的冲动，请先离开那个人和那个地方，把手边危险的东西放下。"
    safety_line += "如果身边有可能伤到自己的东西，请先把它放远一些；可以的话，去有人在的地方，或者请一个信任的人来陪你。"
    lines = [
        "我听到了，你现在真的很痛苦。谢谢你愿意说出来，这需要很大的勇气。你不是一个人，也不必一个人扛着。",
        "",
        safety_line,
        "",
        "现在就可以拨打这些电话，会有人认真听你说：",
        *(f"· {e['name']}：{e['number']}（{e['hours']}）" for e in helplines),
        # the first line of each other Chinese locale (香港, 台湾, 中国大陆), saying where it works
        *(f"· {e['name']}：{e['number']}（{_where_zh(e)}）" for e in elsewhere),
    ]
    if emergency:
        numbers = "或 ".join(f"{e['number']}（{e['name']}）" for e in emergency)
        lines.append(f"如果你或身边的人有立即的危险，请马上拨打 {numbers}。")
    lines += ["", "我是 AI，不能代替专业的帮助，但我会在这里陪你。你现在在哪里？身边有人吗？"]
    return "\n".join(lines)


def _crisis_en(
    helplines: list[dict], emergency: list[dict], elsewhere: list[dict], categories: set[str]
) -> str:
    safety_line = "Right now, your safety matters most. "
    if "abuse_danger" in categories:
        safety_line += "If you are in danger, try to get somewhere safe: a locked room, a neighbour, a public place. "
    if "harm_others" in categories:
        safety_line += "If you feel you might hurt someone, step away from them and put anything dangerous down. "
    safety_line += (
        "If there is anything nearby you could hurt yourself with, please put it out of reach, "
        "and if you can, go to where other people are or ask someone you trust to stay with you."
    )
    lines = [
        "I'm really sorry you're in so much pain, and I'm glad you told me. That took courage. "
        "You don't have to carry this alone.",
        "",
        safety_line,
        "",
        "You can reach someone right now:",
        *(f"· {e['name']}: {e['number']} ({e['hours']}; {e['note']})" for e in helplines),
        *(f"· {e['name']}: {e['number']} ({e['note']})" for e in elsewhere),
    ]
    if emergency:
        numbers = " or ".join(e["number"] for e in emergency)
        lines.append(
            f"If you or someone else is in immediate danger, call {numbers} or your local emergency number now."
        )
    lines += [
        "",
        "I'm an AI and can't replace professional help, but I'm here and I'll keep listening. "
        "Are you somewhere safe right now?",
    ]
    return "\n".join(lines)


FOLLOWUPS_FILE = PACKAGED_HOTLINES.parent / "crisis_followups.json"


@lru_cache(maxsize=1)
def _followup_variants() -> dict[str, list[str]]:
    data = json.loads(FOLLOWUPS_FILE.read_text(encoding="utf-8"))
    variants = data.get("variants") or {}
    for language in LANGUAGES:
        texts = variants.get(language)
        if not texts or not all(isinstance(t, str) and "{helpline_number}" in t for t in texts):
            raise HotlineFileError(
                f"{FOLLOWUPS_FILE}: variants.{language}: every variant must name {{helpline_number}}"
            )
    return variants


def crisis_followup(language: str = "zh", turn: int = 1, locale: str | None = None) -> str:
    """The care layer's words for a later crisis turn of one conversation (`turn` 1 is the first
    follow-up): shorter than `crisis_response`, still asking about safety, one help line in
    view, and never the same text twice in a row."""
    language = _language(language)
    helplines, emergency, _ = _lines_for(language, locale)
    variants = _followup_variants()[language]
    urgent = (" / " if language == "zh" else " or ").join(e["number"] for e in emergency)
    return variants[(turn - 1) % len(variants)].format(
        helpline_name=helplines[0]["name"],
        helpline_number=helplines[0]["number"],
        emergency=urgent or helplines[0]["number"],
    )


def crisis_turns_so_far(messages: Sequence[dict], locale: str | None = None) -> int:
    """How many earlier assistant turns of this conversation were the care layer's crisis words
    (the full reply or a follow-up). Text is compared exactly: a reply that is not recognised
    counts as none, so the full crisis reply is given again, the safe side."""
    replies = [m.get("content", "").strip() for m in messages if m.get("role") == "assistant"]
    if not replies:
        return 0
    known = _crisis_words(locale or os.environ.get(LOCALE_ENV), *_hotline_file_version())
    return sum(reply in known for reply in replies)


@lru_cache(maxsize=8)
def _crisis_words(locale: str | None, path: str, stamp: int) -> frozenset[str]:
    """Every text the care layer sends at a crisis, built once per locale and hotline file
    (`path`, `stamp`: built again when it changes); building them on every message cost a
    tenth of the detector's time."""
    known = set()
    for language in LANGUAGES:
        for categories in (
            (),
            ("abuse_danger",),
            ("harm_others",),
            ("abuse_danger", "harm_others"),
        ):
            known.add(crisis_response(language, locale, categories).strip())
        for turn in range(1, len(_followup_variants()[language]) + 1):
            known.add(crisis_followup(language, turn, locale).strip())
    return frozenset(known)


def concern_footer(language: str = "zh", locale: str | None = None) -> str:
    """A short, gentle line the Engine appends to the model's reply at the concern level."""
    language = _language(language)
    helplines, _, _ = _lines_for(language, locale)
    if language == "en":
        first = helplines[0]
        return (
            "If things ever feel like too much, or you have thoughts of hurting yourself, "
            f"you can reach the {first['name']} at {first['number']} any time."
        )
    named = "，或".join(f"{e['name']} {e['number']}" for e in helplines[:2])
    return f"（如果你觉得快撑不住了，或者有伤害自己的念头，可以随时拨打{named}。）"


def disclaimer(language: str = "zh", locale: str | None = None) -> str:
    """Shown at the start of a chat, in the web UI and on the model card."""
    language = _language(language)
    helplines, emergency, _ = _lines_for(language, locale)
    first = helplines[0]
    urgent = " / ".join(e["number"] for e in emergency)
    if language == "en":
        return (
            "anxin is an AI companion, not a therapist or doctor; it cannot diagnose or prescribe. "
            f"If you are in danger or thinking of harming yourself, contact the {first['name']} "
            f"({first['number']})"
            + (f" or call {urgent} / your local emergency number." if urgent else ".")
        )
    return (
        "安心是 AI 陪伴，不是心理咨询师或医生，不能诊断或开药。"
        f"如果你有危险或想伤害自己，请拨打{first['name']} {first['number']}"
        + (f"，紧急情况请拨打 {urgent}。" if urgent else "。")
    )


def safe_replacement(language: str = "zh", locale: str | None = None) -> str:
    """What replaces a model reply that failed `check_reply`."""
    language = _language(language)
    helplines, emergency, _ = _lines_for(language, locale)
    urgent = " / ".join(e["number"] for e in emergency)
    if language == "en":
        first = helplines[0]
        return (
            "I'm sorry, I can't go into that (details like doses or ways people hurt themselves, "
            "or naming a diagnosis as if it were certain). Questions about medication or a "
            "diagnosis are best talked through with your doctor or psychiatrist. If you're having "
            f"thoughts of hurting yourself, please contact the {first['name']} ({first['number']})"
            + (f", or call {urgent} in an emergency" if urgent else "")
            + ". I'm still here, and I'd like to hear how you're feeling right now."
        )
    named = "，或".join(f"{e['name']} {e['number']}" for e in helplines[:2])
    return (
        "抱歉，这部分我不能回答（比如药物剂量、伤害自己的方式，或者替你下诊断）。"
        "用药和诊断的问题，请和你的医生或精神科医生当面讨论。"
        f"如果你现在有伤害自己的念头，请拨打{named}"
        + (f"，紧急情况请拨打 {urgent}" if urgent else "")
        + "。我还在这里，愿意继续听你说说现在的感受。"
    )


class _Disclaimers(Mapping[str, str]):
    """DISCLAIMER["zh"]: read from the hotline file each time, so an override applies."""

    def __getitem__(self, language: str) -> str:
        if language not in LANGUAGES:
            raise KeyError(language)
        return disclaimer(language)

    def __iter__(self) -> Iterator[str]:
        return iter(LANGUAGES)

    def __len__(self) -> int:
        return len(LANGUAGES)


DISCLAIMER: Mapping[str, str] = _Disclaimers()
