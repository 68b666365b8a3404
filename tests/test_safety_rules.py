"""The care layer's rules as data: every rule's examples, the loader's errors, one lexicon."""

import gc
import random
import re
import shutil
import time
from pathlib import Path

import pytest

from anxin.safety import check_reply
from anxin.safety.detector import matching_text, rule_hits
from anxin.safety.rules import FOLDER, RulesError, expand, load_rulebook, rulebook

BOOK = rulebook()
DETECTOR_RULES = [*BOOK.crisis, *BOOK.concern, BOOK.classifier.anchor]


def cases(items, field):
    """(item, text) for each text in each item's `field`; items are (id, item) or named items."""
    named = [item if isinstance(item, tuple) else (item.name, item) for item in items]
    return [
        pytest.param(item, text, id=f"{key}:{text[:24]}")
        for key, item in named
        for text in getattr(item, field)
    ]


def fires(rule, text):
    return any(hit.reason == rule.name for hit in rule_hits(rule, text))


# --- every rule and cue against its own examples ------------------------------------------------


@pytest.mark.parametrize("rule,text", cases(DETECTOR_RULES, "examples"))
def test_a_detector_rule_fires_on_its_examples(rule, text):
    hits = rule_hits(rule, text)
    assert any(hit.reason == rule.name for hit in hits), [hit.reason for hit in hits]


@pytest.mark.parametrize("rule,text", cases(DETECTOR_RULES, "counterexamples"))
def test_a_detector_rule_does_not_fire_on_its_not_list(rule, text):
    assert not fires(rule, text), [hit.reason for hit in rule_hits(rule, text)]


CUES = list(BOOK.all_cues().items())


@pytest.mark.parametrize("cue,text", cases(CUES, "examples"))
def test_a_cue_finds_its_examples(cue, text):
    assert cue.finds(matching_text(text))


@pytest.mark.parametrize("cue,text", cases(CUES, "counterexamples"))
def test_a_cue_does_not_find_its_not_list(cue, text):
    assert not cue.finds(matching_text(text))


@pytest.mark.parametrize("rule,text", cases(BOOK.reply, "examples"))
def test_a_reply_rule_fails_its_examples(rule, text):
    assert rule.name in check_reply(text).reasons


@pytest.mark.parametrize("rule,text", cases(BOOK.reply, "counterexamples"))
def test_a_reply_rule_passes_its_not_list(rule, text):
    assert rule.name not in check_reply(text).reasons


def test_rule_names_are_unique_and_scripts_match_their_prefix():
    names = [rule.name for rule in DETECTOR_RULES]
    assert len(names) == len(set(names))
    for rule in DETECTOR_RULES:
        prefix = rule.name.split(".", 1)[0]
        assert rule.script == (prefix if prefix in ("zh", "en") else "any"), rule.name


# --- one lexicon, read by the detector, the reply guard, the rubric and the classifier --------------


def test_the_rubric_reads_the_shared_lexicon():
    from anxin.data.rubric import FORBIDDEN_IN_ASSISTANT

    patterns = {name: pattern for name, pattern, _ in FORBIDDEN_IN_ASSISTANT}
    # 左洛复 and 泰诺 were missing from the rubric's own copy of the drug names
    assert patterns["drug_suggested"].search("睡不着的话，可以先吃点左洛复")
    assert patterns["drug_with_amount"].search("泰诺你可以先吃两片试试")
    assert expand("{medications_zh}") in patterns["drug_suggested"].pattern


def test_the_guard_and_the_detector_read_the_shared_lexicon():
    # 泰诺 was missing from the guard's copy, 左洛复 from the detector's
    assert "medication_instruction" in check_reply("你可以先把泰诺停了。").reasons
    from anxin.safety import CrisisDetector

    assert "zh.overdose_taken" in CrisisDetector().assess("我把一整瓶左洛复都吞了").reasons


def test_the_classifier_reads_its_word_classes_from_the_lexicon():
    from anxin.safety import classifier

    assert dict((name, p.pattern) for name, p in classifier._WORD_CLASS_PATTERNS) == (
        BOOK.word_classes
    )


# --- the loader refuses what it cannot use, and says where ------------------------------------------


@pytest.fixture
def rules_copy(tmp_path):
    folder = tmp_path / "rules"
    shutil.copytree(FOLDER, folder, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    return folder


def edit(folder, name, old, new):
    path = folder / name
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_the_shipped_rules_load():
    book = load_rulebook(FOLDER)
    assert len(book.crisis) > 80 and book.concern and book.signs and book.reply


def test_an_unknown_field_names_the_file_the_rule_and_the_closest_field(rules_copy):
    edit(
        rules_copy,
        "crisis.yaml",
        "    lowered_by: [negation, hyperbole",
        "    lowerd_by: [negation, hyperbole",
    )
    with pytest.raises(RulesError) as error:
        load_rulebook(rules_copy)
    message = str(error.value)
    assert message.startswith("crisis.yaml: rule zh.want_to_die: unknown field 'lowerd_by'")
    assert "did you mean 'lowered_by'?" in message


def test_an_unknown_lowering_names_the_closest_one(rules_copy):
    edit(rules_copy, "concern.yaml", "lowered_by: [negation,", "lowered_by: [negated,")
    with pytest.raises(
        RulesError,
        match=r"concern\.yaml: rule zh\.hopeless: lowered_by: 'negated' is not one of .*did you mean 'negation'",
    ):
        load_rulebook(rules_copy)


def test_a_bad_regex_names_the_file_and_the_rule(rules_copy):
    edit(rules_copy, "signs.yaml", "'永别'", "'永别('")
    with pytest.raises(
        RulesError, match=r"^signs\.yaml: cue farewell: pattern: bad regex \(missing \)"
    ):
        load_rulebook(rules_copy)


def test_a_bad_traditional_line_names_its_line(rules_copy):
    path = rules_copy / "traditional.tsv"
    lines = path.read_text(encoding="utf-8").splitlines()
    comments = sum(line.startswith("#") for line in lines)
    path.write_text("\n".join([*lines[:comments], "殺 杀", *lines[comments:]]), encoding="utf-8")
    with pytest.raises(RulesError, match=rf"^traditional\.tsv:{comments + 1}: must be two"):
        load_rulebook(rules_copy)
    path.write_text("\n".join([*lines, "殺\t杀"]), encoding="utf-8")
    with pytest.raises(RulesError, match=r"traditional\.tsv:\d+: 殺 is already mapped to 杀"):
        load_rulebook(rules_copy)


def test_a_traditional_table_that_chains_or_holds_nothing_is_refused(rules_copy):
    path = rules_copy / "traditional.tsv"
    shipped = path.read_text(encoding="utf-8")
    path.write_text(shipped + "苎\t苧\n", encoding="utf-8")  # 薴 → 苎 is in the table
    with pytest.raises(RulesError, match=r"traditional\.tsv:\d+: 苎 is itself mapped"):
        load_rulebook(rules_copy)
    path.write_text("# only a comment\n", encoding="utf-8")
    with pytest.raises(RulesError, match=r"^traditional\.tsv: holds no pairs"):
        load_rulebook(rules_copy)


def test_a_bad_cantonese_line_names_its_line(rules_copy):
    path = rules_copy / "cantonese.tsv"
    lines = path.read_text(encoding="utf-8").splitlines()
    comments = sum(line.startswith("#") for line in lines[:20])
    path.write_text("\n".join([*lines[:comments], "唔 不", *lines[comments:]]), encoding="utf-8")
    with pytest.raises(RulesError, match=rf"^cantonese\.tsv:{comments + 1}: must be two"):
        load_rulebook(rules_copy)
    path.write_text("\n".join([*lines, "佢\t她"]), encoding="utf-8")
    with pytest.raises(RulesError, match=r"cantonese\.tsv:\d+: 佢 is already mapped to 他"):
        load_rulebook(rules_copy)
    path.write_text("\n".join([*lines, "搵到\t找到"]), encoding="utf-8")
    with pytest.raises(RulesError, match=r"cantonese\.tsv:\d+: 搵 is traditional: write 揾"):
        load_rulebook(rules_copy)
    path.write_text("\n".join([*lines, "冚家\t全家\tmark"]), encoding="utf-8")
    with pytest.raises(RulesError, match=r"cantonese\.tsv:\d+: a third field is `mark`, on one"):
        load_rulebook(rules_copy)
    path.write_text("# only a comment\n", encoding="utf-8")
    with pytest.raises(RulesError, match=r"^cantonese\.tsv: holds no pairs"):
        load_rulebook(rules_copy)


def test_no_pattern_holds_a_character_that_normalising_rewrites():
    """normalize() simplifies every traditional character first, 著 and 乾 among them, and
    reads a written Cantonese character (唔, 佢) as its Mandarin word, so a pattern written with
    one would never match."""
    book = rulebook()
    rewritten = set(book.traditional) | {word for word in book.cantonese if len(word) == 1}

    def sources(item):
        for name in ("pattern", "requires", "escalate_if", "unless"):
            value = getattr(item, name, None)
            if value is not None:
                yield getattr(value, "pattern", value)

    patterns = [
        text
        for group in (book.crisis, book.concern, book.signs, book.reply)
        for item in group
        for text in sources(item)
    ]
    for cues in (book.judgement, book.context, book.classifier.cues):
        patterns += [text for cue in cues.values() for text in sources(cue)]
    patterns += list(book.word_classes.values())
    patterns += [word for words in book.lexicon.words.values() for word in words]
    patterns += list(book.lexicon.fragments.values())
    found = {ch for text in patterns for ch in str(text) if ch in rewritten}
    assert len(patterns) > 300 and not found


def test_a_missing_lexicon_entry_names_the_closest_one(rules_copy):
    edit(rules_copy, "reply.yaml", "{medications_zh}", "{medication_zh}")
    with pytest.raises(
        RulesError,
        match=re.escape("reply.yaml: rule medication_instruction: pattern: no lexicon entry")
        + r".*did you mean 'medications_zh'",
    ):
        load_rulebook(rules_copy)


def test_a_missing_field_and_an_empty_example_list_are_refused(rules_copy):
    edit(
        rules_copy,
        "crisis.yaml",
        "    act: false\n",
        "",
    )
    with pytest.raises(
        RulesError, match=r"crisis\.yaml: rule zh\.want_to_die: missing field 'act'"
    ):
        load_rulebook(rules_copy)


def test_a_rule_without_examples_is_refused(rules_copy):
    text = (rules_copy / "reply.yaml").read_text(encoding="utf-8")
    start = text.index("    examples:", text.index("name: lethal_means.height"))
    end = text.index("    not:", start)
    (rules_copy / "reply.yaml").write_text(text[:start] + "    examples: []\n" + text[end:])
    with pytest.raises(
        RulesError, match=r"reply\.yaml: rule lethal_means\.height: examples: must be"
    ):
        load_rulebook(rules_copy)


# --- imports point one way ---------------------------------------------------------------------


def test_the_care_layer_has_no_import_cycle():
    """Read from the source, lazy imports included: classifier ↔ detector was one."""
    import ast

    from anxin import safety

    folder = Path(safety.__file__).parent
    modules = {f"anxin.safety.{p.stem}": p for p in folder.glob("*.py") if p.stem != "__init__"}
    modules["anxin.safety.rules"] = folder / "rules" / "__init__.py"
    graph = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                found |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
            elif isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
        graph[name] = found & modules.keys() - {name}

    def reaches(start, goal, seen=()):
        return any(
            nxt == goal or (nxt not in seen and reaches(nxt, goal, (*seen, nxt)))
            for nxt in graph[start]
        )

    assert [name for name in graph if reaches(name, name)] == []
    assert graph["anxin.safety.scan"] == set()
    assert graph["anxin.safety.rules"] == {"anxin.safety.scan"}
    assert graph["anxin.safety.text"] == {"anxin.safety.rules"}


# --- bad input never crashes, and costs time in proportion to its length ------------------------

BAD_INPUTS = {
    "empty": "",
    "spaces": " \n\t ",
    "control characters": "我\x00想\x07死\x1b[31m\r\n\x7f",
    "emoji": "😭😭😭🔪💊 想🙃死 ❤️‍🩹",
    "mixed scripts": "我真的want to die，とても辛い，Я хочу умереть",
    "traditional": "我真的不想活了，想自殺，安眠藥已經準備好了",
    "zero width and full width": "想\u200b自\ufeff杀，ＩＷＡＮＴ ＴＯ ＤＩＥ",
    "lone surrogate-free oddities": "\u202e死想\u2066\u2069 \U0001f600" * 50,
}


@pytest.mark.parametrize("text", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_input_is_assessed_and_checked_without_crashing(text):
    from anxin.safety import CrisisDetector, StreamGuard

    assessment = CrisisDetector().assess(
        text, context=[text, {"role": "assistant", "content": text}]
    )
    assert assessment.level in ("none", "concern", "crisis")
    assert isinstance(check_reply(text).ok, bool)
    guard = StreamGuard("zh")
    shown = "".join(guard.feed(text[i : i + 7]) for i in range(0, len(text), 7)) + guard.finish()
    assert guard.blocked or shown == text


def test_traditional_characters_read_as_simplified():
    from anxin.safety import CrisisDetector, normalize

    assert CrisisDetector().assess(BAD_INPUTS["traditional"]).level == "crisis"
    # every character OpenCC knows, not only those in the patterns: the learned stage reads
    # the simplified spelling it was trained on
    assert normalize("擁抱一下，謝謝你們，最近很鬱悶") == normalize(
        "拥抱一下，谢谢你们，最近很郁闷"
    )
    pairs = [
        ("每天都覺得活著沒有意義，不如消失算了", "每天都觉得活着没有意义，不如消失算了"),
        ("他昨天又喝醉了，拿皮帶抽我，我躲在廁所裡", "他昨天又喝醉了，拿皮带抽我，我躲在厕所里"),
        ("考試考砸了，好煩啊，週末想去逛街放鬆一下", "考试考砸了，好烦啊，周末想去逛街放松一下"),
    ]
    detector = CrisisDetector()
    for traditional, simplified in pairs:
        assert detector.assess(traditional).to_dict() == detector.assess(simplified).to_dict()


def test_written_cantonese_reads_as_mandarin():
    """The rules and the learned stage know Mandarin: 唔想活 is 不想活, 佢話 is someone else's
    words, 攰到死 a degree, and 劏房 (a subdivided flat) no killing."""
    from anxin.safety import CrisisDetector, normalize

    assert normalize("我真係唔想再生存落去") == "我真是不想再生存下去"
    assert normalize("住喺劏房，唔好意思") == "住在分间房,不好意思"
    assert normalize("关系好差，我联系唔到佢") == "关系好差,我联系不到他"
    # Mandarin, with no character only Cantonese writes, is never rewritten: 快点解脱 holds
    # 点解 (why), 完成日常 holds 成日 (always), and 唔 before a comma is a hum
    assert normalize("我希望自己快點解脫") == "我希望自己快点解脱"
    assert normalize("慢慢完成日常任务") == "慢慢完成日常任务"
    assert normalize("唔，我觉得还好") == "唔,我觉得还好"
    assert normalize("唔唔，好想快点解脱") == "唔唔,好想快点解脱"  # a doubled 唔 is a hum too
    # words read left to right: a word joined across an edge is listed whole
    assert normalize("佢係咪想死") == "他是不是想死"
    assert normalize("我心情唔好") == "我心情不好"
    detector = CrisisDetector()
    pairs = [
        ("我唔想活", "我不想活"),
        ("佢話想死", "他话想死"),
        ("我唔係想死，只係好攰", "我不是想死，只是好累"),
        ("琴日又鎅咗手", "昨天又割了手"),
    ]

    def read(text):  # the learned stage's P may differ in the last digit: the raw text differs
        found = detector.assess(text)
        return found.level, [reason for reason in found.reasons if "learned" not in reason]

    for cantonese, mandarin in pairs:
        assert read(cantonese) == read(mandarin)
    assert detector.assess("我唔想活").level == "crisis"
    assert detector.assess("佢話想死").level == "concern"


def test_a_200_kb_message_is_assessed_and_checked():
    from anxin.safety import CrisisDetector

    pieces = [
        "今天又加班到很晚，累死了。",
        "I just want everything to stop. ",
        "我不想活了。",
        "😭😭",
        "服用2.5mg就够了。",
    ]
    text = "".join(pieces[i % len(pieces)] for i in range(20_000))
    text = text.encode("utf-8")[:200_000].decode("utf-8", errors="ignore")
    assert CrisisDetector().assess(text).level == "crisis"
    assert "medication_instruction" in check_reply(text).reasons


# Pieces of a fuzzed message: risk words (repeated too), random Chinese and Latin, emoji, control
# and zero-width characters, traditional and full-width forms.
RISK_WORDS = [
    "想死",
    "自杀",
    "不想活了",
    "安眠药",
    "吃了一整瓶",
    "跳楼",
    "割腕",
    "kill myself",
    "want to die",
    "suicide",
    "pills",
    "我",
    "没有",
    "哈哈",
    "以前",
    "他",
    "打我",
    "刀",
    "天台",
    "死",
    "30片",
    "mg",
    "lol",
    "never",
    "跳下去",
    "再见",
    "今晚",
    "，",
    "。",
    "？",
    "\n",
    " ",
]
ODD = [
    "😭",
    "😂",
    "🙃",
    "❤️",
    "🔪",
    "💊",
    "殺",
    "藥",
    "樓",
    "ＡＢＣ",
    "１２３",
    "\u200b",
    "\ufeff",
    "《",
    "》",
]


def fuzzed_message(rng: random.Random, length: int) -> str:
    pieces, size = [], 0
    while size < length:
        kind = rng.random()
        if kind < 0.3:
            piece = rng.choice(RISK_WORDS)
        elif kind < 0.55:
            piece = "".join(chr(rng.randint(0x4E00, 0x9FFF)) for _ in range(rng.randint(1, 8)))
        elif kind < 0.7:
            piece = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz '") for _ in range(9))
        elif kind < 0.8:
            piece = "".join(chr(rng.randint(0, 31)) for _ in range(rng.randint(1, 3)))
        elif kind < 0.94:
            piece = rng.choice(ODD)
        else:
            piece = rng.choice(RISK_WORDS) * rng.randint(2, 200)
        pieces.append(piece)
        size += len(piece)
    return "".join(pieces)[:length]


# CPU time per call: under 100 ms for any message up to 20 KB. The cost is linear, about 4 µs
# a character for either call on a 2-core EPYC under load (10 µs before the rules were tried
# only where a trigger can begin: scan.py); the quadratic paths this guards against cost
# 450 µs a character at 15 KB.
BUDGET_S = 0.1


def test_fuzzed_messages_never_crash_and_cost_under_100_ms():
    """Measured in a fresh process, up to three, as the repeated phrases below are: on a 2-core
    EPYC a 13 KB message cost 60 ms in one process and 100-135 ms in the next, at random, and
    more after the rest of the suite. A path that grows faster than the text is over the
    budget in every process. A crash ends the process, and the assertion shows its error."""
    costs: dict[str, float] = {}
    for _ in range(3):
        for key, spent in _costs_in_a_fresh_process("fuzzed_message_costs").items():
            costs[key] = min(spent, costs.get(key, spent))
        if all(spent < BUDGET_S for spent in costs.values()):
            break
    assert len(costs) == 2 * FUZZED_MESSAGES
    over = {key: spent for key, spent in costs.items() if spent >= BUDGET_S}
    assert not over, over


FUZZED_MESSAGES = 150


def fuzzed_message_costs() -> dict[str, float]:
    """CPU seconds of assess (a new detector each time) and check_reply on each fuzzed message,
    1 character to 20 KB. A call over the budget is measured again on texts that differ in
    their last character (a reading is kept per text), the least kept: see below."""
    from anxin.safety import CrisisDetector

    CrisisDetector().assess("你好")  # the learned stage loaded before the clock starts
    rng = random.Random(14)
    costs = {}
    for number in range(FUZZED_MESSAGES):
        text = fuzzed_message(rng, int(20_000 ** rng.random()))  # 1 character to 20 KB
        for name, call in (("assess", CrisisDetector().assess), ("check_reply", check_reply)):
            spent = _cpu_seconds(call, text)
            if spent >= BUDGET_S:
                spent = min(spent, *(_cpu_seconds(call, text + last) for last in "。！？，"))
            costs[f"{name} #{number} ({len(text)} characters)"] = spent
    return costs


# One phrase repeated to 20 KB puts thousands of matches in one message: the cost is then per
# match, not per character. A word gap looked for among all the message's gaps at each match
# (我没有想死 with spaces: 2 s), 5,000 lowered matches judged one by one (他想死，: 150 ms) and
# 10,000 one-character sentences checked unkept (死。: 160 ms) each broke the budget.
REPEATED_PHRASES = ["我没有想死", "他想死", "佢話想死", "累死了", "以前割腕", "30片", "死"]
BETWEEN = ["", " ", "。", "\n"]


def test_one_phrase_repeated_to_20_kb_costs_under_100_ms():
    """Measured in a fresh process, up to three: after the rest of the suite (3,400 tests,
    torch and the web stack loaded) the same calls cost half as much again (佢話想死 repeated:
    60-65 ms alone, 100 ms in CI), and on this VM a whole process runs a third slower than the
    next one at random (64 or 92 ms for the same calls). Neither is the reading's cost; a
    path that grows faster than the text is over the budget in every process."""
    costs: dict[str, float] = {}
    for _ in range(3):
        for key, spent in _costs_in_a_fresh_process().items():
            costs[key] = min(spent, costs.get(key, spent))
        if all(spent < BUDGET_S for spent in costs.values()):
            break
    assert len(costs) == 2 * len(REPEATED_PHRASES) * len(BETWEEN)
    over = {key: spent for key, spent in costs.items() if spent >= BUDGET_S}
    assert not over, over


def _costs_in_a_fresh_process(function: str = "repeated_phrase_costs") -> dict[str, float]:
    import json
    import subprocess
    import sys

    measure = (
        f"import sys, json; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
        f"import test_safety_rules as t; print(json.dumps(t.{function}()))"
    )
    done = subprocess.run(
        [sys.executable, "-c", measure], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def repeated_phrase_costs() -> dict[str, float]:
    """CPU seconds of assess and check_reply on each phrase repeated to 20 KB with each break."""
    from anxin.safety import CrisisDetector

    detector = CrisisDetector()
    detector.assess("你好")  # the learned stage loaded before the clock starts
    costs = {}
    for phrase in REPEATED_PHRASES:
        for between in BETWEEN:
            text = ((phrase + between) * 20_000)[:20_000]
            for name, call in (("assess", detector.assess), ("check_reply", check_reply)):
                # The best of five texts that differ in their last character (a reading is
                # kept per text): one run in four of the same call costs about 30 ms more CPU
                # than the others, at random. The work this guards against grows with the
                # matches and shows in every run.
                spent = min(_cpu_seconds(call, text[:-1] + last) for last in "。！？，；")
                costs[f"{name} {phrase}{between!r}"] = spent
    return costs


def _cpu_seconds(call, text: str) -> float:
    """CPU seconds of one call (honest on a shared, busy machine), the collector paused: after a
    thousand tests a collection of the whole session's heap can land inside the call and triple
    its time, which is not the reading's cost (the quadratic paths these tests guard against are)."""
    gc.disable()
    try:
        started = time.process_time()
        call(text)
        return time.process_time() - started
    finally:
        gc.enable()


def test_a_phrase_lowered_hundreds_of_times_is_not_read_as_calm():
    from anxin.safety.detector import _JUDGED_AT_MOST, read_rules

    # each 他想死 is someone else's wish (a concern); past the judging limit the rule stands
    assert read_rules("他想死，" * 5).level == "concern"
    assert read_rules("他想死，" * _JUDGED_AT_MOST).level == "concern"
    assert read_rules("他想死，" * (_JUDGED_AT_MOST + 1)).level == "crisis"
