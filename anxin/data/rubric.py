"""Check counselling dialogues against the structural part of anxin's writing rubric.

The rubric itself is written out in data/README.md. This module checks what a machine can
check reliably: the shape of each dialogue, the length of the counsellor's turns, repeats
across the file, the number of questions per turn, phrases the counsellor must never use,
and that a crisis dialogue gives a help line. Warmth and good judgement still need a reader.

Usage from the shell::

    python -m anxin.data.rubric data/anxin_sample.jsonl
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable
from pathlib import Path

MIN_EXCHANGES, MAX_EXCHANGES = 2, 8
# Bounds on one assistant turn, in characters. The writing target is 50..220 Chinese characters;
# the check is looser so that it flags only turns that are clearly broken or clearly a lecture.
TURN_LENGTH = {"zh": (20, 400), "en": (10, 1200)}
MAX_QUESTION_MARKS = 2  # one open question, plus room for a rhetorical one
CJK_SHARE_FOR_ZH = 0.3

# Every number a crisis dialogue may give: the help lines anxin's care layer names, and the
# emergency numbers. The lookarounds keep "120" from matching inside a longer number.
HELP_NUMBERS = re.compile(
    r"(?<![\d-])(12356|400-?161-?9995|010-?82951332|988|120|110|911)(?![\d-])"
)

_DRUGS_ZH = (
    r"(舍曲林|氟西汀|帕罗西汀|艾司西酞普兰|西酞普兰|文拉法辛|度洛西汀|米氮平|安非他酮|"
    r"阿普唑仑|劳拉西泮|氯硝西泮|地西泮|艾司唑仑|唑吡坦|右佐匹克隆|佐匹克隆|思诺思|"
    r"奥氮平|喹硫平|阿立哌唑|碳酸锂|丙戊酸|褪黑素|安眠药|安定片|抗抑郁药|镇静剂)"
)
_DRUGS_EN = (
    r"(sertraline|zoloft|fluoxetine|prozac|paroxetine|escitalopram|lexapro|citalopram|"
    r"venlafaxine|duloxetine|mirtazapine|bupropion|alprazolam|xanax|lorazepam|ativan|"
    r"clonazepam|diazepam|valium|zolpidem|ambien|quetiapine|lithium|melatonin|"
    r"sleeping pills?|antidepressants?|benzos?)"
)
_AMOUNT = r"(\d+(\.\d+)?|[一二两三四五六七八九十半几]+)\s*(毫克|mg|微克|片|粒|颗|瓶|盒)"
# A negation just before "你" turns a diagnosis into a reassurance ("这不代表你有抑郁症").
_NOT_A_DIAGNOSIS = r"(?<!不代表)(?<!不等于)(?<!不是说)(?<!不意味着)(?<!并不是)"
_DISORDERS_EN = (
    r"(clinical depression|depression|an? anxiety disorder|anxiety disorder|a panic disorder|"
    r"panic disorder|bipolar( disorder)?|ptsd|ocd|an eating disorder|insomnia disorder)"
)

# The rubric's forbidden content, as (name, pattern, message). Applied to assistant turns only:
# a person may say anything; the counsellor may not.
FORBIDDEN_IN_ASSISTANT: list[tuple[str, re.Pattern[str], str]] = [
    (
        "dose",
        re.compile(r"(?<![\d-])\d+(\.\d+)?\s*(毫克|mg|微克|mcg)|(?<![\d-])\d+\s*(片|粒)(?![\d-])"),
        "gives a dose or pill count (no medication amounts)",
    ),
    (
        "dose_en",
        re.compile(r"\b\d+(\.\d+)?\s*(milligrams?|pills?|tablets?|capsules?)\b", re.IGNORECASE),
        "gives a dose or pill count (no medication amounts)",
    ),
    (
        "drug_with_amount",
        re.compile(
            _DRUGS_ZH
            + r"[^。！？\n]{0,12}(吃|服用|服|加到|减到|加量|减量)[^。！？\n]{0,6}"
            + _AMOUNT
        ),
        "names a drug with an amount to take (no medication advice)",
    ),
    (
        "drug_suggested",
        re.compile(
            r"(可以|不妨|试试|建议|要不|先)[^，。！？,\n]{0,6}(吃|服用|服下|用点)[^，。！？,\n]{0,4}"
            + _DRUGS_ZH
        ),
        "suggests taking a drug (no medication advice; refer to a doctor)",
    ),
    (
        "drug_suggested_en",
        re.compile(
            r"\b(try|take|taking|start on|you could use|up your)\s+(some\s+|a\s+|an\s+)?"
            + _DRUGS_EN,
            re.IGNORECASE,
        ),
        "suggests taking a drug (no medication advice; refer to a doctor)",
    ),
    (
        "diagnosis",
        re.compile(
            _NOT_A_DIAGNOSIS + r"你(这)?(就)?是(得了|患有|患上了|有)?[^，。！？,.!?\s]{0,8}症(?!状)"
            r"|" + _NOT_A_DIAGNOSIS + r"你(得了|患有|患上了|有)[^，。！？,.!?\s]{0,6}"
            r"(抑郁|焦虑|强迫|恐慌|躁郁|双相|创伤后应激|失眠|进食)(症|障碍)"
        ),
        "states a diagnosis as fact (no diagnosis; suggest a professional assessment)",
    ),
    (
        "diagnosis_en",
        re.compile(
            r"(?<!not that )(?<!doesn't mean )(?<!does not mean )(?<!whether )(?<!if )"
            r"\byou(('ve| have) got| have| are suffering from| suffer from)\s+"
            + _DISORDERS_EN
            + r"\b"
            r"|\byou('re| are) (clinically )?depressed\b",
            re.IGNORECASE,
        ),
        "states a diagnosis as fact (no diagnosis; suggest a professional assessment)",
    ),
    (
        "moralising",
        re.compile(
            r"想开[点些一]|看开[点些一]|你应该感恩|要懂得感恩|要知足|别矫情|不要矫情|太矫情|"
            r"别想太多|比你惨的人|你要坚强|男子汉.{0,4}哭|有什么好难过"
        ),
        "moralises or dismisses (reflect and validate instead)",
    ),
    (
        "moralising_en",
        re.compile(
            r"\bjust (think|stay|be) positive\b|\blook on the bright side\b|\bothers have it worse\b"
            r"|\byou should be grateful\b|\bjust get over it\b|\bsnap out of it\b|\bcheer up\b"
            r"|\bit could be worse\b",
            re.IGNORECASE,
        ),
        "moralises or dismisses (reflect and validate instead)",
    ),
]

# Words in quotation marks are reported speech: the counsellor may name what someone else said
# (他说“别想太多”, "she told you to just get over it") without saying it. Doses and drug advice
# stay forbidden even in quotes.
QUOTED = re.compile(r"“[^”]*”|‘[^’]*’|「[^」]*」|『[^』]*』|\"[^\"\n]*\"")
RULES_ALLOWED_IN_QUOTES = {"diagnosis", "diagnosis_en", "moralising", "moralising_en"}


def record_name(record: dict, index: int) -> str:
    """The id used in problem strings; falls back to the record's position (1-based)."""
    rid = record.get("id")
    return str(rid) if rid else f"record {index + 1}"


def record_language(record: dict) -> str:
    """'zh' or 'en': the record's own `language`, else guessed from the share of CJK characters."""
    language = str(record.get("language") or "").lower()
    if language.startswith("zh"):
        return "zh"
    if language.startswith("en"):
        return "en"
    text = "".join(m.get("content", "") for m in messages_of(record) if isinstance(m, dict))
    letters = [ch for ch in text if not ch.isspace()]
    cjk = sum(1 for ch in letters if "\u4e00" <= ch <= "\u9fff")
    return "zh" if letters and cjk / len(letters) >= CJK_SHARE_FOR_ZH else "en"


def messages_of(record: dict) -> list:
    messages = record.get("messages")
    return messages if isinstance(messages, list) else []


def normalise(text: str) -> str:
    """Whitespace-insensitive form, so that a re-indented copy still counts as a duplicate."""
    return re.sub(r"\s+", "", text)


def check_shape(name: str, messages: list) -> list[str]:
    """Roles alternate user/assistant after an optional leading system turn; ends on assistant."""
    if not messages:
        return [f"{name}: messages: missing or empty"]
    problems = []
    start = 1 if isinstance(messages[0], dict) and messages[0].get("role") == "system" else 0
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            problems.append(f"{name}: messages[{i}]: not an object")
            continue
        content = message.get("content")
        if not isinstance(content, str) or not content.strip():
            problems.append(f"{name}: messages[{i}]: content missing or empty")
        if i < start:
            continue
        expected = "user" if (i - start) % 2 == 0 else "assistant"
        if message.get("role") != expected:
            problems.append(
                f"{name}: messages[{i}]: role {message.get('role')!r}, expected {expected!r}"
            )
    last = messages[-1]
    if isinstance(last, dict) and last.get("role") != "assistant":
        problems.append(f"{name}: messages[{len(messages) - 1}]: dialogue must end with assistant")
    exchanges = (len(messages) - start) // 2
    if not MIN_EXCHANGES <= exchanges <= MAX_EXCHANGES:
        problems.append(
            f"{name}: messages: {exchanges} exchanges, expected {MIN_EXCHANGES}..{MAX_EXCHANGES}"
        )
    return problems


def check_assistant_turn(name: str, i: int, text: str, language: str) -> list[str]:
    """Length, question count and forbidden content of one counsellor turn."""
    problems = []
    low, high = TURN_LENGTH[language]
    length = len(text.strip())
    if not low <= length <= high:
        problems.append(
            f"{name}: messages[{i}]: {length} characters, expected {low}..{high} ({language})"
        )
    questions = text.count("?") + text.count("？")
    if questions > MAX_QUESTION_MARKS:
        problems.append(
            f"{name}: messages[{i}]: {questions} question marks, at most {MAX_QUESTION_MARKS}"
            " (one open question at a time)"
        )
    unquoted = QUOTED.sub("“”", text)
    for rule, pattern, message in FORBIDDEN_IN_ASSISTANT:
        found = pattern.search(unquoted if rule in RULES_ALLOWED_IN_QUOTES else text)
        if found:
            problems.append(f"{name}: messages[{i}]: {message} [{rule}: {found.group(0)!r}]")
    return problems


def check_record(name: str, record: dict) -> list[str]:
    messages = messages_of(record)
    problems = check_shape(name, messages)
    language = record_language(record)
    assistant_turns = [
        (i, m["content"])
        for i, m in enumerate(messages)
        if isinstance(m, dict)
        and m.get("role") == "assistant"
        and isinstance(m.get("content"), str)
    ]
    for i, text in assistant_turns:
        problems += check_assistant_turn(name, i, text, language)
    if record.get("topic") == "crisis" and not any(
        HELP_NUMBERS.search(t) for _, t in assistant_turns
    ):
        problems.append(f"{name}: messages: crisis dialogue gives no help line or emergency number")
    return problems


def check_duplicates(names: list[str], records: list[dict]) -> list[str]:
    """Whole dialogues and single assistant turns must not repeat anywhere in the file."""
    problems = []
    seen_dialogues: dict[str, str] = {}
    seen_turns: dict[str, str] = {}
    for name, record in zip(names, records, strict=True):
        messages = [m for m in messages_of(record) if isinstance(m, dict)]
        dialogue = json.dumps(
            [(m.get("role"), normalise(str(m.get("content", "")))) for m in messages]
        )
        if dialogue in seen_dialogues:
            problems.append(f"{name}: messages: duplicate of dialogue {seen_dialogues[dialogue]}")
            continue
        seen_dialogues[dialogue] = name
        for i, message in enumerate(messages):
            if message.get("role") != "assistant" or not isinstance(message.get("content"), str):
                continue
            turn = normalise(message["content"])
            if turn in seen_turns:
                problems.append(f"{name}: messages[{i}]: same assistant text as {seen_turns[turn]}")
            else:
                seen_turns[turn] = f"{name} messages[{i}]"
    return problems


def check_rubric(records: list[dict]) -> list[str]:
    """Return one problem string per rubric violation, `"<id>: messages[i]: problem"`.

    An empty list means every record passed the checks a machine can make.
    """
    names = [record_name(r, i) for i, r in enumerate(records)]
    problems = []
    for name, record in zip(names, records, strict=True):
        if not isinstance(record, dict):
            problems.append(f"{name}: not a JSON object")
            continue
        problems += check_record(name, record)
    dict_pairs = [(n, r) for n, r in zip(names, records, strict=True) if isinstance(r, dict)]
    problems += check_duplicates([n for n, _ in dict_pairs], [r for _, r in dict_pairs])
    return problems


def read_jsonl(path: Path) -> tuple[list[dict], list[str]]:
    """Records of a JSONL file, and a `FILE:LINE: json: problem` for each line that won't parse."""
    records, problems = [], []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as error:
                problems.append(f"{path}:{number}: json: {error.msg}")
    return records, problems


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "files", nargs="+", type=Path, metavar="FILE", help="JSONL files of dialogues"
    )


def main(args: argparse.Namespace) -> int:
    """Print every problem (prefixed by its file) and return 1 if there was any."""
    total = 0
    for path in args.files:
        records, problems = read_jsonl(path)
        problems += [f"{path}: {p}" for p in check_rubric(records)]
        for problem in problems:
            print(problem)
        total += len(problems)
        print(f"{path}: {len(records)} dialogues, {len(problems)} problems", file=sys.stderr)
    return 1 if total else 0


def parse_args(argv: Iterable[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m anxin.data.rubric",
        description="Check dialogues against anxin's writing rubric (see data/README.md).",
        epilog="example:\n  python -m anxin.data.rubric data/anxin_sample.jsonl\n"
        "exit status: 0 when no problems, 1 otherwise",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    return parser.parse_args(None if argv is None else list(argv))


if __name__ == "__main__":
    sys.exit(main(parse_args()))
