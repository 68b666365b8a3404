"""The care layer's learned stage: its data, its weights, and what it adds to the rules."""

import argparse
import json
import re
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from anxin.safety import CrisisDetector, care, commands, detect_language, normalize, training
from anxin.safety import classifier as clf
from anxin.safety.rules import CRISIS_CATEGORIES
from anxin.safety.sets import Example, LabelledSetError, read_examples

ROOT = Path(__file__).resolve().parent.parent
DEV_SET = ROOT / "data" / "safety_dev.jsonl"


@pytest.fixture(scope="module")
def written():
    return read_examples(training.WRITTEN)


# --- the written training file -------------------------------------------------------------------


def test_the_written_file_is_large_balanced_and_bilingual(written):
    assert len(written) >= 1500
    crisis = [e for e in written if e.label == "crisis"]
    assert 0.45 <= len(crisis) / len(written) <= 0.55
    english = sum(detect_language(e.text) == "en" for e in written) / len(written)
    assert 0.2 <= english <= 0.35
    kinds = Counter(e.category for e in crisis)
    for kind in training.KIND_TO_CLASS:
        assert kinds[kind] >= 50, kind


def test_the_written_file_shares_no_text_with_the_evaluation_sets(written):
    trained = {normalize(e.text) for e in written}
    for path in (DEV_SET, ROOT / "data" / "safety_heldout.jsonl"):
        assert not trained & {normalize(e.text) for e in read_examples(path)}, path


def test_an_unknown_crisis_category_names_its_line(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"text": "x", "label": "crisis", "category": "sad"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="line 1: crisis category 'sad'"):
        training.target_class(read_examples(path)[0])


# --- paraphrases of the development messages ------------------------------------------------------


def test_a_paraphrase_is_its_source_reworded_in_its_sources_fold(tmp_path):
    context = [
        {"role": "user", "content": "最近很难熬"},
        {"role": "assistant", "content": "愿意多说说吗"},
    ]
    real = Example(
        4, "想一了百了", "crisis", "suicidal_ideation", context, "crisis", id="smile-7-t03"
    )
    psy = Example(12, "累死了", "non_crisis", "unrelated")
    sources = {"smile-7-t03": (real, "real_scored"), "psysuicide:12": (psy, "psysuicide")}
    path = tmp_path / "paraphrases.jsonl"
    lines = [
        {"source": "smile-7-t03", "text": "真想结束这一切"},
        {"source": "psysuicide:12", "text": "累成狗了"},
        {"source": "smile-7-t03", "text": "活着没意思，不如走了"},
    ]
    path.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in lines), encoding="utf-8")
    first, second, third = training.paraphrased(sources, path)
    assert first[0] == replace(real, text="真想结束这一切")  # label, category, conversation kept
    assert first[1] == "real:smile-7"  # the dialogue's fold, whichever round labelled it
    assert second == (replace(psy, text="累成狗了"), "psysuicide:12", 1.0, "psysuicide")
    assert first[3] == "real_scored"  # the source's own source, for the cross-validation report
    assert first[2] == third[2] == 0.5  # two rewordings of one message share its weight


@pytest.mark.parametrize(
    "line,problem",
    [
        (
            '{"source": "smile-999-t01", "text": "不想活了"}',
            ":1: source: 'smile-999-t01' is not a development message",
        ),
        ('{"source": "smile-7-t03", "text": "  "}', ":1: text: missing"),
        ("{not json", ":1: (line): not valid JSON"),
        ('{"source": ["smile-7-t03"], "text": "不想活了"}', ":1: source: ['smile-7-t03'] is not"),
        ('["smile-7-t03"]', ":1: (line): must be a JSON object"),
    ],
)
def test_a_bad_paraphrase_line_names_its_line_and_field(tmp_path, line, problem):
    example = Example(1, "想死", "crisis", "suicidal_ideation", id="smile-7-t03")
    path = tmp_path / "paraphrases.jsonl"
    path.write_text(line, encoding="utf-8")
    with pytest.raises(LabelledSetError, match=re.escape(f"{path}{problem}")):
        training.paraphrased({"smile-7-t03": (example, "real")}, path)


def test_the_shipped_paraphrases_reword_development_messages_only():
    """A held-out message (or anything else) as a source would fail to load."""
    sources = training.paraphrase_sources(training.development_sets())
    paraphrases = training.paraphrased(sources)
    assert len(paraphrases) > 1500
    crises = sum(example.label == "crisis" for example, *_ in paraphrases)
    assert 0.4 < crises / len(paraphrases) < 0.8


# --- training and the shipped weights --------------------------------------------------------------


def small_training_set():
    texts = [
        "我真的不想活了",
        "今天天气不错",
        "我想去死",
        "周末去爬山",
        "i want to die",
        "nice day",
    ]
    examples = [
        training.Sample(training.evidence_of(e), training.target_class(e), "written", str(i))
        for i, e in enumerate(
            read_examples_from(
                [(t, "crisis" if i % 2 == 0 else "non_crisis") for i, t in enumerate(texts)]
            )
        )
    ]
    return examples


def read_examples_from(pairs):
    from anxin.safety.sets import Example

    return [
        Example(i + 1, text, label, "suicidal_active" if label == "crisis" else "everyday")
        for i, (text, label) in enumerate(pairs)
    ]


def test_training_is_deterministic():
    samples = small_training_set()
    config = clf.TrainingConfig(steps=40)
    first, second = training.fit(samples, config), training.fit(samples, config)
    assert np.array_equal(first.buckets, second.buckets)
    assert np.array_equal(first.weights, second.weights)
    assert np.array_equal(first.bias, second.bias)
    assert first.predict(samples[0].evidence).probability > 0.5
    assert first.predict(samples[1].evidence).probability < 0.5


def test_the_shipped_weights_record_what_they_were_trained_on():
    """Fails when a training file or a rule changed: run `python -m anxin.safety.training
    --write` (and `--cv` to check the thresholds in rules/classifier.yaml still hold)."""
    model, provenance = clf.CrisisClassifier.load(clf.WEIGHTS_FILE)
    assert model.config == clf.CONFIG
    assert provenance.sources == training.provenance(0).sources
    assert provenance.rules_sha256 == training.rules_digest()
    assert provenance.examples > 6000
    assert clf.WEIGHTS_FILE.stat().st_size < 4_000_000  # shipped in the wheel: a few MB at most


@pytest.mark.slow
def test_retraining_reproduces_the_shipped_weights():
    retrained = training.fit(training.training_samples())
    shipped, _ = clf.CrisisClassifier.load(clf.WEIGHTS_FILE)
    assert np.array_equal(retrained.buckets, shipped.buckets)
    # the shipped weights are float16; a probability moves by far less than a threshold step
    assert np.abs(retrained.weights - shipped.weights).max() < 0.01


def test_without_its_weights_the_care_layer_decides_by_its_rules_and_says_so(monkeypatch, tmp_path):
    monkeypatch.setattr(clf, "WEIGHTS_FILE", tmp_path / "absent.npz")
    clf.shipped_classifier.cache_clear()
    try:
        detector = CrisisDetector()
        crisis = detector.assess("我想自杀")
        calm = detector.assess("今天天气不错")
    finally:
        clf.shipped_classifier.cache_clear()
    assert crisis.level == "crisis" and care.UNAVAILABLE in crisis.reasons
    assert calm.level == "none" and care.UNAVAILABLE in calm.reasons and calm.score is None


def test_training_reads_a_message_as_the_detector_does(monkeypatch):
    context = [
        {"role": "user", "content": "我觉得活着没什么意思"},
        {"role": "assistant", "content": "你最近有没有想过结束自己的生命？"},
    ]
    seen = []
    model = clf.shipped_classifier()
    monkeypatch.setattr(
        model, "predict", lambda evidence: seen.append(evidence) or clf.Prediction(0.0, "x")
    )
    CrisisDetector().assess("嗯，有时候会", context)
    from anxin.safety.sets import Example

    built = training.evidence_of(Example(1, "嗯，有时候会", "crisis", "x", context))
    assert seen == [built]
    earlier = care.read_rules("我觉得活着没什么意思")  # the earlier turn, as the rules read it
    assert built.asked_about_safety and built.earlier[0] == (
        earlier.level,
        tuple(earlier.categories),
    )


# --- what it adds to the rules -----------------------------------------------------------------------

# Written for this test and checked not to be in any training data: new ways of saying the same
# things. Not all must pass (a classifier generalises, it does not recite), but most must.
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


def test_most_paraphrases_it_was_not_trained_on_are_a_crisis():
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


def test_a_phrasing_no_rule_knows_is_raised_by_the_learned_stage_with_its_reason():
    text = "我把猫托付给朋友了，以后也不用再麻烦谁了"
    assert care.read_rules(text).level != "crisis"
    assessment = CrisisDetector().assess(text)
    assert assessment.level == "crisis" and assessment.score >= care.CRISIS_AT
    assert assessment.categories and set(assessment.categories) <= set(CRISIS_CATEGORIES)
    [reason] = [r for r in assessment.reasons if r.startswith("learned:")]
    assert float(reason.split(":")[1]) >= care.CRISIS_AT


def test_the_learned_stage_does_not_lower_what_the_rules_found():
    assessment = CrisisDetector().assess("我想自杀")
    assert assessment.level == "crisis" and assessment.score == 1.0


def test_a_message_whose_risk_words_the_rules_all_lowered_needs_the_higher_bar(monkeypatch):
    monkeypatch.setattr(care, "CRISIS_AT", 0.0)  # the learned stage would call anything a crisis
    text = "我从来没有想过要结束自己的生命"
    assert care.LOWERED in care.read_rules(text).reasons
    assert CrisisDetector().assess(text).level != "crisis"
    assert CrisisDetector().assess("今天想吃火锅").level == "crisis"  # nothing lowered there
    monkeypatch.setattr(care, "LOWERED_CRISIS_AT", 0.0)  # sure enough to overrule the rules
    assert CrisisDetector().assess(text).level == "crisis"


def test_english_whose_risk_words_the_rules_lowered_is_never_raised_to_crisis(monkeypatch):
    for name in ("CRISIS_AT", "LOWERED_CRISIS_AT", "ENGLISH_CRISIS_AT"):
        monkeypatch.setattr(care, name, 0.0)
    text = "i would never hurt myself, i promise"
    assert care.LOWERED in care.read_rules(text).reasons
    assert CrisisDetector().assess(text).level != "crisis"


def test_a_crisis_sentence_in_a_long_message_is_also_read_alone():
    """The message's pieces are scaled to unit length, so a crisis sentence among many ordinary
    ones weighs little; P(crisis) averages the whole with its likeliest sentence read alone, in
    the same conversation."""
    crisis = ["我不想活了。", "真的想去死。", "活着好累，想死。", "我想结束自己。"]
    ordinary = ["今天去上课了。", "中午吃了面条。", "下午和同学打球。", "晚上写作业。"]
    rows = [clf.features(clf.Evidence(normalize(t))) for t in crisis + ordinary]
    suicidal = clf.CLASSES.index("suicidal_ideation")
    unsure = replace(clf.CONFIG, steps=3, learning_rate=0.1)  # probabilities inside (0, 1)
    model = clf.train(rows, [suicidal] * 4 + [0] * 4, config=unsure)
    text = "".join(ordinary * 3) + "我不想活了。" + "".join(ordinary)
    post = training.evidence_of(Example(1, text, "crisis", "suicidal_ideation", ["你好", "你好"]))
    assert len(post.sentences) == 17 and post.has_context
    row = clf.features(post, unsure)
    whole = float(1.0 - model.probabilities(*row)[0])
    context = model._scores(*clf.context_features(post, unsure))
    alone = [
        float(
            1.0
            - clf._softmax(model._scores(*clf.message_features(s, unsure)) + context + model.bias)[
                0
            ]
        )
        for s in post.sentences
    ]
    pooled = model.predict(post).probability
    assert pooled == pytest.approx((whole + max(whole, *alone)) / 2, abs=1e-4)
    assert 0.05 < whole < 0.5 < max(alone) < 0.99 and pooled > whole
    # a message of one sentence is read once
    short = training.evidence_of(Example(1, "我不想活了", "crisis", "suicidal_ideation"))
    whole_short = float(1.0 - model.probabilities(*clf.features(short, unsure))[0])
    assert model.predict(short).probability == pytest.approx(whole_short, abs=1e-4)


def test_after_a_crisis_turn_the_message_is_read_again_marked():
    """A linear model cannot weigh 活着好累 more after 我不想活了 than alone unless some pieces
    say both at once: after a user turn the rules read as a crisis, the message's own pieces
    come again, marked; after anything less, nothing does."""

    def read(earlier: str) -> clf.Evidence:
        context = [earlier, {"role": "assistant", "content": "我在听，你愿意多说一点吗？"}]
        return training.evidence_of(Example(1, "活着真的好累", "crisis", "x", context))

    after, after_concern, calm = read("我不想活了"), read("撑不下去了"), read("今天去上课了")
    assert [level for level, _ in after.earlier] == ["crisis"]
    assert [level for level, _ in after_concern.earlier] == ["concern"]
    pieces = clf._after_crisis_pieces(after, clf.CONFIG)
    assert {"after:crisis", "after:c好累", "after:c活", f"after:level={after.level}"} <= pieces
    assert not any(piece.startswith("after:c我不") for piece in pieces)  # the message's only
    assert clf._after_crisis_pieces(after_concern, clf.CONFIG) == set()
    assert clf._after_crisis_pieces(calm, clf.CONFIG) == set()
    off = replace(clf.CONFIG, after_crisis_weight=0.0)
    with_them, without = clf.context_features(after)[0], clf.context_features(after, off)[0]
    assert set(without) < set(with_them)


def test_a_sentence_read_alone_after_a_crisis_turn_brings_its_own_after_crisis_pieces():
    context = ["我不想活了", {"role": "assistant", "content": "我在听，你愿意多说一点吗？"}]
    text = "晚上和室友去散步了。活着真的好累，不知道还有什么意义。"
    post = training.evidence_of(Example(1, text, "crisis", "x", context))
    model = clf.shipped_classifier()
    assert len(post.sentences) == 2 and clf.after_crisis_features(post) is not None

    def crisis(evidence: clf.Evidence) -> float:  # one reading: the message and its context
        return float(1.0 - model.probabilities(*clf.features(evidence, model.config))[0])

    whole = crisis(post)
    alone = [crisis(replace(post, text=sentence)) for sentence in post.sentences]
    assert model.predict(post).probability == pytest.approx(
        (whole + max(whole, *alone)) / 2, abs=2e-4
    )


def test_line_breaks_end_sentences_as_punctuation_does():
    """Normalising joins lines, so a message is split into sentences before it is normalised."""
    lines = "今天去上课了\n中午吃了面条\n我真的不想活了\n晚上写作业"
    by_stop = [sentence.rstrip("。") for sentence in clf.sentences_of(lines.replace("\n", "。"))]
    expected = ["今天去上课了", "中午吃了面条", "我真的不想活了", "晚上写作业"]
    assert list(clf.sentences_of(lines)) == by_stop == expected
    assert len(clf.sentences_of("嗯。好的！我想想。")) == 1  # pieces under four characters
    many = "".join(f"第{i}句话在这里。" for i in range(100))  # 1,000 characters
    kept = clf.sentences_of(many)
    assert kept[0] == "第0句话在这里。" and kept[-1] == "第99句话在这里。"
    assert "第50句话在这里。" not in kept and len(kept) == clf.MAX_SENTENCES
    assert sum(map(len, kept)) <= clf.SENTENCE_CHARS
    assert clf.sentences_of("我不想活了。" * 1000) == ()  # a paste is read whole only


@pytest.mark.parametrize(
    "text, context",
    [
        ("", []),
        ("我最近睡不好。工作压力很大。有时候觉得活着没意思。", []),
        ("I had a long day at work. My boss yelled at me. I just want to sleep.", []),
        ("今天好累。" * 300, []),  # over max_chars: the whole and its sentences clipped alike
        (
            "是的。我已经想好了。就在今晚。",
            ["我不想活了", {"role": "assistant", "content": "你有没有想过伤害自己？"}],
        ),
    ],
)
def test_cross_validation_scores_a_message_as_predict_does(text, context):
    evidence = training.evidence_of(Example(1, text, "non_crisis", "", context))
    model = clf.shipped_classifier()
    row = clf.features(evidence, model.config)
    assert model.crisis_probability(evidence, row) == model.predict(evidence).probability


def test_the_score_reaches_the_threshold_exactly_when_the_level_is_crisis():
    detector = CrisisDetector()
    for text in [*HELD_OUT_CRISIS, *HELD_OUT_HARMLESS, "再见", "goodbye"]:
        assessment = detector.assess(text)
        assert (assessment.score >= care.CRISIS_AT) == (assessment.level == "crisis"), text


# --- the dev set, through the command a user runs ------------------------------------------------------


def test_safety_eval_on_the_written_dev_set_keeps_its_recall_at_the_chosen_false_alarms(
    capsys, tmp_path
):
    """Before the learned stage read real text: recall 0.998 (406/407), false-positive rate
    0.005. Its threshold now trades written hard negatives for real recall (0.043 measured, the
    table in rules/classifier.yaml); recall must not drop, false alarms not pass 0.06."""
    parser = argparse.ArgumentParser()
    commands.add_arguments(parser)
    out = tmp_path / "safety_dev_eval.json"
    args = parser.parse_args(
        ["eval", str(DEV_SET), "--min-recall", "0.997", "--max-fpr", "0.06", "--json", str(out)]
    )
    assert commands.main(args) == 0
    printed = capsys.readouterr()
    assert "below target" not in printed.err and "timed on: " in printed.out
    record = json.loads(out.read_text(encoding="utf-8"))
    assert record["overall"]["recall"] >= 0.997
    assert {"cpu", "cpu_flags", "usable_cores"} <= set(record["machine"])  # what the times mean


# --- cross-validation: the detector's rule, replayed on out-of-fold scores -----------------------

# Messages that reach each branch of care._weighed: a crisis of the rules, a lowered one, a short
# one without context, English, a concern of the rules, everyday text, and context that decides.
REPLAYED = [
    ("我想自杀", []),
    ("我从来没有想过要结束自己的生命", []),
    ("再见", []),
    ("i honestly wish i could stop being alive", []),
    ("i would never hurt myself", []),
    ("活着好没意思", []),
    ("今天想吃火锅", []),
    ("我把猫托付给朋友了，以后也不用再麻烦谁了", []),
    ("是的", ["我不想活了", {"role": "assistant", "content": "你是不是想过结束自己的生命？"}]),
    ("都安排好了", ["我不想活了"]),
    ("周末我们一起去看了电影", ["我男朋友有暴力倾向，在一起两年了"]),  # the concern floor
    # a plain no to the safety question: the learned stage may give concern, not crisis
    ("没有 不想活 只是累", ["好累", {"role": "assistant", "content": "你有没有想过不想活了？"}]),
]


@pytest.mark.parametrize("text,context", REPLAYED)
@pytest.mark.parametrize("probability", [0.0, 0.05, 0.1, 0.5, 0.9, None])
def test_cross_validation_replays_the_detectors_decision(monkeypatch, text, context, probability):
    """`level_by_the_detector`, which picks the thresholds from out-of-fold scores, gives the
    level the detector gives for the same P(crisis) (None: the shipped model's)."""
    example = Example(1, text, "non_crisis", "x", list(context))
    sample = training.Sample(training.evidence_of(example), 0, "real", "g")
    model = clf.shipped_classifier()
    if probability is not None:
        shipped_predict = model.predict
        monkeypatch.setattr(
            model,
            "predict",
            lambda evidence: replace(shipped_predict(evidence), probability=probability),
        )
    found = model.predict(sample.evidence).probability
    assert training.level_by_the_detector(sample, found) == care.decide(text, context).level


def test_the_cross_validation_report_marks_each_shipped_threshold():
    examples = [Example(i, text, "non_crisis", "x", []) for i, (text, _) in enumerate(REPLAYED)]
    samples = [
        training.Sample(training.evidence_of(e), int(i % 2), source, f"{source}:{i}")
        for i, e in enumerate(examples)
        for source in ("real", "psysuicide")
    ]
    report = training.cv_report(samples, np.linspace(0.0, 1.0, len(samples)))
    assert report.count("<- shipped") == 3
    for name in ("crisis_at", "lowered_crisis_at", "concern_at"):
        assert f"{name} " in report


def test_the_cross_validation_report_gives_the_rewordings_by_their_sources_source():
    """Rules alone and the detector on the paraphrases, apart for each source they reword."""
    crisis = Example(1, "丧到爆了 真不想活了", "crisis", "suicidal_ideation")
    calm = Example(2, "累死了，想睡觉", "non_crisis", "idiom")
    samples = [
        training.Sample(training.evidence_of(crisis), 1, "paraphrase", "real:smile-1", 1.0, "real"),
        training.Sample(training.evidence_of(calm), 0, "paraphrase", "real:smile-2", 1.0, "real"),
        training.Sample(
            training.evidence_of(calm), 1, "paraphrase", "real:smile-3", 1.0, "real_scored"
        ),
        training.Sample(training.evidence_of(calm), 0, "real", "real:smile-4"),
    ]
    lines = training._rewordings_report(samples, np.array([0.9, 0.9, 0.1, 0.0]))
    real, scored = (line for line in lines if line.startswith("  of "))
    assert "of real " in real and "n     2 (1 crises)" in real
    assert "rules alone 1.000 / 0.000" in real  # 不想活 by the rules; 累死了 is an idiom
    assert "detector 1.000 / 1.000" in real  # P 0.9 on the idiom is past the crisis bar
    assert "of real_scored" in scored and "detector 0.000 / -" in scored  # no non-crisis there
    assert not any("psysuicide" in line for line in lines)  # no rewordings of it given


def test_learned_probability_ranks_before_any_bar():
    """What a labelling round ranks by: 1 for a crisis the rules and context cues found, else
    the raw P(crisis), not clamped below crisis_at the way the detector's score is."""
    assert care.learned_probability("我已经想好了，就在今晚", ["我不想活了"]) == 1.0
    everyday = care.learned_probability("今天天气不错，我们去公园散步了")
    assert 0.0 <= everyday < care.CONCERN_AT
    lowered = "我没有想死，只是最近很累，但我朋友说她想自杀"
    assert care.decide(lowered).level != "crisis"
    assert care.learned_probability(lowered) == pytest.approx(
        float(care.decide(lowered).reasons[-1].removeprefix("learned:")), abs=0.005
    )


def test_a_message_the_rules_call_a_crisis_is_learned_from_without_their_reading():
    """The learned stage is never asked about such a message (training.training_row)."""
    crisis, other = read_examples_from([("我想自杀", "crisis"), ("最近工作好累", "non_crisis")])
    ruled, unruled = training.evidence_of(crisis), training.evidence_of(other)
    assert ruled.context_level == "crisis" and unruled.context_level != "crisis"
    without_reading = replace(clf.CONFIG, evidence_weight=0.0)
    for row, expected in (
        (training.training_row(ruled), clf.features(ruled, without_reading)),
        (training.training_row(unruled), clf.features(unruled)),
    ):
        assert all(np.array_equal(a, b) for a, b in zip(row, expected))
    assert len(clf.features(ruled)[0]) > len(training.training_row(ruled)[0])
    computed = clf.features(unruled)  # a row already computed is kept, unless it must change
    assert training.training_row(unruled, row=computed) is computed
    assert len(training.training_row(ruled, row=clf.features(ruled))[0]) < len(
        clf.features(ruled)[0]
    )
