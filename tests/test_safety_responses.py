"""The hotline data file and the fixed words built from it."""

import json
import os
from datetime import date

import pytest

from anxin.safety import (
    DISCLAIMER,
    HotlineFileError,
    check_reply,
    concern_footer,
    crisis_response,
    disclaimer,
    load_hotline_file,
    load_hotlines,
    safe_replacement,
)
from anxin.safety.responses import PACKAGED_HOTLINES


@pytest.fixture(autouse=True)
def packaged_defaults(monkeypatch):
    monkeypatch.delenv("ANXIN_HOTLINES", raising=False)
    monkeypatch.delenv("ANXIN_LOCALE", raising=False)


def numbers(locale):
    return {entry["number"] for entry in load_hotlines(locale)["hotlines"]}


def test_packaged_file_has_the_documented_structure():
    data = json.loads(PACKAGED_HOTLINES.read_text(encoding="utf-8"))
    assert data["source"].strip() and data["how_to_update"].strip()
    assert date.fromisoformat(data["last_checked"]) == date(2026, 12, 7)
    for locale, entries in data["locales"].items():
        assert entries, locale
        for entry in entries:
            assert {"name", "number", "hours", "note"} <= set(entry), (locale, entry)
            assert all(isinstance(entry[key], str) and entry[key] for key in ("name", "number"))
    assert load_hotline_file() == data


def test_the_issue_numbers_are_present():
    assert {"12356", "400-161-9995", "010-82951332", "120", "110"} <= numbers("zh-CN")
    assert {"988", "911"} <= numbers("en-US")
    assert "116 123" in numbers("en-GB")
    assert {"2389 2222", "2382 0000", "2896 0000", "999"} <= numbers("zh-HK")
    assert {"1925", "1995", "119", "110"} <= numbers("zh-TW")


@pytest.mark.parametrize(
    "locale,own,elsewhere",
    [
        ("zh-CN", "12356", {"2389 2222": "在香港拨打", "1925": "在台湾拨打"}),
        ("zh-HK", "2389 2222", {"12356": "在中国大陆拨打", "1925": "在台湾拨打"}),
    ],
)
def test_a_chinese_crisis_reply_also_names_the_other_chinese_regions_first_line(
    locale, own, elsewhere
):
    """A reader in Hong Kong or Taiwan gets a number that works where they are, whichever
    Chinese locale the server runs with; the file's `regions` says where each one works."""
    text = crisis_response("zh", locale)
    assert own in text
    for number, where in elsewhere.items():
        assert f"{number}（{where}）" in text


@pytest.mark.parametrize(
    "asked,locale",
    [(None, "zh-CN"), ("zh", "zh-CN"), ("en", "en-US"), ("en-GB", "en-GB"), ("en_gb", "en-GB")],
)
def test_locales_resolve_from_languages_and_spellings(asked, locale):
    hotlines = load_hotlines(asked)
    assert hotlines["locale"] == locale
    assert hotlines["last_checked"] and hotlines["source"]


def test_locale_env_sets_the_default(monkeypatch):
    monkeypatch.setenv("ANXIN_LOCALE", "en-GB")
    assert load_hotlines()["locale"] == "en-GB"


def write_hotlines(path, **changes):
    data = json.loads(PACKAGED_HOTLINES.read_text(encoding="utf-8"))
    data.update(changes)
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return data


def test_env_override_replaces_the_numbers_everywhere(tmp_path, monkeypatch):
    custom = tmp_path / "hotlines.json"
    data = write_hotlines(custom)
    data["locales"]["zh-CN"][0]["number"] = "999-0000"
    custom.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    monkeypatch.setenv("ANXIN_HOTLINES", str(custom))
    assert "999-0000" in crisis_response("zh")
    assert "999-0000" in concern_footer("zh") and "999-0000" in disclaimer("zh")


@pytest.mark.parametrize(
    "change,field",
    [
        ({"last_checked": "30/11/2026"}, "last_checked"),
        ({"source": ""}, "source"),
        ({"locales": {"zh-CN": []}}, "locales.zh-CN"),
        ({"locales": {"zh-CN": [{"name": "x", "number": "12356", "hours": "24h"}]}}, "note"),
        ({"regions": {"zh-MO": "澳门"}}, "regions.zh-MO"),
        ({"regions": ["香港"]}, "regions"),
    ],
)
def test_a_broken_file_is_refused_naming_the_field(tmp_path, monkeypatch, change, field):
    bad = tmp_path / "bad.json"
    write_hotlines(bad, **change)
    monkeypatch.setenv("ANXIN_HOTLINES", str(bad))
    with pytest.raises(HotlineFileError, match=rf"bad\.json: .*{field}"):
        crisis_response("zh")


def test_unreadable_json_names_the_file_and_line(tmp_path, monkeypatch):
    bad = tmp_path / "broken.json"
    bad.write_text('{\n  "source": \n', encoding="utf-8")
    monkeypatch.setenv("ANXIN_HOTLINES", str(bad))
    with pytest.raises(HotlineFileError, match=r"broken\.json:\d+: not valid JSON"):
        load_hotlines()


def test_chinese_crisis_message_is_warm_and_gives_every_line():
    text = crisis_response("zh")
    for number in ("12356", "400-161-9995", "010-82951332", "120", "110"):
        assert number in text
    assert "痛苦" in text and "安全" in text and "不是一个人" in text


def test_english_crisis_message_gives_988_and_emergency_numbers():
    text = crisis_response("en")
    assert "988" in text and "911" in text and "local emergency number" in text
    assert "116 123" in text  # Samaritans, for English speakers outside the US
    assert "12356" not in text


def test_crisis_message_adds_a_line_for_danger_from_others():
    assert "安全的地方" in crisis_response("zh", categories=["abuse_danger"])
    assert "step away" in crisis_response("en", categories=["harm_others"])


def test_unknown_language_falls_back_to_chinese():
    assert "12356" in crisis_response("fr")


def test_footer_disclaimer_and_replacement_name_a_line():
    assert "12356" in concern_footer("zh") and len(concern_footer("zh")) < 80
    assert "988" in concern_footer("en")
    assert "不是心理咨询师" in disclaimer("zh") and "12356" in disclaimer("zh")
    assert "not a therapist" in disclaimer("en") and "988" in disclaimer("en")
    assert DISCLAIMER["zh"] == disclaimer("zh") and set(DISCLAIMER) == {"zh", "en"}
    assert "12356" in safe_replacement("zh") and "988" in safe_replacement("en")


@pytest.mark.parametrize("language", ["zh", "en"])
def test_our_own_words_pass_the_reply_check(language):
    for text in (
        crisis_response(language),
        concern_footer(language),
        disclaimer(language),
        safe_replacement(language),
    ):
        assert check_reply(text, language).ok, text


@pytest.mark.parametrize("language", ["zh", "en"])
def test_crisis_follow_ups_keep_a_help_line_ask_about_safety_and_rotate(language):
    from anxin.safety.responses import crisis_followup, crisis_turns_so_far

    full = crisis_response(language)
    first_line = load_hotlines(language)["hotlines"][0]["number"]
    follow_ups = [crisis_followup(language, turn) for turn in range(1, 4)]
    for text in follow_ups:
        assert first_line in text and "{" not in text
        assert "?" in text or "？" in text
        assert len(text) < len(full)
    assert len(set(follow_ups)) == 3 and crisis_followup(language, 4) == follow_ups[0]
    history = [
        {"role": "user", "content": "x"},
        {"role": "assistant", "content": full},
        {"role": "user", "content": "y"},
        {"role": "assistant", "content": follow_ups[0]},
        {"role": "assistant", "content": "something the model said"},
    ]
    assert crisis_turns_so_far(history) == 2


def test_crisis_turns_are_recognised_after_the_hotline_file_or_the_locale_changes(
    tmp_path, monkeypatch
):
    from anxin.safety.responses import crisis_turns_so_far

    data = json.loads(PACKAGED_HOTLINES.read_text(encoding="utf-8"))
    custom = tmp_path / "hotlines.json"
    custom.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    monkeypatch.setenv("ANXIN_HOTLINES", str(custom))
    before = [{"role": "assistant", "content": crisis_response("zh")}]
    assert crisis_turns_so_far(before) == 1
    data["locales"]["zh-CN"][0]["number"] = "400-161-9995"
    custom.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    stamp = custom.stat().st_mtime_ns + 1_000_000_000  # a later edit, however coarse the clock
    os.utime(custom, ns=(stamp, stamp))
    after = [{"role": "assistant", "content": crisis_response("zh")}]
    assert "400-161-9995" in after[0]["content"]
    assert crisis_turns_so_far(after) == 1 and crisis_turns_so_far(before) == 0
    monkeypatch.setenv("ANXIN_LOCALE", "en-GB")
    assert crisis_turns_so_far([{"role": "assistant", "content": crisis_response("en")}]) == 1
