"""Read a message in the light of the conversation before it (context cues: rules/context.yaml).

A vague message can be a crisis because of what came before (我已经想好了，就在今晚 after
我想死; 是的 after 你有没有想过结束生命？), and a calm one still deserves watching after a crisis.
The cues here raise the rules' reading of the message; the learned stage (`care.py`) then reads
the same conversation too, to escalate and to de-escalate:

- the last few user turns: what the rules made of each, and their words;
- the assistant's turn just before: whether it asked about a risk, by name or pointing back at
  the user's own (现在还会有这样的想法吗), and what the answer was (a yes, also 以前想过 现在偶尔也会
  or 说不清 可能有吧, is a crisis, and so is not yet, 还没有 但快了; 不知道 a concern; a plain no,
  `DENIED`, keeps the learned stage from the crisis script, as its words often echo the
  question: 没有 不想活 只是累); or whether it asked if the user is safe (你现在安全吗, 你能答应我
  今晚不伤害自己吗), where 不太安全 / 做不到 is a crisis and a plain yes is `DENIED` too;
- the care layer's own crisis replies earlier in the conversation: after one, a message is at
  least a concern (`context.after_crisis_reply`) until the conversation ends;
- likewise after a user turn the rules read as a crisis, however far back (up to WATCH_TURNS
  user turns; `context.earlier_crisis`, docs/safety-labels.md, rule 5: "context keeps
  watch"). In a live chat the care layer's own reply to that turn already keeps watch; a
  conversation held elsewhere (a counselling platform's transcript, an API client's history)
  has no such reply;
- and after a user turn that told of violence or sexual abuse (`kept_watch`,
  `context.abuse_told`), which the rules often do not read as a crisis when it is told in
  passing (女朋友有暴力倾向，忍了半年多): a floor put under the final level, after the
  learned stage.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property, lru_cache

from anxin.safety.detector import (
    RISK_WORD,
    SELF_RISK_CATEGORIES,
    Assessment,
    read_rules,
    unique,
)
from anxin.safety.responses import crisis_turns_so_far
from anxin.safety.rules import rulebook
from anxin.safety.text import normalize

_CONTEXT = {name: cue.pattern for name, cue in rulebook().context.items()}
_RECOVERY = rulebook().judgement["recovery"].pattern  # 好多了, 已经好了, 不再
_PAST = rulebook().judgement["past"].pattern  # 以前, 那时候, 小时候
CONTEXT_TURNS = 6  # how many earlier user messages can colour this one
EVIDENCE_TURNS = 3  # of which the learned stage reads the last three
# How many earlier user turns, at most, are read for a crisis that came up (`crisis_came_up`):
# each costs a reading by the rules, cached, so a live chat pays for each turn once (a history of
# 60 user turns of 2,000 characters each, sent at once, cost about 40 ms the first time here).
WATCH_TURNS = 60
DENIED = "context.denied_risk_question"  # a plain no to the assistant's safety question


@dataclass
class Conversation:
    """The turns before a message, sorted out once."""

    messages: list[dict] = field(default_factory=list)  # user and assistant, oldest first
    earlier: list[str] = field(default_factory=list)  # the last CONTEXT_TURNS user turns
    older: list[str] = field(default_factory=list)  # the user turns before those (WATCH_TURNS)
    readings: list[Assessment] = field(default_factory=list)  # the rules' reading of each
    asked: str | None = None  # the assistant's turn just before the message, normalised
    crisis_replies: int = 0  # the care layer's crisis replies so far

    @classmethod
    def of(cls, context: Sequence[dict | str]) -> Conversation:
        messages = _messages(context)
        users = [m["content"] for m in messages if m["role"] == "user"][-WATCH_TURNS:]
        earlier, older = users[-CONTEXT_TURNS:], users[:-CONTEXT_TURNS]
        last = messages[-1] if messages else None
        asked = normalize(last["content"]) if last and last["role"] == "assistant" else None
        return cls(
            messages=messages,
            earlier=earlier,
            older=older,
            readings=[read_rules(text) for text in earlier],
            asked=asked,
            crisis_replies=crisis_turns_so_far(messages),
        )

    @cached_property
    def crisis_came_up(self) -> bool:
        """Whether the rules read any earlier user turn (of the last WATCH_TURNS) as a crisis;
        the turns before the last CONTEXT_TURNS are read only when this is asked."""
        return any(a.level == "crisis" for a in self.readings) or any(
            read_rules(text).level == "crisis" for text in self.older
        )

    @cached_property
    def abuse_came_up(self) -> bool:
        """Whether an earlier user turn (of the last WATCH_TURNS) tells of violence or sexual
        abuse (the `abuse_told` cue), whatever the rules made of it."""
        return any(_tells_of_abuse(text) for text in self.older + self.earlier)

    @property
    def asked_about_safety(self) -> bool:
        """Whether the assistant's last turn asks about a risk, so that a yes is the alarm: it
        names one (你有没有想过结束自己的生命？), or points back at the user's own crisis told
        lately (现在还会有这样的想法吗？, not in an open question: 这样的想法一般是在什么时候出现
        的？). A promise asked for (你能答应我今晚不伤害自己吗？) names the risk only to rule it
        out: its yes is the safe answer (`asked_if_safe`)."""
        if not self._asked_a_question:
            return False
        asked = _CONTEXT["promise_question"].sub("", self.asked)
        if _CONTEXT["risk_question"].search(asked):
            return True
        pointing = _CONTEXT["followup_question"].search(asked)
        return (
            pointing is not None
            and not _CONTEXT["open_question"].search(_sentence_around(asked, pointing.start()))
            and self.own_crisis_came_up
        )

    @property
    def asked_if_safe(self) -> bool:
        """Whether the assistant's last turn asks whether the user is safe, so that a yes is the
        safe answer (你现在安全吗？ 你能答应我今晚不伤害自己吗？)."""
        return self._asked_a_question and bool(
            _CONTEXT["safe_question"].search(self.asked)
            or _CONTEXT["promise_question"].search(self.asked)
        )

    @property
    def asked_one_question(self) -> bool:
        """Whether the assistant's last turn asks one thing only: 嗯 to 你有没有想过要怎么做？你现在
        安全吗？ may answer the first question (a clause with ?, 吗, 呢 or 有没有 … asks)."""
        if self.asked is None:
            return False
        # the turn as typed: normalising joins 你有没有想过要怎么做 你现在安全吗 into one clause
        typed = self.messages[-1]["content"]
        clauses = re.findall(r"[^,.!?;~…\s，。！？；、]+[?？]?", typed)
        return sum(bool(_CONTEXT["question_clause"].search(c)) for c in clauses) <= 1

    @property
    def own_crisis_came_up(self) -> bool:
        """Whether the rules read one of the last CONTEXT_TURNS user turns as a crisis of the
        user's own (a wish to die, a plan, self-harm), not of abuse or of harming others: what a
        follow-up question (这样的想法) can point back at, so lately, not in the whole watch."""
        return any(
            a.level == "crisis" and SELF_RISK_CATEGORIES & set(a.categories) for a in self.readings
        )

    @property
    def _asked_a_question(self) -> bool:
        return self.asked is not None and bool(_CONTEXT["question"].search(self.asked))


_SENTENCE_ENDS = ".!?。\n"  # as normalised: ？ and ！ are ? and !, 。 stays


def _sentence_around(text: str, index: int) -> str:
    """The sentence of `text` that holds `index`."""
    start = max(text.rfind(mark, 0, index) for mark in _SENTENCE_ENDS) + 1
    ends = [found for mark in _SENTENCE_ENDS if (found := text.find(mark, index)) != -1]
    return text[start : min(ends) + 1 if ends else len(text)]


@lru_cache(maxsize=4096)
def _tells_of_abuse(text: str) -> bool:
    """Cached like the rules' reading of a turn, so a live chat normalises each turn once."""
    return bool(_CONTEXT["abuse_told"].search(normalize(text)))


def _messages(context: Sequence[dict | str]) -> list[dict]:
    messages = []
    for message in context:
        if isinstance(message, str):
            messages.append({"role": "user", "content": message})
        elif isinstance(message, dict) and isinstance(message.get("content"), str):
            role = message.get("role", "user")
            if role in ("user", "assistant"):
                messages.append({"role": role, "content": message["content"]})
    return messages


def with_context(assessment: Assessment, normal: str, conversation: Conversation) -> Assessment:
    """The rules' reading of a message (`normal`: normalised), raised by what came before."""
    if assessment.level == "crisis" or not conversation.messages:
        return assessment
    answer = _answer(normal)
    asked_if_safe = conversation.asked_if_safe
    if asked_if_safe and _CONTEXT["unsafe_answer"].match(answer):
        # 你现在安全吗？ 不太安全: the danger asked about is the one that came up (a wish to die,
        # abuse, a threat), or the one the assistant heard (他还跑到我公司楼下堵我)
        earlier = unique(
            c for a in conversation.readings if a.level == "crisis" for c in a.categories
        )
        return _raised(
            assessment, "crisis", earlier or ["suicidal_ideation"], "context.unsafe_answer"
        )
    if conversation.asked_about_safety:
        answered = _answer_to_risk_question(assessment, answer)
        if answered is not None:
            return answered
        if _said_no(answer) and not _risk_told(assessment, normal):
            # the floors below still keep watch after an earlier crisis
            assessment = replace(assessment, reasons=unique([*assessment.reasons, DENIED]))
    elif asked_if_safe and _said_safe(answer, conversation, assessment, normal):
        assessment = replace(assessment, reasons=unique([*assessment.reasons, DENIED]))
    prior = conversation.readings
    prior_risk = [
        a for a in prior if a.level != "none" and SELF_RISK_CATEGORIES & set(a.categories)
    ]
    helping = _CONTEXT["help_seeking"].search(normal)  # a decision towards help, not to die
    if prior_risk and _CONTEXT["resolve"].search(normal) and not helping:
        categories = unique(
            c for a in prior_risk for c in a.categories if c in SELF_RISK_CATEGORIES
        )
        categories = [c if c != "hopelessness" else "suicidal_ideation" for c in categories]
        return _raised(assessment, "crisis", [*categories, "context_escalation"], "context.resolve")
    recent_crisis = any(a.level == "crisis" for a in prior[-3:])
    named_time = len(normal) <= 12 and _CONTEXT["time_named"].search(normal)
    if recent_crisis and named_time and not helping:
        return _raised(
            assessment, "crisis", ["plan_means", "context_escalation"], "context.time_named"
        )
    if assessment.level == "none" and recent_crisis:
        return _raised(assessment, "concern", ["context_escalation"], "context.recent_crisis")
    if assessment.level == "none" and conversation.crisis_replies:
        # the person's crisis came up here: the care layer keeps watch to the end
        return _raised(assessment, "concern", ["context_escalation"], "context.after_crisis_reply")
    if assessment.level == "none" and conversation.crisis_came_up:
        return _raised(assessment, "concern", ["context_escalation"], "context.earlier_crisis")
    return assessment


def kept_watch(assessment: Assessment, conversation: Conversation) -> Assessment:
    """At least the concern line in a conversation where violence or abuse was told
    (`context.abuse_told`): a floor under the detector's level, put after the learned stage,
    which does not read it (as evidence it raised the learned stage's P(crisis) for the
    conversation's calm turns too: out of fold on real dev, 3 more false alarms)."""
    if assessment.level != "none" or not conversation.abuse_came_up:
        return assessment
    return _raised(assessment, "concern", ["context_escalation"], "context.abuse_told")


def _answer_to_risk_question(assessment: Assessment, answer: str) -> Assessment | None:
    """有，想过很多次 after 你有没有想过结束自己的生命？ is a yes, and so is 以前想过 现在偶尔也会;
    不知道 is a maybe (`answer`: the normalised message after what opens it, `_answer`)."""
    yes = _CONTEXT["affirmative"].match(answer) and not _CONTEXT["denial"].match(answer)
    now = _CONTEXT["answered_now"].search(answer)
    if yes and not now and _over_since(answer):  # 其实有过 不过现在好多了
        return _raised(assessment, "concern", ["past_history"], "context.past_risk_answer")
    unsure = _CONTEXT["unsure"].match(answer)
    softly = unsure and _CONTEXT["hedged_yes"].search(answer, unsure.end())  # 说不清 可能有吧
    if yes or now or (softly and not _CONTEXT["turn"].search(answer)):
        return _raised(
            assessment, "crisis", ["suicidal_ideation"], "context.affirmed_risk_question"
        )
    if _CONTEXT["not_yet"].search(answer):  # 还没有 但快了: on its way
        return _raised(assessment, "crisis", ["suicidal_ideation"], "context.not_yet_answer")
    if unsure:
        return _raised(assessment, "concern", ["suicidal_ideation"], "context.unsure_risk_answer")
    return None


def _said_no(answer: str) -> bool:
    """没有，就是累 / 不会的 我答应过我妹: a plain no (`DENIED`), after which the learned stage
    may add the concern line but not the crisis script (care.crisis_bar): a no answered with a
    hotline tells the person they were not heard. A no that turns (没有 但是药我已经攒好了) is
    not plain."""
    return bool(_CONTEXT["plain_no"].match(answer)) and not _CONTEXT["turn"].search(answer)


def _said_safe(
    answer: str, conversation: Conversation, assessment: Assessment, normal: str
) -> bool:
    """嗯 安全 / 好 我答应你 to 你现在安全吗？: the safe answer (`DENIED`, as a plain no to a risk
    question), unless it turns (安全 但是……), says unsafe after all (嗯 不太安全), tells of a
    risk, or the turn asked more than this (嗯 to 你有没有想过要怎么做？你现在安全吗？)."""
    return (
        conversation.asked_one_question
        and bool(_CONTEXT["safe_answer"].match(answer))
        and not _CONTEXT["turn"].search(answer)
        and not _CONTEXT["unsafe_said"].search(answer)
        and not _risk_told(assessment, normal)
    )


def _over_since(answer: str) -> bool:
    """A yes that turns to the risk being over: 有过 不过现在好多了, 有过 但是那是很久以前了;
    not when it comes back after that (就是晚上还是会冒出来)."""
    turn = _CONTEXT["turn"].search(answer)
    if turn is None or _CONTEXT["still"].search(answer, turn.end()):
        return False
    return bool(_RECOVERY.search(answer, turn.end()) or _PAST.search(answer, turn.end()))


def _risk_told(assessment: Assessment, normal: str) -> bool:
    """Whether a no goes on to tell of a risk: a risk word (消失, 死, 割; the learned stage's
    anchors) or a warning sign (没有 打算好了 今晚就走); then the learned stage keeps its say."""
    signs = any(reason.startswith("sign.") for reason in assessment.reasons)
    return signs or bool(RISK_WORD.search(normal))


def _answer(normal: str) -> str:
    """The answer after what opens it: 其实有 is 有."""
    opening = _CONTEXT["answer_opening"].match(normal)
    return normal[opening.end() :] if opening else normal


def _raised(assessment: Assessment, level: str, categories: list[str], reason: str) -> Assessment:
    """The assessment at a higher level, with its language and score (the learned stage's
    P(crisis), when it ran) kept."""
    return replace(
        assessment,
        level=level,
        categories=unique(categories),
        reasons=unique([*assessment.reasons, reason]),
    )
