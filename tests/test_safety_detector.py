"""The crisis detector: each crisis category, each kind of hard negative, context, privacy, speed."""

import json
import re
import time
from pathlib import Path

import pytest

from anxin.safety import Assessment, CrisisDetector, detect_language, normalize
from anxin.safety.care import decide
from anxin.safety.commands import read_examples
from anxin.safety.detector import read_rules
from anxin.safety.text import matching_text, matching_text_and_word_gaps

DEV_SET = Path(__file__).resolve().parent.parent / "data" / "safety_dev.jsonl"


@pytest.fixture(scope="module")
def detector():
    return CrisisDetector()


CRISIS = {
    "suicidal_ideation": [
        "我真的不想活了",
        "活着没意思，每天都是煎熬",
        "好想死啊😭",
        "我再也不想醒来了",  # 再也不 makes the match's own 不想 stronger; it negates nothing
        "撑不住了，想一了百了",
        "有时候会想，我要是消失了，大家是不是会更好，真想永远离开这个世界",
        "想自殺",
        "I want to kill myself",
        "there's no reason for me to keep living",
        "i wish i was dead",
        "我真的 want to die",
    ],
    "plan_means": [
        "安眠药吃多少片会死",
        "从几楼跳下去一定会死",
        "我偷偷攒了好多安眠药",
        "我刚把一整瓶药都吞了",
        "what's a lethal dose of tylenol",
        "how high does a building have to be to die from the fall",
    ],
    "self_harm": [
        "我又割腕了",
        "控制不住想自残",
        "拿刀片划自己的手臂才觉得好受",
        "I cut myself again last night",
        "the urge to self harm is really strong tonight",
    ],
    "harm_others": [
        "我真的想杀了他，刀都准备好了",
        "我想跟他同归于尽",
        "I'm going to kill him when he gets home, I have a knife",
    ],
    "abuse_danger": [
        "我老公又打我了，我躲在厕所里",
        "我被锁在家里出不去",
        "他掐着我的脖子",
        "my boyfriend hits me and I'm scared to go home",
        "he's threatening to kill me",
    ],
}


@pytest.mark.parametrize(
    "category,text", [(c, t) for c, texts in CRISIS.items() for t in texts], ids=repr
)
def test_crisis_is_detected_with_its_category(detector, category, text):
    assessment = detector.assess(text)
    assert assessment.level == "crisis"
    assert category in assessment.categories


HARD_NEGATIVES = {
    "hyperbole": [
        "今天加班到十一点，累死了",
        "哈哈哈笑死我了",
        "气死我了，外卖又送错了",
        "饿死了，午饭还没吃",
        "尴尬得想死，当众叫错了老板的名字",
        "你终于回来了，想死你了！",
        "手机又死机了",
        "我宁愿去死也不要跟他复合",
        "lol I'm dying, that video is hilarious",
        "I'd rather die than go to that party",
    ],
    "relationship": ["我对他已经心死了，不想再挽回了"],
    "grief": [
        "奶奶上周去世了，今天参加了她的葬礼",
        "my grandpa passed away and the funeral is tomorrow",
    ],
    "pet": ["我养了十二年的狗今天死了，好难过", "our cat died yesterday"],
    "fear_of_death": ["我很怕死，一想到死就睡不着", "I'm terrified of dying"],
    "prescribed_pills": [
        "医生给我开了安眠药，每晚睡前吃半片",
        "按医嘱吃了安眠药还是睡不着",
        "安眠药一次吃一片就够了吗",
        "my doctor prescribed sleeping pills for my insomnia",
    ],
    "negation": [
        "我没有想自杀，只是压力太大",
        "我从来没想过轻生",
        "我不会自杀的，放心",
        "我不想死，我只是想休息",
        "I'm not suicidal, just stressed",
        "I would never hurt myself",
    ],
    "reported": [
        "新闻里说有个大学生跳楼了",
        "电视剧的女主角最后自杀了",
        "《自杀小队》好看吗",
        "I read in the news that a man jumped off a bridge",
        "the article said suicide rates are rising",
    ],
    "information": [
        "我在写一篇关于青少年自杀预防的论文",
        "how can I support someone who is suicidal?",
    ],
    "accident": ["切菜的时候不小心划到手了", "I cut myself shaving this morning"],
}


@pytest.mark.parametrize(
    "kind,text", [(k, t) for k, texts in HARD_NEGATIVES.items() for t in texts], ids=repr
)
def test_hard_negatives_are_not_a_crisis(detector, kind, text):
    assert detector.assess(text).level != "crisis"


@pytest.mark.parametrize(
    "text",
    ["好累，感觉撑不下去了", "我觉得自己是个负担", "I feel so hopeless about everything"],
)
def test_hopelessness_without_suicidal_content_is_concern(detector, text):
    """The rules call it concern (hopelessness); the learned stage may raise it, never lower."""
    rules = read_rules(text)
    assert rules.level == "concern" and "hopelessness" in rules.categories
    assert detector.assess(text).level in ("concern", "crisis")


@pytest.mark.parametrize(
    "text,category",
    [
        ("初中的时候我自残过，现在已经好了很多", "past_history"),
        ("I attempted suicide years ago, but I'm doing much better now", "past_history"),
        ("我朋友说她想自杀，我该怎么帮她", "third_party"),
    ],
)
def test_past_events_and_people_the_user_knows_are_concern(detector, text, category):
    assessment = detector.assess(text)
    assert assessment.level == "concern" and category in assessment.categories


@pytest.mark.parametrize(
    "text,level",
    [
        ("过去两周我反复想到死", "crisis"),  # a window up to today is recent, not the past
        ("随访自述：过去2周睡眠差，有消极念头，想过从楼上跳下去", "crisis"),
        ("在过去的几个月里，我想过自杀", "crisis"),
        ("过去半个月，我写好了遗书", "crisis"),
        ("过去两年我自残过，现在已经好了", "concern"),  # the window told as over
        ("过去我自残过", "concern"),  # 过去 alone is back then
        ("过去的我想过死，现在好多了", "concern"),
        ("这件事已经过去两年了，那时候我想过死，现在好了", "concern"),
    ],
)
def test_a_window_after_guoqu_comes_to_today(text, level):
    assert read_rules(text).level == level


@pytest.mark.parametrize(
    "text,rules_level",
    [
        ("初三女生，父母期望太高，特别想死该怎么办", "crisis"),  # 特别 is no 别 (don't)
        ("最近特别想伤害自己", "crisis"),
        ("吃药如果没有用就去死", "crisis"),  # 没有 negates 用, not 去死
        ("和男朋友分手后想死", "crisis"),  # the boyfriend is whom it happened with
        ("初中生，想自杀怎么办", "crisis"),  # a pupil now, not a story of school days
        ("好久不见，想死他了", "none"),  # missing someone
        ("我没有想死，就是太累了", "none"),  # a real negation still lowers
        ("我股票亏了，但我不想跳楼", "none"),  # 不 right before the match's own 想
        ("我不想去死，我只是想休息", "none"),
        ("不想上学想死", "crisis"),  # the match's own 想 is a second wish, not the one negated
        ("我不想让他们知道我想死", "crisis"),
        ("我不想想死的事", "none"),
        ("如果来访者有自杀倾向，我该怎么做", "none"),  # a counsellor's question
        # the user as the one told: the one telling is who the words are about
        ("我表妹跟我说不想活了，还发了药瓶的照片，我吓坏了", "concern"),
        ("我妈半夜给我打电话哭着说活着没意思", "concern"),
        ("她跟我说了很多，我不想活了", "crisis"),  # 我 acts again after being told
        ("男朋友跟我分手了，我想死", "crisis"),
        # a person word as a role the user holds or fails at is not who acts
        ("我不配当妈妈，不想活了", "crisis"),
        ("我没资格做孩子的妈妈，不如去死", "crisis"),
        ("和他做不成朋友，自残了", "crisis"),
        ("连朋友都做不成，活着还有什么意思", "crisis"),
        ("当妈妈说不想活了的时候，我很害怕", "concern"),  # 当 as "when": still the mother
        ("作为朋友，他说他想死，我该怎么办", "concern"),
        # a period told back is the past only when the message says the risk is over
        ("初二那会儿用圆规划了手臂，现在已经两年多没碰过了", "concern"),
        ("刚确诊那两年常常想死，现在四年没有那种念头了", "concern"),
        ("那两年读研也是混日子，现在不知道活着的意义，如果我死了爸妈怎么办", "crisis"),
        # inside a quotation, 我 is whoever said it
        ("我老公昨晚喝多了说“我死了你们拿保险过好日子”，我该当真吗", "concern"),
        ("他最近老念叨“我活着有什么用”", "concern"),
        ("我跟我妈说“我不想活了”，她骂我矫情", "crisis"),
        ("我在日记里写：“我不想活了”", "crisis"),
        ("我儿子冲我喊你怎么不去死", "concern"),  # the child's curse, not the user's wish
        ("我爸让我死了这条心，只能读普高", "none"),  # an idiom: give up on it
        # a habit that began then and ended later is over (初中开始就会想死了 alone is now)
        ("初中开始就会割手腕，高中以后就好了，已经三年没有了", "concern"),
        # a story of a risk said to be over, ending in today's life (最近 not about the risk)
        ("以前想过自杀，现在好多了。最近有个战友问我怎么熬过来的", "concern"),
        # ... but with no word that it is over, any present cue is now (停药 is no recovery)
        ("刚退伍那两年我有过不想活的念头，后来停药三年了。最近有个战友问我怎么熬过来的", "crisis"),
        # ... and with one, a present cue counts only where the rest of its sentence speaks of
        # the risk (before a word of the past: 这几天翻到以前写的日记，那时候天天想死)
        (
            "刚退伍那两年我有过不想活的念头，后来停药三年了，状态一直挺稳。最近有个战友问我怎么熬过来的",
            "concern",
        ),
        ("这几天翻到以前写的日记，那时候天天想死，庆幸自己走出来了", "concern"),
        ("刚工作那两年压力大 经常拿烟头烫自己 现在不会了 就是还是天天加班", "concern"),
        ("那段时间每天都想死，后来慢慢好起来了，最近还养了一只猫", "concern"),
        # ... unless its clause turns against the word of recovery, or sets the time of the next
        ("那两年天天想死，后来好多了，可是这两天又睡不着", "crisis"),
        ("我之前自残过，很久没伤过了，直到今天下午，没控制住", "crisis"),
        # 之前 is a period told back, with a word of recovery after the risk (not 睡着之前)
        ("我之前有想过自杀，但是现在没有了", "concern"),
        ("之前的检查都正常，但我总觉得活着没意思，想死", "crisis"),
        ("每天晚上睡着之前总会冒出想死的念头", "crisis"),
        # a word of recovery doubted, denied or taken back is none
        ("我之前一直想死，家里人都以为很久没有这样了，其实我只是藏得好", "crisis"),
        ("我之前想过死，现在不想了……才怪", "crisis"),
        ("之前想过死，现在没有了？怎么可能，我只是不敢说", "crisis"),
        ("以前想死，现在好多了，骗你的，我最近一直在看哪里的楼比较高", "crisis"),
        ("以前想过死，现在好多了，其实还挺开心的", "concern"),
        # what a withdrawn reading took for the past (a sentence after: ……的事了, 那是……年前; a
        # word of recovery about something else): data/safety_posts/README.md
        ("我想割腕。这都是我自己的事了，你别管", "crisis"),
        ("我想死，这是三年前就有的念头了", "crisis"),
        ("我想死。那都是两年前的事了，我以为我早就好了", "crisis"),
        ("两年前我就想死，活下去的念头早就没了", "crisis"),
        ("大二那年我开始想死，和他的事早翻篇了，可想死的心没变", "crisis"),
        ("高一的时候我就想死，现在高三了还是这样，成绩倒是好多了", "crisis"),
        ("初中想过死。最近天天想，朋友早就没了", "crisis"),
        ("高中的时候想过跳楼，后来状态一直挺稳的，可是这几天站在阳台上又往下看了好久", "crisis"),
        # ... but over and then back, or recent, is now; and with no word that it is over, any
        # present cue is (昨晚又没忍住 speaks of the risk without its words)
        ("以前想过死，现在好多了，可最近又想死了", "crisis"),
        ("那两年天天想死，后来好了。可这几个月又回到那种状态了", "crisis"),
        ("那段时间我天天想自杀，后来好多了，但这几天又不对劲了", "crisis"),
        ("我前段时间还割腕过两次，但都被发现制止了", "crisis"),
        ("以前想过割腕。昨晚又没忍住。", "crisis"),
        ("我想死，跟以前一样。最近每天都这样。", "crisis"),
        # today's life after a risk that is over, in words that only look like the risk's
        ("以前想过割腕，后来好了。最近在学跳舞", "concern"),
        ("以前想过死，现在好多了，最近忙着搬家累死了", "concern"),
        # a line break ends a sentence, as a full stop does
        ("以前自杀过\n现在好多了\n今天和朋友去爬山了", "concern"),
        # whom the violence is done to: 踢我妈 is the mother, 打我妈也不管 is the speaker
        ("我爸一喝醉就踢我妈，我好害怕", "concern"),  # a family member hit: concern
        ("我爸打我妈也不管", "crisis"),
        ("我爸一喝酒就打我妈和我", "crisis"),
        ("我爸打我妈妈也不管", "crisis"),  # 妈妈 read whole, not 妈 + 妈
        ("他打我妈，也打我", "crisis"),  # the user hit in a clause that names no one
        ("我爸天天打我妈，昨天也动手打了我", "crisis"),
        # everyday senses of the words the phrase families read
        ("我老公今天动手做饭了", "none"),
        ("宝宝又踢我了", "none"),
        ("想到死线就头大", "none"),
        ("闺蜜的奶奶去世了，我马上就去陪她", "none"),
    ],
    ids=repr,
)
def test_chinese_read_as_chinese(text, rules_level):
    """Words that only look like a negation, a third person or the past do not lower a
    risk word, and the real ones still do."""
    assert read_rules(text).level == rules_level


@pytest.mark.parametrize(
    "text",
    [
        # a period told back, but the risk is back now, or was never over
        "五年前确诊抑郁症，那会儿吃药慢慢好起来了，可是这半年又复发了，每天晚上都想从楼上跳下去",
        "三年前我自残过，已经两年没碰过了，可是昨晚又割了",
        "三年前离婚，我一直没走出来，想死",
        "他两年前走了，我再也没有过一天好日子，不想活了",
        "我真的好想死，那几年抑郁症明明已经好了",
        # told or shouted at, and then the user's own wish
        "老公天天对我吼，不想活了",
        "我爸昨天又给我打了一顿，真的不想活了",
        "没有人跟我说话，好想死",
        # the user's own words in quotation marks, or a quotation never closed
        "老公问怎么了，哭着说“我不想活了”",
        "他说“你去死吧，我真的不想活了",
        # everyone and no one are not a person the words belong to; nor is someone the user
        # only faces, or is driven mad by (冲她, 被室友)
        "两年了删不掉也放不下，所有人都冷漠，想去死怎么办？",
        "跟婆婆吵完架我不敢冲她发火，就回屋关上门使劲扇自己耳光",
        "我已经快被女权室友逼疯了，难受到吞了好多药才入睡",
        # a past that began a habit of now
        "初中开始就会想死了",
    ],
    ids=repr,
)
def test_cues_for_someone_else_or_the_past_leave_the_users_own_crisis(text):
    assert read_rules(text).level == "crisis"


@pytest.mark.parametrize(
    "phrase",
    [
        "我有时候会想不如就这样死掉也挺好",
        "对活着的欲望越来越少，对死亡的感觉越来越强",
        "有时甚至想到了死亡",
    ],
)
def test_a_wish_to_die_in_the_middle_of_a_long_post_is_read_by_the_rules(phrase):
    """The rules read every sentence alike: a long post about school and family does not dilute
    a wish said once in it, as it dilutes the learned stage's n-grams."""
    school = "我在中考的时候就明白了这一点，跟我一起玩的伙伴，不是出国，就是走关系读上高中。"
    family = "爸妈每天都在吵架，我回家就关上门，谁也不想理。现在还有30天考研，我每天都学不进去。"
    assert read_rules(school * 3 + phrase + "。" + family * 3).level == "crisis"


def test_a_contrast_with_now_keeps_the_crisis(detector):
    assert detector.assess("以前我很开心，现在我想死").level == "crisis"


def test_abuse_of_someone_close_stays_a_crisis(detector):
    assert detector.assess("我女儿被她继父性侵了").level == "crisis"


def test_jokes_lower_threats_to_others_to_concern(detector):
    assert detector.assess("室友又偷吃我零食，我要杀了他哈哈").level == "concern"
    assert detector.assess("I'm going to kill my brother, he ate my fries lol").level != "crisis"


# --- context -------------------------------------------------------------------------------------

USER = "user"


def said(*messages):
    return [{"role": USER, "content": m} for m in messages]


def test_vague_resolve_after_suicidal_message_is_crisis(detector):
    vague = "我已经想好了，就在今晚"
    assert detector.assess(vague).level != "crisis"
    assessment = detector.assess(vague, context=said("我觉得活着没意思，好几次想过死"))
    assert assessment.level == "crisis"
    assert "context_escalation" in assessment.categories


def test_vague_resolve_after_hopelessness_is_crisis(detector):
    context = said("I feel like such a burden to everyone")
    assert (
        detector.assess("soon they won't have to deal with me anymore", context).level == "crisis"
    )


def test_resolve_after_a_harmless_message_stays_calm(detector):
    assert (
        detector.assess("我已经决定了，明天开始好好复习", said("考试挂科了，气死了")).level
        == "none"
    )


def test_a_decision_towards_help_is_not_escalated(detector):
    context = said("I feel hopeless")
    assert detector.assess(
        "I've made up my mind, I'm seeing a therapist tomorrow", context
    ).level != ("crisis")


def test_yes_to_a_question_about_suicide_is_crisis(detector):
    context = [{"role": "assistant", "content": "你最近有没有想过结束自己的生命？"}]
    assert detector.assess("有，想过很多次", context).level == "crisis"
    assert detector.assess("没有，只是很累", context).level == "none"


def test_context_accepts_plain_strings_and_ignores_system_messages(detector):
    context = [{"role": "system", "content": "我想死"}, "我不想活了"]
    assert detector.assess("我把东西都送人了", context).level == "crisis"
    alone = detector.assess("我把东西都送人了")
    assert detector.assess("我把东西都送人了", context[:1]) == alone  # the system turn is not read


def test_the_learned_stage_reads_the_conversation_before_the_message():
    """Its probability depends on the earlier turns, not only on the message (escalation after
    a vague follow-up is still the context cues' work: see the README's care layer section)."""
    text = "我已经把事情都安排好了"
    alone = CrisisDetector().assess(text).score
    after = CrisisDetector().assess(text, said("我把猫托付给朋友了，以后也不用再麻烦谁了")).score
    assert alone is not None and after is not None and abs(alone - after) > 0.01


def test_after_a_crisis_a_calm_message_is_still_watched(detector):
    assessment = detector.assess("嗯，谢谢", said("我不想活了"))
    assert assessment.level == "concern"


def test_the_watch_after_a_users_crisis_lasts_to_the_end_of_the_conversation():
    """Rule 5 of docs/safety-labels.md: however many turns back the crisis came up, and with
    no crisis reply of the care layer's in the history (a transcript from elsewhere)."""
    from anxin.safety.care import rules_in_context

    calm = [
        "最近在准备考试",
        "室友人挺好的",
        "周末去爬山了",
        "晚饭吃了面",
        "还行吧",
        "嗯嗯",
        "好的",
    ]
    assessment = rules_in_context("谢谢你听我说这些", said("我不想活了", *calm))
    assert assessment.level == "concern"
    assert "context.earlier_crisis" in assessment.reasons
    assert rules_in_context("谢谢你听我说这些", said("我今天好累", *calm)).level == "none"


def test_a_conversation_that_told_of_abuse_keeps_at_least_the_concern_line():
    """Abuse told in passing is not a crisis for the rules, but the later turns of that
    conversation get the concern line (context.kept_watch), from the rules in context and from
    the whole detector, whose learned stage does not read it."""
    from anxin.safety.care import decide, rules_in_context

    later = ["最近工作也挺忙的", "晚上睡得还行"]
    told = said("我男朋友有暴力倾向，在一起两年了", *later)
    assert read_rules("我男朋友有暴力倾向，在一起两年了").level == "none"
    for assessment in (
        rules_in_context("周末我们一起去看了电影", told),
        decide("周末我们一起去看了电影", told),
    ):
        assert assessment.level == "concern" and "context.abuse_told" in assessment.reasons
    assert decide("周末我们一起去看了电影", told).score is not None  # its P(crisis) is kept
    calm = said("我男朋友脾气有点急，在一起两年了", *later)
    assert decide("周末我们一起去看了电影", calm).level == "none"
    assert decide("周末我们一起去看了电影", said("他老是打我电话查岗")).level == "none"


ASKED = {"role": "assistant", "content": "我想认真问一下，你最近有没有想过不想活了，或者伤害自己？"}


@pytest.mark.parametrize(
    "answer,level",
    [
        ("没有 不想活 只是累", "concern"),  # echoes the question; a no all the same
        ("没有，想死什么的不至于，就是烦", "none"),
        ("自杀不会 我还有我妈", "none"),
        ("伤害自己？没有 我连打针都怕", "none"),
        ("以前想过 现在偶尔也会", "crisis"),  # now, after the past
        ("其实有", "crisis"),
        ("说实话，想过很多次", "crisis"),
        ("不想活了", "crisis"),  # 不 opens it, but it is no denial
        ("没有 但是药我已经攒好了", None),  # a no that turns is not a plain no
        ("还没有 在等一个合适的时间", "crisis"),  # not yet: on its way
        ("还没有 但快了", "crisis"),
        ("现在没有 但不知道晚上会不会", "crisis"),
        ("不会 我还没那么惨", "none"),  # 还没 of something else
        ("说不清 可能有吧", "crisis"),  # unsure, then a yes said softly
        ("说不清 就是累", "concern"),  # unsure: a concern
        ("没有人会在乎我活不活", None),  # no one, not no
        ("不是没想过", None),  # a double no
        ("其实有过 不过现在好多了", "concern"),  # a yes that turns to it being over
        ("有过，不过现在好多了，就是晚上还是会冒出来", "crisis"),  # and back again
    ],
)
def test_an_answer_to_the_safety_question_is_read_as_yes_or_no(answer, level):
    """The assistant's safety question decides how its answer reads, both ways: a plain no is
    at most a concern (the learned stage may not answer it with the crisis script, though
    its words echo the question); what says yes, or says it goes on now, is a crisis."""
    from anxin.safety.care import decide
    from anxin.safety.context import DENIED

    found = decide(answer, said("最近工作压力好大，天天加班") + [ASKED])
    if level is None:
        assert DENIED not in found.reasons
    else:
        assert found.level == level, found.reasons


def test_a_cantonese_yes_answers_the_safety_question():
    """係 (Cantonese yes) is 系 after the traditional table, which Mandarin never says alone."""
    asked = {"role": "assistant", "content": "你有没有想过结束自己的生命？"}
    assert decide("係", said("最近好攰") + [asked]).level == "crisis"
    assert decide("係呀，好多次", said("最近好攰") + [asked]).level == "crisis"
    assert decide("冇呀，只係好攰", said("最近好攰") + [asked]).level != "crisis"


def test_an_admonition_is_no_safety_question():
    """千万别想不开，你还好吗？ admonishes; 嗯 还好 after it agrees, it does not say yes to a wish."""
    from anxin.safety.care import decide

    admonished = {"role": "assistant", "content": "千万别想不开，你还好吗？"}
    asked = {"role": "assistant", "content": "你会不会有时候觉得想不开？"}
    assert decide("嗯 还好", said("今天被老板骂了") + [admonished]).level != "crisis"
    assert decide("嗯 有时候", said("今天被老板骂了") + [asked]).level == "crisis"


@pytest.mark.parametrize(
    "question,answer,level,reason",
    [
        ("现在还会有这样的想法吗？", "会 每天都有", "crisis", "context.affirmed_risk_question"),
        ("你刚才说的那个念头，今晚还在吗", "还在", "crisis", "context.affirmed_risk_question"),
        (
            "现在还会有这样的想法吗？",
            "没有了 说出来好多了",
            "concern",
            "context.denied_risk_question",
        ),
        ("你现在安全吗？", "不太安全", "crisis", "context.unsafe_answer"),
        ("你现在是不是安全的？", "不知道", "crisis", "context.unsafe_answer"),
        ("你现在安全吗？", "嗯 安全 我在我姐家", "concern", "context.denied_risk_question"),
        ("你能答应我今晚不伤害自己吗？", "好 我答应你", "concern", "context.denied_risk_question"),
        ("你能答应我今晚不伤害自己吗？", "做不到", "crisis", "context.unsafe_answer"),
    ],
)
def test_a_follow_up_or_safe_question_after_an_earlier_crisis_reads_its_answer(
    question, answer, level, reason
):
    """现在还会有这样的想法吗？ names no risk but points back at the user's own crisis, so its
    yes is a crisis; 你现在安全吗？ and a promise asked for (答应我今晚不伤害自己) turn the
    answer round: a yes is the safe answer (at most a concern, as a plain no to a risk question
    is), and 不太安全 / 做不到 the alarm."""
    from anxin.safety.care import decide

    found = decide(answer, said("我真的不想活了") + [{"role": "assistant", "content": question}])
    assert found.level == level and reason in found.reasons, found.reasons


def test_a_yes_to_two_questions_is_not_read_as_safe():
    """嗯 想过 to 你有没有想过要怎么做？你现在安全吗？ answers the first question."""
    from anxin.safety.care import decide
    from anxin.safety.context import DENIED

    for question in ("你有没有想过要怎么做？你现在安全吗？", "你有没有想过要怎么做 你现在安全吗"):
        asked = {"role": "assistant", "content": question}
        assert DENIED not in decide("嗯 想过", said("我真的不想活了") + [asked]).reasons
    asked = {"role": "assistant", "content": "你现在安全吗？"}
    assert DENIED in decide("嗯 安全", said("我真的不想活了") + [asked]).reasons  # one question


@pytest.mark.parametrize(
    "earlier,question,answer,crisis",
    [
        # a promise beside a risk question does not hide the risk question
        ("最近压力很大", "你最近有没有想过结束自己的生命？能答应我不做傻事吗？", "有 很多次", True),
        # the unsafe answer counts when a risk question is asked too, and after an opening
        ("我真的不想活了", "你有没有想过伤害自己？你现在安全吗？", "不安全", True),
        ("我真的不想活了", "你现在安全吗？", "嗯 不太安全", True),
        ("我真的不想活了", "你现在安全吗？", "我觉得不太安全", True),
        # a safety check asks after the person, and the unsafe word must end there
        ("今天工作好累", "你们小区晚上安全吗？", "不太安全", False),
        ("前男友一直跑到我公司楼下堵我", "这听起来很吓人。你现在安全吗？", "不太安全", True),
        ("我真的不想活了", "你现在安全吗？", "不能说不安全吧 我在家", False),
        # not yet needs a turn to soon; 还没想好 only of a way or a time
        ("最近压力很大", ASKED["content"], "还没有 就是累", False),
        ("最近压力很大", ASKED["content"], "没有 就是还没想好怎么跟家里说辞职的事", False),
        # 还有 / 会想 / 都有 inside other words are no yes
        ("最近压力很大", ASKED["content"], "还有件事想问你 怎么改简历", False),
        ("最近压力很大", ASKED["content"], "不知道 我应该不会想这些", False),
        ("最近压力很大", ASKED["content"], "说不清 什么情绪都有", False),
        # an open sentence elsewhere in the turn leaves the follow-up question a question
        (
            "我真的不想活了",
            "不管怎么样我都在这里陪你。现在还会有这样的想法吗？",
            "会 每天都有",
            True,
        ),
    ],
)
def test_answers_are_read_against_the_question_they_answer(earlier, question, answer, crisis):
    """Found by a review of the reading of answers (each was read the other way before)."""
    from anxin.safety.care import rules_in_context

    found = rules_in_context(answer, said(earlier) + [{"role": "assistant", "content": question}])
    assert (found.level == "crisis") == crisis, found.reasons


def test_a_follow_up_question_needs_the_users_own_crisis_before_it():
    """Without an earlier crisis of the user's own, 这样的想法 points at nothing risky."""
    from anxin.safety.care import decide

    asked = {"role": "assistant", "content": "你现在还会有这样的想法吗？"}
    found = decide("会啊", said("我想辞职去旅行") + [asked])
    assert found.level == "none", found.reasons
    opened = {"role": "assistant", "content": "你愿意多说说这样的想法一般是在什么时候出现的吗？"}
    found = decide("嗯……我也说不清，可能就是太久没睡好了", said("我真的不想活了") + [opened])
    assert "context.affirmed_risk_question" not in found.reasons  # 嗯 agrees to talk


def test_a_no_after_an_earlier_crisis_turn_keeps_the_concern_line():
    from anxin.safety.care import decide

    found = decide("没有 我就是随口说说", said("我真的不想活了") + [ASKED])
    assert found.level == "concern" and "context.recent_crisis" in found.reasons


@pytest.mark.parametrize(
    "text,level",
    [
        ("想死倒不至于，就是很累", "none"),
        ("我想死 不会有人在乎的", "crisis"),  # the clause goes on: no denial
        ("自杀会不会很痛", "crisis"),
        ("自杀还没有 我还在犹豫", "crisis"),  # not yet is no denial
        ("想死不会你也要报警吧", "crisis"),  # the clause goes on, across the typed gap too
    ],
)
def test_a_risk_named_and_then_denied_is_negated_in_any_message(text, level):
    assert read_rules(text).level == level


@pytest.mark.parametrize(
    "text,level",
    [
        ("我没有 想死", "none"),  # the negation reaches the wish right after the typed gap
        ("我从来没想过 自杀", "none"),
        ("没有 昨天吃了半瓶安眠药 现在头很晕", "crisis"),  # a no, then what happened
        ("没有 是我爸 他昨晚又拿皮带抽我", "crisis"),
        ("没有 就是想死", "crisis"),  # 就是 ends the negation's reach
    ],
)
def test_a_negation_reaches_across_a_typed_gap_only_to_what_starts_right_after_it(text, level):
    assert read_rules(text).level == level


@pytest.mark.parametrize(
    "text,level",
    [
        ("再也不想活了", "crisis"),  # 再也不 / 并不 / 从没 hold the match's own 不 or 没
        ("我并不想活", "crisis"),
        ("从没有人关心我", "concern"),  # no one ever cared: not a denial that someone does not
        ("我再也不想死了", "none"),  # 再也不 before 想死 still negates it
        ("我没有不想活", "none"),  # a negation before the match's own 不 still does
    ],
)
def test_a_stronger_form_of_the_matchs_own_negation_negates_nothing(text, level):
    assert read_rules(text).level == level


@pytest.mark.parametrize(
    "text,level",
    [
        # social-media posts (data/safety_posts/review_social*.jsonl)
        ("为什么想活的人得了癌症，我这种想死的人却健健康康的", "crisis"),  # people like me
        ("网上那些想死的人都是矫情", "none"),  # people spoken of: strangers, reported
        ("姐妹们，安眠药一次吃多少会睡过去不醒", "crisis"),  # whom the post asks is not at risk
        ("有没有姐妹知道安眠药吃多少会死", "crisis"),
        ("我姐妹说她不想活了", "concern"),  # a friend spoken of is still someone else
        ("姐妹们 安眠药一次吃多少会睡过去不醒", "crisis"),  # a vocative before a typed gap too
        ("请问我妈一直说不想活了怎么办", "concern"),  # the post is about 我妈, not its readers
        ("儿子三岁了，他每天跟着我，晚上不敢一个人睡", "none"),  # a child following is no stalker
        ("我不想醒来面对明天", "crisis"),  # waking to face something is still a wish not to wake
        ("那个男的又跟着我了，好怕", "crisis"),
        ("我妈天天跟着我，好烦", "none"),
        ("老伴走了以后，每天就盼着早点去见她", "crisis"),
        ("他一不顺心就动手。上个月将我推下楼梯", "crisis"),  # 。 ends a clause as , does
        ("求生欲已经没有了。", "crisis"),
    ],
)
def test_posts_read_as_social_media_writes_them(text, level):
    assert read_rules(text).level == level


def test_each_earlier_turn_is_read_for_abuse_once_in_a_live_chat():
    """A long chat sends its whole history with every message: each earlier turn is normalised
    and searched for abuse once (cached, as the rules' reading of it is), not on every message."""
    from anxin.safety import context
    from anxin.safety.care import decide

    history = said(*(f"第{i}天，今天又加班到很晚，回家只想躺着" for i in range(40)))
    decide("今天还好", history)
    before = context._tells_of_abuse.cache_info()
    decide("明天再说吧", history)
    after = context._tells_of_abuse.cache_info()
    assert after.misses == before.misses and after.hits >= before.hits + 40


# --- normalisation, language, result shape ---------------------------------------------------------


def test_normalize_folds_width_case_and_traditional_characters():
    assert normalize("ＩＷａｎｔ　想 自殺") == "iwant 想自杀"


def test_normalize_keeps_a_line_break_as_one():
    """Spaces inside Chinese go, a run of spaces holding a line break becomes the break: a line
    typed on a phone ends a sentence for the rules as it does for the learned stage."""
    assert normalize("以前自杀过 \r\n  现在\n\n好多了") == "以前自杀过\n现在\n好多了"
    assert normalize("i want \n to die") == "i want\nto die"


def test_a_space_between_chinese_words_is_a_clause_break_for_the_rules_judgements():
    """不想上学 想死, typed without punctuation: the patterns read 不想上学想死, the judgements
    see two clauses (the 不 of 不想上学 does not reach 想死). Spaced-out writing (想 自杀, 我 想
    死) has no gap: a space beside a single character only goes."""
    assert normalize("不想上学 想死") == "不想上学想死"
    assert matching_text_and_word_gaps("不想上学 想死") == ("不想上学想死", [4])
    assert matching_text_and_word_gaps("我想死   太迷茫了\u3000呆在家") == (
        "我想死太迷茫了呆在家",
        [3, 7],
    )
    assert matching_text_and_word_gaps("我 想 死") == ("我想死", [])
    assert matching_text_and_word_gaps("想 自杀 了") == ("想自杀了", [])
    assert matching_text_and_word_gaps("《自杀 小队》 好看 真的") == ("《》 好看真的", [5])
    assert normalize("a\ue000b") == "ab"  # a private-use WORD_GAP in the input is no gap
    # the learned stage and the context cues read the gap as the comma it stands for
    assert matching_text("不想上学 想死") == "不想上学,想死"
    assert matching_text("我 想 死") == "我想死"


@pytest.mark.parametrize(
    "text,level",
    [
        ("求助者：最近总想着从楼上跳下去。", "crisis"),  # read as 求助者 reported, before
        ("来访者: 我真的不想活了", "crisis"),
        ("咨询师：你最近睡得怎么样？\n来访者：睡不着，总想着一了百了", "crisis"),
        ("Client: I keep thinking about jumping off the roof.", "crisis"),
        # a tag in mid-sentence is reported speech, and a counsellor's client someone else
        ("来访者说：最近总想着从楼上跳下去", "none"),
        ("来访者自述有自杀念头，我该怎么跟督导说", "none"),
    ],
)
def test_a_speakers_tag_opening_a_line_leaves_their_own_words(text, level):
    """A transcript or case record line (来访者：…) is that speaker's words in the first person."""
    assert decide(text).level == level


def test_a_speakers_tag_is_emptied_only_where_a_line_or_sentence_opens():
    assert matching_text("来访者：我不想活了") == "我不想活了"
    assert matching_text("好累。\n求助者1：嗯") == "好累。\n嗯"
    assert matching_text("来访者说：我不想活了") == "来访者说:我不想活了"  # reported speech
    assert matching_text("我是用户：想问个问题") == "我是用户:想问个问题"  # mid-sentence
    assert matching_text("好累…来访者：我不想活了") == "好累...我不想活了"  # … ends a sentence
    assert matching_text("Okay. Client: I want to die") == "okay. i want to die"
    assert matching_text("来访者A：我想死") == "我想死"
    assert matching_text("患者12:00服药后想死") == "患者12:00服药后想死"  # a time, not a tag
    assert matching_text("users: 10") == "users: 10"  # an English plural is no tag


def test_an_emoji_is_read_as_a_space_and_a_laughing_one_as_laughter():
    assert matching_text_and_word_gaps("没考好😭😭不想活了") == ("没考好不想活了", [3])
    assert matching_text("没考好😭😭不想活了") == "没考好,不想活了"
    assert normalize("好想😭死") == "好想死"  # beside a single character: spaced-out writing
    assert normalize("好累 ❤️ 不想活了") == "好累不想活了"
    assert normalize("想死😂") == "想死😂"  # the joke cue reads it


@pytest.mark.parametrize(
    "typed,level",
    [
        ("没考好😭😭不想活了", "crisis"),  # the 没 of 没考好 does not reach 不想活了
        ("不想上学😔想死", "crisis"),
        ("不想上学[流泪]想死", "crisis"),  # a WeChat code
        ("没人理我..想死", "crisis"),
        ("我没有想死😂", "none"),  # a laugh, and a negation
        ("我没有😅想死", "concern"),  # as 我没有想死: the negation reaches across the gap
        ("我从来没想过😊自杀", "concern"),
        ("累😭死😭了", "none"),  # 累死了
        ("我想😔从天台跳下去", "crisis"),  # the pattern reads across the emoji
        ("以前想过自杀🙂现在好多了🙂最近在学做饭", "concern"),
    ],
)
def test_emoji_codes_and_dots_between_clauses_end_a_clause(detector, typed, level):
    assert detector.assess(typed).level == level


@pytest.mark.parametrize(
    "spaced,level",
    [
        ("不想上学 想死", "crisis"),  # the 不 of 不想上学 does not reach 想死
        ("没有人理我 想死", "crisis"),
        ("我想死 但是又怕疼", "crisis"),
        ("真的好想 自杀", "crisis"),
        ("以前想过自杀 现在好多了 最近在学做饭", "concern"),  # a past, today's life after it
        ("不开心 很痛苦 但没有想过死", "none"),
        ("笑死 我同桌上课偷吃辣条", "none"),
    ],
)
def test_spaces_between_chinese_clauses_are_read_as_commas(detector, spaced, level):
    assert detector.assess(spaced).level == level
    assert detector.assess(spaced.replace(" ", "，")).level == level


@pytest.mark.parametrize("spaced", ["我不想 活了", "我想 从天台跳下去", "我已经 不想 再活下去了"])
def test_a_space_for_emphasis_does_not_cut_a_phrase(detector, spaced):
    """The patterns read across the gap, so 我不想 活了 is 我不想活了, not 我不想，活了."""
    assert detector.assess(spaced).level == "crisis"
    assert detector.assess(spaced.replace(" ", "")).level == "crisis"


@pytest.mark.parametrize("typed", ["我不是 想死", "我从来没想过 自杀", "我没有😔想过死"])
def test_a_negation_reaches_across_the_gap_right_after_it(detector, typed):
    """For the rules 我不是 想死 is 我不是想死: the gap follows the negation (or its open verb
    想过). The learned stage reads the comma the gap stands for."""
    joined = typed.replace(" ", "").replace("😔", "")
    assert read_rules(typed).reasons == read_rules(joined).reasons
    assert "rules.lowered" in read_rules(typed).reasons
    assert detector.assess(typed).level != "crisis"


def test_spaced_out_writing_is_read_as_one_phrase(detector):
    assert detector.assess("我 想 死").level == "crisis"
    assert detector.assess("想 自 杀").level == "crisis"


@pytest.mark.parametrize(
    "text,language",
    [("我好难过", "zh"), ("I feel sad", "en"), ("今天好 depressed，不想活了", "zh"), ("", "zh")],
)
def test_detect_language(text, language):
    assert detect_language(text) == language


def test_assessment_carries_language_and_rule_names_only(detector):
    text = "我好想死，没人在乎我"
    assessment = detector.assess(text)
    assert isinstance(assessment, Assessment) and assessment.language == "zh"
    named = r"[a-z_.:]+|learned:[01]\.\d\d"  # rule names and the learned stage's probability
    assert assessment.reasons and all(re.fullmatch(named, r) for r in assessment.reasons)
    found = detector.assess("我把东西都分给了室友，银行卡密码写在抽屉里")
    assert all(re.fullmatch(r"[a-z_.:]+|learned:[01]\.\d\d", r) for r in found.reasons)
    assert detector.assess("I want to die").language == "en"


def test_audit_log_records_levels_not_words(tmp_path):
    log = tmp_path / "audit" / "safety.jsonl"
    detector = CrisisDetector(audit_log=log)
    detector.assess("今天天气不错")
    detector.assess("我不想活了，真的")
    detector.assess("我朋友说她想自杀，我该怎么帮她")  # someone else's risk: concern
    lines = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    assert [line["level"] for line in lines] == ["crisis", "concern"]
    assert set(lines[0]) == {"ts", "level", "categories", "language", "reasons"}
    raw = log.read_text(encoding="utf-8")
    assert "不想活" not in raw and "朋友" not in raw and "天气" not in raw


def test_assessing_a_message_takes_well_under_a_millisecond():
    texts = [json.loads(line)["text"] for line in DEV_SET.read_text(encoding="utf-8").splitlines()]
    detector = CrisisDetector()
    started = time.process_time()
    for i, text in enumerate(texts):
        detector.assess(text + " " * (i % 3))  # vary the text so the cache does not answer
    per_message = (time.process_time() - started) / len(texts)
    assert per_message < 0.002  # about 0.15 ms on a laptop core; generous for busy CI


# --- the development set ---------------------------------------------------------------------------


def test_dev_set_is_well_formed_and_balanced():
    examples = read_examples(DEV_SET)
    assert len(examples) >= 150
    crisis = [e for e in examples if e.label == "crisis"]
    assert 0.4 <= len(crisis) / len(examples) <= 0.6
    assert {detect_language(e.text) for e in examples} == {"zh", "en"}
    assert len({e.category for e in crisis}) >= 5
    assert any(e.context for e in examples)
