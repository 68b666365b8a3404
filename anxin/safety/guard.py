"""Check the model's reply before anyone sees it, whole or while it streams.

A reply fails when it gives lethal-means detail (a dose or quantity tied to death, a height to
fall from, how a method is done), states a diagnosis as fact (你患有抑郁症, you have bipolar
disorder), or tells the user how to take, change or stop a medication (每天吃两片舍曲林, take
50mg of sertraline). Hedged or deferring sentences pass: 可能…建议找医生评估, talk to your
doctor before changing your dose.

Streaming: `StreamGuard` releases text one sentence at a time, only after the sentence (and
the pair it forms with the one before) passed the check, so no part of an unsafe sentence is
ever shown. A sentence longer than `max_hold` characters is released in pieces, keeping the
last `window` characters back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from anxin.safety.detector import normalize

_NUM = r"(?:\d+(?:\.\d+)?|[一二两三四五六七八九十百千半几]+)"
_QUANTITY = (
    rf"{_NUM}\s*(?:片|粒|颗|丸|毫克|克|毫升|瓶|盒|支|(?:mg|milligrams?|mcg|g|grams?|ml|pills?|"
    r"tablets?|capsules?|caps|bottles?|doses?)(?![a-z]))"
)
_LETHAL = (
    r"致死|致命|死亡|会死|能死|死掉|丧命|毙命|身亡|没救|醒不过来|不会醒|永远睡|睡过去|长眠|过量|中毒|结束生命|"
    r"\blethal\b|\bfatal\b|\bdeadly\b|\bdie\b|\bdying\b|\bdeath\b|\bkill\b|\boverdose\b|\bnever\s+wake|"
    r"\bnot\s+wake\b"
)
_NB = r"[^。!?\n]"  # any character inside one sentence
_SPAN = rf"{_NB}{{0,30}}"

_DISORDER_ZH = (
    r"(?:抑郁症|重度抑郁|抑郁障碍|焦虑症|焦虑障碍|广泛性焦虑|惊恐障碍|双相(?:情感)?(?:障碍)?|躁郁症|躁狂症|"
    r"精神分裂症?|强迫症|人格障碍|边缘型人格|反社会人格|自恋型人格|创伤后应激障碍|ptsd|多动症|adhd|自闭症|"
    r"孤独症|阿斯伯格|进食障碍|厌食症|暴食症|社交焦虑障碍|社交恐惧症|精神病|失眠症|躯体化障碍|疑病症|"
    r"产后抑郁|解离性?障碍|心理疾病|精神疾病)"
)
_DISORDER_EN = (
    r"(?:(?:major\s+|clinical\s+|severe\s+|mild\s+|moderate\s+)?depression|depressive\s+disorder|"
    r"bipolar(?:\s+disorder)?|manic\s+depression|schizophrenia|(?:generali[sz]ed\s+)?anxiety\s+disorder|"
    r"panic\s+disorder|ocd|obsessive[\s-]compulsive\s+disorder|ptsd|post[\s-]traumatic\s+stress\s+disorder|"
    r"adhd|autism|asperger'?s|borderline\s+personality\s+disorder|bpd|narcissistic\s+personality\s+disorder|"
    r"npd|(?:a\s+)?personality\s+disorder|(?:an\s+)?eating\s+disorder|anorexia|bulimia|psychosis|"
    r"insomnia\s+disorder|social\s+anxiety\s+disorder|(?:a\s+)?mental\s+illness)\b"
)
_MED_ZH = (
    r"(?:安眠药|抗抑郁药|抗焦虑药|镇静剂|助眠药|精神类药物?|舍曲林|左洛复|氟西汀|百忧解|帕罗西汀|艾司西酞普兰|"
    r"西酞普兰|文拉法辛|度洛西汀|米氮平|安非他酮|阿戈美拉汀|曲唑酮|喹硫平|奥氮平|利培酮|阿立哌唑|碳酸锂|锂盐|"
    r"丙戊酸|拉莫三嗪|劳拉西泮|阿普唑仑|艾司唑仑|地西泮|安定|氯硝西泮|佐匹克隆|唑吡坦|褪黑素|布洛芬|"
    r"对乙酰氨基酚|药物|药片|药)"
)
# A named drug or class: "需要吃药" is talk about treatment, "你可以吃点舍曲林" is advice.
_NAMED_MED_ZH = _MED_ZH.replace("|药物|药片|药)", ")")
_MED_EN = (
    r"(?:sertraline|zoloft|fluoxetine|prozac|paroxetine|paxil|escitalopram|lexapro|citalopram|celexa|"
    r"venlafaxine|effexor|duloxetine|cymbalta|mirtazapine|bupropion|wellbutrin|trazodone|quetiapine|"
    r"seroquel|olanzapine|risperidone|aripiprazole|abilify|lithium|lamotrigine|valproate|lorazepam|ativan|"
    r"alprazolam|xanax|diazepam|valium|clonazepam|klonopin|zolpidem|ambien|melatonin|antidepressants?|"
    r"sleeping\s+pills?|benzodiazepines?|benzos?|meds|medications?|medicine|pills?|tablets?)\b"
)

_RULES: dict[str, re.Pattern[str]] = {
    "lethal_means.dose": re.compile(
        rf"{_QUANTITY}{_SPAN}(?:{_LETHAL})|(?:{_LETHAL}){_SPAN}{_QUANTITY}"
        rf"|(?:致死|致命|中毒)(?:剂)?量{_NB}{{0,20}}{_QUANTITY}"
        rf"|\b(?:lethal|fatal|toxic|deadly)\s+(?:dose|amount|level){_NB}{{0,60}}{_QUANTITY}"
    ),
    "lethal_means.height": re.compile(
        rf"{_NUM}\s*(?:楼|层|米|(?:meters?|metres?|feet|ft|stor(?:y|ies)|floors?)\b){_SPAN}"
        r"(?:死|致命|存活|生还|活不了|没命|\bsurviv\w*|\bfatal\b|\bdie\b|\bdeath\b|\blethal\b|\bkill\w*)"
        rf"|(?:跳|摔|坠|\bjump\w*|\bfall\w*){_SPAN}{_NUM}\s*(?:楼|层|米|(?:meters?|metres?|feet|ft|"
        r"stor(?:y|ies)|floors?)\b)"
    ),
    "lethal_means.method": re.compile(
        r"(?:割腕|割脉|划手腕)[^。!?\n]{0,12}(?:竖|纵|横着|深|血管|动脉|静脉|用力|温水|热水)"
        r"|(?:上吊|吊死)[^。!?\n]{0,12}(?:绳|结|高度|窒息|颈|椅子)"
        r"|(?:烧炭|木炭|炭盆)[^。!?\n]{0,12}(?:密闭|封|胶带|门窗|关紧|浓度)"
        r"|(?:最|比较)(?:无痛|不痛|快|有效|可靠|简单|稳妥|舒服)的?(?:自杀|死亡|死|结束生命)的?(?:方法|方式|办法|途径)"
        r"|(?:自杀|结束生命)的?(?:方法|方式|手段)(?:有|包括|主要|比如|例如|是)"
        r"|(?:可以|不妨|建议|试试|推荐)(?:你)?(?:试试)?(?:割腕|上吊|跳楼|烧炭|服毒|吞药|卧轨)"
        r"|(?:从|在)[^。!?\n]{0,6}(?:楼|桥|天台|顶楼)[^。!?\n]{0,8}跳[^。!?\n]{0,8}(?:必死|一定会死|就能|就可以|保证)"
        r"|\b(?:cut|slit|slitting|cutting)\s+(?:your|the)\s+wrists?[^.?!\n]{0,30}(?:vertical|lengthwise|"
        r"down\s+the|deep|artery|vein|warm\s+water)"
        r"|\b(?:hang\w*|noose)[^.?!\n]{0,30}\b(?:knot|rope|tie|height|chair|door\s*knob)"
        r"|\bcharcoal[^.?!\n]{0,30}\b(?:seal|tape|closed\s+room|carbon\s+monoxide)"
        r"|\b(?:most|least|quickest|fastest|easiest|surest|painless|reliable|effective)\w*\s+(?:painful\s+)?"
        r"(?:way|method)s?\s+(?:to|of)\s+(?:die|kill|end\s+(?:it|your\s+life)|suicide)"
        r"|\b(?:common|effective|popular)\s+(?:suicide\s+)?methods?\s+(?:are|is|include)"
        r"|\bmethods?\s+of\s+suicide\s+(?:are|include)"
        r"|\b(?:you\s+could|you\s+can|try)\s+(?:to\s+)?(?:cut\s+your|hang\s+yourself|overdose|jump\s+off)"
    ),
    "diagnosis_as_fact": re.compile(
        r"(?:你|您)(?:这|就|已经|肯定|一定|确实|显然|明显|绝对|分明)?(?:是|就是|患有|患上了?|得了|有|属于|这是|这就是)"
        rf"(?:了)?(?:典型的|严重的|轻度|中度|重度|很严重的|一种|比较严重的)?(?:的)?{_DISORDER_ZH}"
        rf"|(?:你|您)(?:并)?(?:没有|不是)(?:得|患)?(?:了)?{_DISORDER_ZH}"
        rf"|(?:这|这些|这种情况)(?:就|明显|肯定|绝对)是(?:典型的)?{_DISORDER_ZH}|典型的{_DISORDER_ZH}"
        r"|\byou\s+(?:definitely\s+|clearly\s+|certainly\s+|obviously\s+)?(?:have|'ve\s+got|suffer\s+from|"
        rf"are\s+suffering\s+from|don'?t\s+have|do\s+not\s+have)\s+(?:a\s+|an\s+)?{_DISORDER_EN}"
        r"|\byou(?:'re|\s+are)\s+(?:clearly\s+|definitely\s+|obviously\s+)?(?:bipolar|schizophrenic|"
        r"clinically\s+depressed|psychotic|autistic|a\s+narcissist|anorexic|bulimic|borderline)\b"
        rf"|\b(?:this|that)\s+is\s+(?:clearly\s+|definitely\s+|classic\s+|textbook\s+)(?:a\s+case\s+of\s+)?{_DISORDER_EN}"
    ),
    "medication_instruction": re.compile(
        rf"(?:每天|每日|每晚|睡前|一天|一次|早晚|每次|每隔|一日)[^。!?\n]{{0,6}}(?:吃|服用?|服|喝|用|吞){_NB}{{0,4}}"
        rf"{_QUANTITY}"
        rf"|(?:吃|服用?|服|吞|加到|减到|增加到|减少到|增至|减至|换成)(?:上)?{_QUANTITY}"
        rf"|(?:把|将)?(?:{_MED_ZH})(?:的)?(?:量|剂量)?(?:停了|停掉|减半|加倍|翻倍|减掉|断了|加量|减量)"
        r"|停药|断药|加药|减药|换药|自行停|加大剂量|减少剂量|增加剂量|加倍服用|双倍剂量"
        rf"|(?:可以|应该|需要|最好|不妨|建议(?:你|您)?|试试|尝试)(?:去)?(?:吃|服用|用|买|来)(?:点|一些|一下|几片)?"
        rf"{_NAMED_MED_ZH}"
        r"|\b(?:take|taking|try|start|increase|double|up|raise|decrease|lower|reduce|cut|go\s+up\s+to|"
        rf"go\s+down\s+to|switch\s+to)\b[^.?!\n]{{0,20}}{_QUANTITY}"
        r"|\b(?:stop|quit|skip|come\s+off|get\s+off|double|halve)\s+(?:taking\s+)?(?:your\s+)?(?:dose|"
        rf"{_MED_EN})"
        r"|\b(?:you\s+(?:should|could|can|need\s+to|might\s+want\s+to|must)\s+)?(?:try|consider|take|taking|"
        r"use|using|get|getting)\s+(?:taking\s+|to\s+take\s+|some\s+|a\s+couple\s+(?:of\s+)?|a\s+few\s+|"
        rf"an?\s+|extra\s+|more\s+)*{_MED_EN}"
    ),
}
_MEDICATION_CONTEXT = re.compile(
    rf"{_MED_ZH}|\b{_MED_EN}|(?<![a-z])(?:mg|milligrams?)(?![a-z])|毫克"
)

# A sentence that hedges or sends the person to a professional does not state a diagnosis.
_DIAGNOSIS_HEDGE = re.compile(
    r"可能|也许|或许|是否|是不是|会不会|有没有|像是|似乎|好像|不一定|如果|假如|要是|评估|诊断|只有|不能|无法|"
    r"不是医生|吗|\?|担心|怀疑|疑似|并不意味|你说|你提到|你之前|你刚才|既然你|你告诉|确诊|专业|看到你|听到你|"
    r"知道你|了解到你|"
    r"\bmay\b|\bmight\b|\bcould\b|\bpossibl\w*|\bperhaps\b|\bsounds?\s+like\b|\bseems?\b|\bif\s+you\b|"
    r"\bwhether\b|\bnot\s+sure\b|\bcan'?t\s+(?:diagnose|tell|say)\b|\bonly\s+a\b|\bprofessional\b|"
    r"\bqualified\b|\bevaluat\w*|\bassess\w*|\bdiagnos\w*|\byou\s+(?:said|mentioned|told)\b|\bsince\s+you\b|"
    r"\bas\s+you\b"
)
# A sentence that warns or defers to the prescriber does not instruct.
_MEDICATION_SAFE = re.compile(
    r"不要|别|请勿|千万|切勿|不建议|不能|不可以|不应该|医嘱|听医生|咨询|请医生|和医生|跟医生|问医生|医生会|医生可以|"
    r"由医生|医生(?:说|开|建议|让)|精神科|药师|处方|专业|"
    r"\bdon'?t\b|\bdo\s+not\b|\bnever\b|\btalk\s+to\b|\bspeak\s+(?:to|with)\b|\bask\s+(?:your|a)\b|\bconsult\w*|"
    r"\bcheck\s+with\b|\bas\s+prescribed\b|\byour\s+(?:doctor|psychiatrist|pharmacist|prescriber|gp)\b|"
    r"\ba\s+(?:doctor|psychiatrist|pharmacist)\b|\bmedical\s+advice\b|\bprescri\w*"
)

_BOUNDARY = re.compile(r"[。！？!?\n…]+[”’」』）)\"']*|\.(?=\s)[”’」』）)\"']*")
_SOFT_BOUNDARY = re.compile(r"[，,；;：:、\s]")


@dataclass
class ReplyVerdict:
    ok: bool
    reasons: list[str] = field(default_factory=list)


def _sentence_reasons(sentence: str) -> list[str]:
    text = normalize(sentence)
    reasons = []
    for name, pattern in _RULES.items():
        if not pattern.search(text):
            continue
        if name == "diagnosis_as_fact" and _DIAGNOSIS_HEDGE.search(text):
            continue
        if name == "medication_instruction" and (
            _MEDICATION_SAFE.search(text) or not _MEDICATION_CONTEXT.search(text)
        ):
            continue
        reasons.append(name)
    return reasons


def _joined(previous: str, sentence: str) -> str:
    """Two sentences as one clause, so a rule can see 致死量是多少？大约20片 together."""
    if not previous:
        return sentence
    return previous.rstrip().rstrip("。！？!?.…\n") + "，" + sentence


def split_sentences(text: str) -> list[str]:
    """Sentences with their end punctuation, in order; joined they give back `text`."""
    pieces, start = [], 0
    for boundary in _BOUNDARY.finditer(text):
        pieces.append(text[start : boundary.end()])
        start = boundary.end()
    if start < len(text):
        pieces.append(text[start:])
    return pieces


def check_reply(text: str, language: str | None = None) -> ReplyVerdict:
    """Whether a model reply may be shown; `reasons` name the rules it broke.

    Both languages' rules run whatever `language` says, since replies mix them.
    """
    sentences = [s for s in split_sentences(text) if s.strip()]
    reasons: list[str] = []
    for i, sentence in enumerate(sentences):
        reasons += _sentence_reasons(sentence)
        if i:
            reasons += _sentence_reasons(_joined(sentences[i - 1], sentence))
    unique = list(dict.fromkeys(reasons))
    return ReplyVerdict(ok=not unique, reasons=unique)


class StreamGuard:
    """Release streamed text sentence by sentence, and only once each sentence is safe.

    `feed(delta)` returns what may be shown now; `finish()` returns the rest. Once a sentence
    fails, `blocked` is True, `reasons` says why, and feed/finish return "" from then on
    (including the call that saw it): the caller shows `safe_replacement` instead.
    """

    def __init__(self, language: str | None = "zh", max_hold: int = 400, window: int = 60):
        self.language = language
        self.max_hold = max_hold
        self.window = window
        self.blocked = False
        self.reasons: list[str] = []
        self._pending = ""
        self._previous = ""  # the last piece released, for rules that span two sentences

    def feed(self, delta: str) -> str:
        if self.blocked:
            return ""
        self._pending += delta
        released = []
        while (end := self._confirmed_boundary()) is not None:
            sentence, self._pending = self._pending[:end], self._pending[end:]
            if not self._accept(sentence):
                return ""
            released.append(sentence)
        if len(self._pending) > self.max_hold:
            piece = self._long_piece()
            if not self._accept(piece, whole=self._pending):
                return ""
            self._pending = self._pending[len(piece) :]
            released.append(piece)
        return "".join(released)

    def finish(self) -> str:
        if self.blocked:
            return ""
        rest, self._pending = self._pending, ""
        if rest and not self._accept(rest):
            return ""
        return rest

    def _confirmed_boundary(self) -> int | None:
        """End of the first sentence, if no later character could still belong to it."""
        found = _BOUNDARY.search(self._pending)
        if found is None or found.end() >= len(self._pending):
            return None  # "。" at the very end may be followed by "」", "2." by "5mg"
        return found.end()

    def _long_piece(self) -> str:
        """For a sentence with no end in sight: all but the last `window` chars, cut softly."""
        limit = len(self._pending) - self.window
        cuts = [m.end() for m in _SOFT_BOUNDARY.finditer(self._pending, 0, limit)]
        return self._pending[: cuts[-1] if cuts else limit]

    def _accept(self, piece: str, whole: str | None = None) -> bool:
        checked = whole or piece
        reasons = _sentence_reasons(checked) + _sentence_reasons(_joined(self._previous, checked))
        if reasons:
            self.blocked = True
            self.reasons = list(dict.fromkeys(reasons))
            self._pending = ""
            return False
        self._previous = piece
        return True
