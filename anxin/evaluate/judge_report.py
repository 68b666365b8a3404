"""The judge's part of `anxin eval`'s outputs: sections of report.md and a panel of
metrics.png, added only when a judge was given (`anxin.evaluate.judge`)."""

from __future__ import annotations

from anxin.evaluate.report import _quote, markdown_table, sample_indices

CAVEAT = (
    "A judge's scores are only as good as the judge: use a strong model (70B class or a "
    "frontier API) and read the samples before trusting a mean. Scores from a small model "
    "(such as the embedded 135M one) mean nothing."
)


def _interval(summary: dict, percent: bool = False, signed: bool = False) -> str:
    if summary.get("mean") is None:
        return "–"
    scale, unit = (100, "%") if percent else (1, "")
    sign = "+" if signed else ""
    mean, low, high = (summary[k] * scale for k in ("mean", "low", "high"))
    digits = 1 if percent else 2
    return f"{mean:{sign}.{digits}f}{unit} [{low:.{digits}f}, {high:.{digits}f}]"


def scores_table(judge: dict) -> list[list[str]]:
    names = list(judge["models"])
    compare = "delta" in judge
    lines = [["dimension", "scale", *names] + (["delta (model − baseline)"] if compare else [])]
    for key, info in judge["dimensions"].items():
        line = [f"{info['name']} {key}", f"0–{info['max']}"]
        line += [_interval(judge["models"][name]["dimensions"][key]) for name in names]
        if compare:
            line.append(_interval(judge["delta"][key], signed=True))
        lines.append(line)
    counts = [f"{m['judged']} / {m['unjudged']}" for m in judge["models"].values()]
    lines.append(["replies judged / unjudged", "", *counts] + ([""] if compare else []))
    return lines


def scores_section(judge: dict) -> list[str]:
    lines = [
        "## LLM judge: turn-based scores (CPsyCoun)",
        "",
        f"Judge: `{judge['judge']['model']}` at `{judge['judge']['url']}`, temperature 0, on "
        f"{judge['turns']} turns with their true history ({judge['flagged_turns']} flagged by "
        "the care layer). Each cell is the mean over judged replies with its 95 % bootstrap "
        "interval; crisis handling only covers flagged turns. The replies are scored as the "
        "user saw them, after the care layer.",
        "",
        markdown_table(scores_table(judge)),
        "",
    ]
    for name, model in judge["models"].items():
        if model["unjudged"]:
            reasons = "; ".join(model["unjudged_reasons"])[:300]
            lines += [f"- **{name}**: {model['unjudged']} replies unjudged ({reasons})"]
    return lines + ["", f"> {CAVEAT}", ""]


def pairwise_section(judge: dict) -> list[str]:
    pair = judge.get("pairwise")
    if not pair:
        return []
    table = [["outcome for the model", "share [95 % interval]", "turns"]]
    for name in ("win", "tie", "loss"):
        table.append([name, _interval(pair[name], percent=True), str(pair[name]["count"])])
    agree, first = pair["order_agreement"], pair["first_position_chosen"]
    return [
        "### Pairwise preference, judged in both orders",
        "",
        f"{pair['judged']} turns judged in both orders ({pair['unjudged']} unjudged). A win needs "
        "one order to prefer the model and the other not to prefer the baseline; orders that "
        "contradict each other count as a tie.",
        "",
        markdown_table(table),
        "",
        f"The two orders agreed on {_share(agree)} of turns; decided verdicts chose the reply "
        f"shown first {_share(first)} of the time (50 % means no position bias).",
        "",
    ]


def consistency_section(judge: dict) -> list[str]:
    consistency = judge.get("consistency") or {}
    if not consistency.get("repeated"):
        return []
    dimensions = ", ".join(
        f"{key} {_share(value['exact'])} (mean |Δ| {value['mean_abs_diff']:.2f})"
        for key, value in consistency["dimensions"].items()
        if value["exact"] is not None
    )
    return [
        "### Judge self-consistency",
        "",
        f"{consistency['repeated']} turns of the model were judged a second time "
        f"({consistency['judged_twice']} judged both times): identical on every dimension "
        f"{_share(consistency['all'])}; per dimension: {dimensions or '–'}.",
        "",
    ]


def samples_section(judge: dict, turns, replies, reasons, wanted: int) -> list[str]:
    """Sample turns with each model's reply, its scores and the judge's words."""
    lines = ["### Judged samples", ""]
    names = {key: info["name"] for key, info in judge["dimensions"].items()}
    for number, index in enumerate(sample_indices(len(turns), wanted), start=1):
        turn, row = turns[index], judge["per_turn"][index]
        flag = " (flagged by the care layer)" if row["flagged"] else ""
        lines += [f"#### {number}. dialogue {turn.dialogue + 1}, reply {turn.position}{flag}", ""]
        for message in [m for m in turn.context if m["role"] != "system"][-3:]:
            lines += [f"**{message['role']}**", "", _quote(message["content"]), ""]
        for name, texts in replies.items():
            scores = row["scores"][name]
            shown = (
                " · ".join(f"{names[k]} {v}" for k, v in scores.items()) if scores else "unjudged"
            )
            lines += [f"**{name}**: {shown}", "", _quote(texts[index]), ""]
            lines += [f"*judge*: {reasons[index].get(name, '')}", ""]
        if "pair" in row:
            verdicts = ", ".join(f"{order}: {winner}" for order, winner in row["pair"].items())
            lines += [f"*pairwise* ({verdicts}): {reasons[index].get('forward', '')}", ""]
    return lines


def judge_sections(judge: dict, turns, replies, reasons, samples: int) -> list[str]:
    lines = scores_section(judge) + pairwise_section(judge) + consistency_section(judge)
    if samples:
        lines += samples_section(judge, turns, replies, reasons, samples)
    return lines


def _share(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.0f} %"


def draw_judge_panel(axis, judge: dict) -> None:
    """Each model's mean score per dimension as a share of the scale, with its interval."""
    keys = list(judge["dimensions"])
    models = judge["models"]
    width = 0.8 / len(models)
    for offset, (name, model) in enumerate(models.items()):
        spots, means, errors = [], [], [[], []]
        for i, key in enumerate(keys):
            summary, top = model["dimensions"][key], judge["dimensions"][key]["max"]
            if summary["mean"] is None:
                continue
            spots.append(i + (offset - (len(models) - 1) / 2) * width)
            means.append(summary["mean"] / top)
            errors[0].append((summary["mean"] - summary["low"]) / top)
            errors[1].append((summary["high"] - summary["mean"]) / top)
        axis.bar(spots, means, width, yerr=errors, capsize=3, label=name)
    axis.set_xticks(range(len(keys)), keys, rotation=30, ha="right")
    axis.set_ylim(0, 1.05)
    if not any(m["judged"] for m in models.values()):
        axis.text(0.5, 0.5, "no reply judged", ha="center", va="center", transform=axis.transAxes)
    axis.set_title("LLM judge: mean score / scale max (95 % CI)")
    axis.grid(axis="y", alpha=0.3)
    axis.legend()
