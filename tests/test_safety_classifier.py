"""The trained crisis classifier: its data, its weights, and what it adds to the rules."""

import argparse
import json
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest

from anxin.safety import CrisisDetector, commands, detect_language, normalize
from anxin.safety import classifier as clf
from anxin.safety.detector import CLASSIFIER_CRISIS_AT, CRISIS_CATEGORIES

ROOT = Path(__file__).resolve().parent.parent
DEV_SET = ROOT / "data" / "safety_dev.jsonl"


@pytest.fixture(scope="module")
def examples():
    return clf.read_training_file()


@pytest.fixture(scope="module")
def model():
    return clf.shipped_classifier()


# --- the training file ---------------------------------------------------------------------------


def test_training_file_is_large_balanced_and_bilingual(examples):
    assert len(examples) >= 1500
    crisis = [e for e in examples if e.target != 0]
    assert 0.45 <= len(crisis) / len(examples) <= 0.55
    english = sum(detect_language(e.text) == "en" for e in examples) / len(examples)
    assert 0.2 <= english <= 0.35
    kinds = Counter(e.kind for e in examples)
    for kind in clf.KIND_TO_CLASS:
        assert kinds[kind] >= 50, kind
    hard_negatives = (
        "idiom",
        "relationship",
        "grief",
        "fear_of_death",
        "medication",
        "negation",
        "reported",
        "academic",
        "game",
        "cooking",
        "past_history",
        "sadness",
    )
    for kind in hard_negatives:
        assert kinds[kind] >= 20, kind


def _trigrams(text: str) -> set[str]:
    text = normalize(text)
    return {text[i : i + 3] for i in range(max(1, len(text) - 2))}


def test_training_file_shares_no_text_with_the_dev_set(examples):
    """No line of the dev set, nor a near copy (character-trigram Jaccard >= 0.6), is trained on."""
    dev = [json.loads(line)["text"] for line in DEV_SET.read_text(encoding="utf-8").splitlines()]
    dev_grams = [_trigrams(text) for text in dev]
    postings = defaultdict(list)
    for index, grams in enumerate(dev_grams):
        for gram in grams:
            postings[gram].append(index)
    close = []
    for example in examples:
        grams = _trigrams(example.text)
        shared = Counter(index for gram in grams for index in postings.get(gram, ()))
        for index, count in shared.items():
            if count / len(grams | dev_grams[index]) >= 0.6:
                close.append((example.line, dev[index]))
    assert close == []


def test_a_bad_training_line_names_file_line_and_field(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text(
        '{"text": "我想死", "label": "crisis", "category": "suicidal_active"}\n'
        '{"text": "累死了", "label": "maybe", "category": "idiom"}\n',
        encoding="utf-8",
    )
    with pytest.raises(ValueError, match=r"train\.jsonl:2: label: 'maybe'"):
        clf.read_training_file(path)
    path.write_text('{"text": "x", "label": "crisis", "category": "idiom"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r":1: category: 'idiom' is not one of"):
        clf.read_training_file(path)


# --- training and the shipped weights ---------------------------------------------------------------


def test_training_is_deterministic(examples):
    subset = examples[::12]
    config = clf.TrainingConfig(steps=40)
    first = clf.train([e.text for e in subset], [e.target for e in subset], config)
    second = clf.train([e.text for e in subset], [e.target for e in subset], config)
    assert np.array_equal(first.buckets, second.buckets)
    assert np.array_equal(first.weights, second.weights)
    assert np.array_equal(first.bias, second.bias)


def test_shipped_weights_were_trained_on_the_shipped_training_file():
    """Fails when the training file changed: run `python -m anxin.safety.classifier --train`."""
    model, source = clf.CrisisClassifier.load(clf.WEIGHTS_FILE)
    assert source == clf.file_digest(clf.TRAIN_FILE)
    assert model.config == clf.CONFIG


@pytest.mark.slow
def test_retraining_reproduces_the_shipped_weights(model):
    retrained = clf.train_on_file()
    assert np.array_equal(retrained.buckets, model.buckets)
    # the shipped weights are float16; a probability moves by far less than a threshold step
    assert np.abs(retrained.weights - model.weights).max() < 0.01


def test_missing_weights_are_replaced_by_training_on_first_use(tmp_path, monkeypatch):
    train_file = tmp_path / "train.jsonl"
    lines = [
        ("我真的不想活了", "crisis", "suicidal_active"),
        ("今天天气不错", "non_crisis", "everyday"),
    ]
    train_file.write_text(
        "".join(
            json.dumps({"text": t, "label": label, "category": kind}, ensure_ascii=False) + "\n"
            for t, label, kind in lines
        ),
        encoding="utf-8",
    )
    monkeypatch.setattr(clf, "TRAIN_FILE", train_file)
    monkeypatch.setattr(clf, "WEIGHTS_FILE", tmp_path / "absent.npz")
    monkeypatch.setattr(clf, "CONFIG", clf.TrainingConfig(steps=30))
    clf.shipped_classifier.cache_clear()
    try:
        model = clf.shipped_classifier()
        assert model.predict("我真的不想活了").probability > 0.5
        assert model.predict("今天天气不错").probability < 0.5
    finally:
        clf.shipped_classifier.cache_clear()


# --- what it reads ---------------------------------------------------------------------------------

# Written for this test, after the training file, and checked not to be in it: new ways of
# saying the same things. Not all must pass (a classifier generalises, it does not recite),
# but most must.
HELD_OUT_CRISIS = [
    "我不想再撑下去了，这条命谁想要就拿去",
    "真想找个地方安静地结束这一切",
    "我要是明早没醒过来，大家应该都会松口气",
    "药我都数好了，够了",
    "我已经跟每个人都好好道别了",
    "又拿小刀在胳膊上划了几下，才觉得能喘气",
    "他要是再动我妈，我就拿刀跟他拼了",
    "他把门反锁了不让我走，还说要打死我",
    "i'm going to end my life after everyone goes to sleep",
    "i honestly wish i could stop being alive",
    "i hid a razor in my room so i can cut later",
    "i just want to go to sleep and stay asleep forever",
]


def test_held_out_paraphrases_are_not_in_the_training_file(examples):
    trained = {normalize(e.text) for e in examples}
    assert not trained & {normalize(text) for text in HELD_OUT_CRISIS}


def test_classifier_catches_most_paraphrases_it_was_not_trained_on(model):
    likely = [text for text in HELD_OUT_CRISIS if model.predict(text).probability >= 0.5]
    assert len(likely) >= 0.8 * len(HELD_OUT_CRISIS)
    detector = CrisisDetector()
    flagged = [text for text in HELD_OUT_CRISIS if detector.assess(text).level == "crisis"]
    assert len(flagged) >= 0.8 * len(HELD_OUT_CRISIS)


HELD_OUT_HARMLESS = [
    "热得要死，空调还坏了",
    "今晚的火锅辣死我了",
    "笑死，他又把自己锁门外了",
    "想死你们了，周末聚一下",
    "完了，报告没写，明天死定了",
    "昨天在全公司面前叫错名字，社死现场",
    "我对他彻底心死了，不会再回头",
    "我从来没有想过要结束自己的生命",
    "放心吧，我不会做傻事的",
    "新闻里说有个男的从桥上跳下去了",
    "医生让我睡前吃半片安眠药",
    "i'm dead tired after that double shift",
    "i would never hurt myself, i'm just venting",
    "my character keeps dying on this level",
]


@pytest.mark.parametrize("text", HELD_OUT_HARMLESS)
def test_idioms_negations_and_stories_are_not_a_crisis(text):
    assert CrisisDetector().assess(text).level != "crisis"


def test_a_phrasing_no_rule_knows_is_raised_by_the_classifier_with_its_reason():
    assessment = CrisisDetector().assess("我把猫托付给朋友了，以后也不用再麻烦谁了")
    assert assessment.level == "crisis"
    assert assessment.categories and set(assessment.categories) <= set(CRISIS_CATEGORIES)
    [reason] = [r for r in assessment.reasons if r.startswith("classifier:")]
    assert float(reason.split(":")[1]) >= CLASSIFIER_CRISIS_AT


def test_the_classifier_does_not_overrule_a_negation(model):
    text = "我从来没有想过要结束自己的生命"
    assert model.predict(text).probability >= CLASSIFIER_CRISIS_AT  # it alone would flag this
    assert CrisisDetector().assess(text).level != "crisis"


def test_the_classifier_does_not_lower_what_the_rules_found():
    assessment = CrisisDetector().assess("我想自杀")
    assert assessment.level == "crisis"
    assert not any(reason.startswith("classifier:") for reason in assessment.reasons)


# --- the dev set, through the command a user runs ------------------------------------------------------


def test_safety_eval_on_the_dev_set_meets_the_targets(capsys):
    parser = argparse.ArgumentParser()
    commands.add_arguments(parser)
    args = parser.parse_args(["eval", str(DEV_SET), "--min-recall", "0.98", "--max-fpr", "0.05"])
    assert commands.main(args) == 0
    assert "below target" not in capsys.readouterr().err
