"""Check counselling dialogues against the structural part of anxin's writing rubric.

The rubric itself is written out in data/README.md. This module checks what a machine can
check reliably: the shape of each dialogue, the length of the counsellor's turns, repeats
across the file, the number of questions per turn, phrases the counsellor must never use,
and that a crisis dialogue gives a help line. Warmth and good judgement still need a reader.

A file of preference pairs (a history, then a `chosen` and a `rejected` reply) is checked as
such: the chosen reply must pass every rule, and the rejected one must break a rule of the
failure it is labelled with, where a rule for that failure exists (FAILURE_RULES).

Usage from the shell::

    python -m anxin.data.rubric data/anxin_sample.jsonl
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from anxin.safety import check_reply
from anxin.safety.care import rules_in_context
from anxin.safety.rules import expand

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

# Drug names, amounts and diagnoses: the care layer's one lexicon (anxin/safety/rules/
# lexicon.yaml), which the reply guard and the crisis detector read too.
_DRUGS_ZH = expand("({medications_zh})")
_DRUGS_EN = expand("({medications_en})")
_AMOUNT = expand("({quantity})")
# A negation just before "你" turns a diagnosis into a reassurance ("这不代表你有抑郁症").
_NOT_A_DIAGNOSIS = r"(?<!不代表)(?<!不等于)(?<!不是说)(?<!不意味着)(?<!并不是)"
_DISORDERS_EN = expand(r"((?:an?\s+)?{disorders_en})")

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
            _NOT_A_DIAGNOSIS
            + r"你(这)?(就)?是(?!在)(得了|患有|患上了|有)?[^，。！？,.!?\s]{0,8}(症(?!状)|障碍)"
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
            r"想开[点些一]|看开[点些一]|你应该感恩|要懂得感恩|要学会感恩|要知足|身在福中不知福|"
            r"(别|不要)(这么|那么)?矫情|太矫情|别想太多|比你惨的人|你要坚强|男子汉.{0,4}哭|"
            r"(?<!没)有什么好(难过|伤心|哭|紧张|害怕|怕|担心|焦虑|委屈|生气|纠结|尴尬|遗憾)|"
            r"天下(没有|无)不是的父母|(不应该|不该|怎么能|怎么可以)有?(这样|这么|这种)(想|的想法)|"
            r"(这样|这么|这种)(想|想法)(是)?不对"
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
    (
        "dismissal",
        re.compile(
            r"(没|有)(什么|啥)大不了|(?<!并)(?<!也)不算(什么|啥|事)|算不了什么|不是什么大(事|问题)|"
            r"大家都(这样|一样|是?这么(过来|挺过来|熬过来))|谁不是(这么)?(过来|挺过来|熬过来)|"
            r"过(几天|两天|一阵子?|阵子|一?段时间|几个月)(自然|自己)?就(好|没事)了|"
            r"(?<!不是)你(就是|只是)?想(太)?多了|别往心里去|别(太)?当回事"
        ),
        "minimises or brushes off the feeling (reflect and validate instead)",
    ),
    (
        "dismissal_en",
        re.compile(
            r"\b(not|no) (such )?a big deal\b|\bno big deal\b|\bnot the end of the world\b"
            r"|\beveryone (feels|goes through|gets|loses|has)\b|\b(don't|stop) overthink"
            r"|\byou're overthinking\b|\blife (does |just )?goes? on\b"
            r"|\byou'll (bounce back|be fine|get over it)\b",
            re.IGNORECASE,
        ),
        "minimises or brushes off the feeling (reflect and validate instead)",
    ),
    # Weighing whether a way to die works (how lethal, whether people survive or are found in
    # time) answers a means question even with no number in it; the reply guard in
    # anxin.safety catches the numbers, heights and methods.
    (
        "means_talk",
        re.compile(
            r"致死|(一定|未必|不太容易|甚至|真的|确实|(?<!不)会)(会|能)?致命|(?<!不)死不了|死得了|没死成"
            r"|(也有人|很多人|不少人|多数人)[^，。！？]{0,8}活(了)?下来"
            r"|(不一定|未必)(会|能)?[“\"]?(死|成功|能成|解脱)"
            r"|(?<!你)(?<!不)(被|给)[^，。！？]{0,4}?(发现)?(后)?[、，]?(抢)?救(了)?(回来|上来|过来)"
            r"|(自杀|死亡?|方式|方法)的?成功率"
        ),
        "weighs whether a way to die works (never discuss lethality or survival; respond to the"
        " person and give a help line)",
    ),
    (
        "means_talk_en",
        re.compile(
            r"\b(many|plenty of|most|some) (people )?survive\b|\bsurvive (falls?|it|them|an overdose)\b"
            r"|\bcan be (fatal|lethal|deadly)\b|\b(not|isn't|rarely|usually not) (necessarily )?"
            r"(fatal|lethal)\b|\bpainless (way|method)|\bfind you in time\b|\blethal (dose|amount)\b",
            re.IGNORECASE,
        ),
        "weighs whether a way to die works (never discuss lethality or survival; respond to the"
        " person and give a help line)",
    ),
]

# Words in quotation marks are reported speech: the counsellor may name what someone else said
# (他说“别想太多”, "she told you to just get over it") without saying it. Doses and drug advice
# stay forbidden even in quotes.
QUOTED = re.compile(r"“[^”]*”|‘[^’]*’|「[^」]*」|『[^』]*』|\"[^\"\n]*\"")
RULES_ALLOWED_IN_QUOTES = {
    "diagnosis",
    "diagnosis_en",
    "moralising",
    "moralising_en",
    "dismissal",
    "dismissal_en",
}


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
    return [f"{name}: messages[{i}]: {problem}" for problem in turn_problems(text, language)]


def turn_problems(text: str, language: str) -> list[str]:
    """What is wrong with one counsellor turn (length, questions, forbidden content), unlocated."""
    problems = form_problems(text, language)
    for rule, found, message in forbidden_hits(text):
        problems.append(f"{message} [{rule}: {found!r}]")
    return problems


def form_problems(text: str, language: str) -> list[str]:
    """Length and question count: a turn outside these bounds is broken or a quiz."""
    problems = []
    low, high = TURN_LENGTH[language]
    length = len(text.strip())
    if not low <= length <= high:
        problems.append(f"{length} characters, expected {low}..{high} ({language})")
    questions = text.count("?") + text.count("？")
    if questions > MAX_QUESTION_MARKS:
        problems.append(
            f"{questions} question marks, at most {MAX_QUESTION_MARKS}"
            " (one open question at a time)"
        )
    return problems


def forbidden_hits(text: str) -> list[tuple[str, str, str]]:
    """(rule, matched text, message) for each rule of FORBIDDEN_IN_ASSISTANT that `text` breaks."""
    unquoted = QUOTED.sub("“”", text)
    hits = []
    for rule, pattern, message in FORBIDDEN_IN_ASSISTANT:
        found = pattern.search(unquoted if rule in RULES_ALLOWED_IN_QUOTES else text)
        if found:
            hits.append((rule, found.group(0), message))
    return hits


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


# ---------------------------------------------------------------------------------------------
# Preference pairs (data/anxin_pairs.jsonl): a history, then a chosen and a rejected reply

PAIR_KEYS = ("id", "language", "topic", "failure", "messages", "chosen", "rejected")
# The topics of the table in data/README.md.
TOPICS = frozenset(
    {
        "study_stress",
        "work_burnout",
        "loneliness",
        "breakup_marriage",
        "family_conflict",
        "grief",
        "sleep",
        "anxiety_panic",
        "low_mood",
        "self_doubt",
        "social_anxiety",
        "parenting",
        "crisis",
    }
)
MAX_HISTORY_EXCHANGES = 4
RISK_WITHOUT_HELP_LINE = "risk_without_help_line"

# The rules that catch each failure a rejected reply shows: names from FORBIDDEN_IN_ASSISTANT,
# "guard:<reason>" for the care layer's reply guard (anxin.safety.check_reply), and
# RISK_WITHOUT_HELP_LINE. An empty tuple marks a failure no program can tell reliably (advice
# that comes too early, a reply that is correct but cold): a person reads those pairs.
FAILURE_RULES: dict[str, tuple[str, ...]] = {
    "moralising": ("moralising", "moralising_en"),
    "premature_advice": (),
    "diagnosis": ("diagnosis", "diagnosis_en", "guard:diagnosis_as_fact"),
    "medication": (
        "dose",
        "dose_en",
        "drug_with_amount",
        "drug_suggested",
        "drug_suggested_en",
        "guard:medication_instruction",
    ),
    "dismissal": ("dismissal", "dismissal_en", "moralising", "moralising_en"),
    "ignoring_risk": (RISK_WITHOUT_HELP_LINE,),
    "lethal_means": (
        "means_talk",
        "means_talk_en",
        "guard:lethal_means.dose",
        "guard:lethal_means.height",
        "guard:lethal_means.method",
    ),
    "cold_generic": (),
}


@dataclass
class PairReport:
    """Problems found in a file of pairs, and what the checks could verify, by failure."""

    problems: list[str] = field(default_factory=list)
    pairs: Counter = field(default_factory=Counter)  # (failure, language) -> pairs
    verified: Counter = field(default_factory=Counter)  # failure -> rejected replies caught
    rubric: bool = True  # False: only shapes and duplicates were checked

    def summary(self) -> str:
        """A table: pairs by failure and language, and how many were verified by a rule."""
        rows = [f"{'failure':<18}{'zh':>5}{'en':>5}{'pairs':>7}  rejected reply verified by"]
        for failure in FAILURE_RULES:
            zh, en = self.pairs[failure, "zh"], self.pairs[failure, "en"]
            how = (
                "(rubric not checked)"
                if not self.rubric
                else f"a rule: {self.verified[failure]}/{zh + en}"
                if FAILURE_RULES[failure]
                else "needs a human reader"
            )
            rows.append(f"{failure:<18}{zh:>5}{en:>5}{zh + en:>7}  {how}")
        total = sum(self.pairs.values())
        structural = sum(self.verified.values())
        rows.append(f"{'total':<18}{'':>10}{total:>7}  {structural} verified structurally")
        return "\n".join(rows)


def holds_pairs(records: list) -> bool:
    """Whether the records are preference pairs (they carry a chosen or rejected reply)."""
    return any(isinstance(r, dict) and ("chosen" in r or "rejected" in r) for r in records)


def check_pairs(records: list, *, rubric: bool = True) -> PairReport:
    """Check each pair's shape, its chosen reply against the rubric and its rejected reply
    against the rules of its failure; problems read `"<id>: field: problem"`.

    With `rubric` False only the shape and the duplicates are checked.
    """
    report = PairReport(rubric=rubric)
    names = [
        record_name(r, i) if isinstance(r, dict) else f"record {i + 1}"
        for i, r in enumerate(records)
    ]
    for name, record in zip(names, records, strict=True):
        shape = check_pair_shape(name, record)
        report.problems += shape
        if shape:
            continue
        language = record_language(record)
        report.pairs[record["failure"], language] += 1
        if not rubric:
            continue
        # The writer's `crisis` topic counts too: like any reader the detector misses some
        # indirect disclosures, and the sample's rule (a crisis dialogue gives a help line) holds.
        needs_help_line = record["topic"] == "crisis" or history_at_crisis(record)
        report.problems += check_history_replies(name, record["messages"], language)
        chosen, rejected = record["chosen"]["content"], record["rejected"]["content"]
        report.problems += check_chosen(name, chosen, language, needs_help_line)
        problems = check_rejected(name, record["failure"], rejected, language, needs_help_line)
        report.problems += problems
        if not problems and FAILURE_RULES[record["failure"]]:
            report.verified[record["failure"]] += 1
    report.problems += check_pair_duplicates(names, records)
    return report


def check_pair_shape(name: str, record: object) -> list[str]:
    """Keys and values of one pair record; a record with any of these problems is not judged."""
    if not isinstance(record, dict):
        return [f"{name}: not a JSON object"]
    problems = [f"{name}: {key}: missing" for key in PAIR_KEYS if key not in record]
    for key in record:
        if key not in PAIR_KEYS:
            closest = difflib.get_close_matches(str(key), PAIR_KEYS, n=1)
            hint = f" (did you mean {closest[0]!r}?)" if closest else ""
            problems.append(f"{name}: {key}: unknown key{hint}")
    if problems:
        return problems
    for key, allowed in (("language", ("zh", "en")), ("topic", TOPICS), ("failure", FAILURE_RULES)):
        if record[key] not in allowed:
            problems.append(f"{name}: {key}: {record[key]!r}, expected one of {sorted(allowed)}")
    if not isinstance(record["id"], str) or not record["id"].strip():
        problems.append(f"{name}: id: must be a non-empty string")
    problems += check_history(name, record["messages"])
    for key in ("chosen", "rejected"):
        problems += check_reply_message(name, key, record[key])
    return problems


def check_history(name: str, messages: object) -> list[str]:
    """The history alternates user/assistant, starts and ends with user, 1 to 4 exchanges."""
    if not isinstance(messages, list) or not messages:
        return [f"{name}: messages: must be a non-empty list of messages"]
    problems = []
    for i, message in enumerate(messages):
        expected = "user" if i % 2 == 0 else "assistant"
        if not isinstance(message, dict):
            problems.append(f"{name}: messages[{i}]: not an object")
            continue
        if message.get("role") != expected:
            problems.append(
                f"{name}: messages[{i}]: role {message.get('role')!r}, expected {expected!r}"
            )
        content = message.get("content")
        if not isinstance(content, str) or not content.strip():
            problems.append(f"{name}: messages[{i}]: content missing or empty")
    if len(messages) % 2 == 0:
        problems.append(f"{name}: messages: must end with the user turn being answered")
    exchanges = (len(messages) + 1) // 2
    if exchanges > MAX_HISTORY_EXCHANGES:
        problems.append(
            f"{name}: messages: {exchanges} user turns, expected 1..{MAX_HISTORY_EXCHANGES}"
        )
    return problems


def check_history_replies(name: str, messages: list[dict], language: str) -> list[str]:
    """The counsellor's earlier turns are context the model learns from: the rubric holds."""
    return [
        problem
        for i, message in enumerate(messages)
        if message["role"] == "assistant"
        for problem in check_assistant_turn(name, i, message["content"], language)
    ]


def check_reply_message(name: str, key: str, reply: object) -> list[str]:
    if not isinstance(reply, dict):
        return [f"{name}: {key}: must be an object {{'role': 'assistant', 'content': ...}}"]
    problems = []
    if reply.get("role") != "assistant":
        problems.append(f"{name}: {key}: role {reply.get('role')!r}, expected 'assistant'")
    if not isinstance(reply.get("content"), str) or not reply["content"].strip():
        problems.append(f"{name}: {key}: content missing or empty")
    return problems


def history_at_crisis(record: dict) -> bool:
    """Whether the care layer's rules rate the turn being answered a crisis, in its context
    (not the learned stage: its low threshold also calls some insomnia or panic a crisis, and a
    written reply is held to what a reader can check)."""
    *earlier, last = record["messages"]
    return rules_in_context(last["content"], context=earlier).level == "crisis"


def check_chosen(name: str, text: str, language: str, needs_help_line: bool) -> list[str]:
    """The chosen reply follows every rule a machine can check, and would reach the person."""
    problems = [f"{name}: chosen: {problem}" for problem in turn_problems(text, language)]
    verdict = check_reply(text)
    if not verdict.ok:
        reasons = ", ".join(verdict.reasons)
        problems.append(
            f"{name}: chosen: the care layer's reply guard would replace it [{reasons}]"
        )
    if needs_help_line and not HELP_NUMBERS.search(text):
        problems.append(f"{name}: chosen: the person is at risk, but the reply gives no help line")
    return problems


def check_rejected(
    name: str, failure: str, text: str, language: str, needs_help_line: bool
) -> list[str]:
    """The rejected reply is well formed, and a structural failure is caught by its rules."""
    problems = [f"{name}: rejected: {problem}" for problem in form_problems(text, language)]
    expected = FAILURE_RULES[failure]
    if expected and not set(expected) & rules_broken(text, needs_help_line):
        problems.append(
            f"{name}: rejected: shows {failure!r}, but none of its rules catches it"
            f" (expected one of: {', '.join(expected)})"
        )
    return problems


def rules_broken(text: str, needs_help_line: bool) -> set[str]:
    """Every named rule a reply breaks: forbidden content, the reply guard, a missing help line."""
    broken = {rule for rule, _, _ in forbidden_hits(text)}
    broken |= {f"guard:{reason}" for reason in check_reply(text).reasons}
    if needs_help_line and not HELP_NUMBERS.search(text):
        broken.add(RISK_WITHOUT_HELP_LINE)
    return broken


def check_pair_duplicates(names: list[str], records: list) -> list[str]:
    """Ids are unique, and no chosen or rejected reply is used twice in the file."""
    problems = []
    seen: dict[tuple[str, str], str] = {}
    for name, record in zip(names, records, strict=True):
        if not isinstance(record, dict):
            continue
        keys = [("id", record["id"])] if isinstance(record.get("id"), str) else []
        for key in ("chosen", "rejected"):
            reply = record.get(key)
            if isinstance(reply, dict) and isinstance(reply.get("content"), str):
                keys.append((key, normalise(reply["content"])))
        for key, value in keys:
            if (key, value) in seen:
                problems.append(f"{name}: {key}: same as in {seen[key, value]}")
            else:
                seen[key, value] = name
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
        "files", nargs="+", type=Path, metavar="FILE", help="JSONL files of dialogues or pairs"
    )


def main(args: argparse.Namespace) -> int:
    """Print every problem (prefixed by its file) and return 1 if there was any."""
    total = 0
    for path in args.files:
        problems, summary = check_file(path)
        for problem in problems:
            print(problem)
        total += len(problems)
        print(summary, file=sys.stderr)
    return 1 if total else 0


def check_file(path: Path) -> tuple[list[str], str]:
    """The problems of a file of dialogues or of preference pairs, each prefixed by the file,
    and a summary of what was checked."""
    records, problems = read_jsonl(path)
    if holds_pairs(records):
        report = check_pairs(records)
        problems += [f"{path}: {p}" for p in report.problems]
        count = f"{path}: {len(records)} pairs, {len(problems)} problems"
        return problems, f"{report.summary()}\n{count}"
    problems += [f"{path}: {p}" for p in check_rubric(records)]
    return problems, f"{path}: {len(records)} dialogues, {len(problems)} problems"


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
