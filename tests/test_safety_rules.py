"""The care layer's rules as data: every rule's examples, the loader's errors, one lexicon."""

import re
import shutil

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
    assert cue.pattern.search(matching_text(text))


@pytest.mark.parametrize("cue,text", cases(CUES, "counterexamples"))
def test_a_cue_does_not_find_its_not_list(cue, text):
    assert not cue.pattern.search(matching_text(text))


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
