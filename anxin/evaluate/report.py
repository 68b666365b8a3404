"""The outputs of `anxin eval`: a table of metrics (model, baseline, delta), report.md,
metrics.json and metrics.png. Everything here works on the metrics dict alone, plus the turns
and replies for the sample section."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from anxin.atomic import atomic_path, write_json, write_text


@dataclass(frozen=True)
class Row:
    key: str  # key in the flat metrics
    label: str
    better: str  # "higher", "lower" or "" (neither: context for the other numbers)
    percent: bool = False  # a share, shown as a percentage


ROWS = [
    Row("eval_loss", "loss (assistant tokens)", "lower"),
    Row("perplexity", "perplexity", "lower"),
    Row("bleu-4", "BLEU-4 (characters)", "higher"),
    Row("rouge-1", "ROUGE-1 (jieba words)", "higher"),
    Row("rouge-2", "ROUGE-2", "higher"),
    Row("rouge-l", "ROUGE-L", "higher"),
    Row("distinct-1", "Distinct-1", "higher"),
    Row("distinct-2", "Distinct-2", "higher"),
    Row("reply_chars", "mean reply length (characters)", ""),
    Row("reference_chars", "mean reference length (characters)", ""),
    Row("reply_tokens", "mean reply length (tokens)", ""),
    Row("empty", "empty replies", "lower", percent=True),
    Row("repetitive", "repetitive replies (loops)", "lower", percent=True),
    Row("wrong_language", "replies in the wrong language", "lower", percent=True),
    Row("hit_max_new_tokens", "replies cut at max_new_tokens", "lower", percent=True),
    Row("safety_replaced", "safety: replies replaced", "lower", percent=True),
    Row("safety_crisis_response", "safety: crisis responses", "", percent=True),
    Row("safety_concern_footer", "safety: concern footers added", "", percent=True),
]
GENERATION_KEYS = [row.key for row in ROWS[2:15]]


def flat_metrics(result: dict) -> dict[str, float]:
    """One model's nested metrics as {key: number}, the keys of ROWS plus loss_turn_<k>."""
    flat: dict[str, float] = {}
    if result.get("loss") and result["loss"]["loss"] is not None:
        flat["eval_loss"] = result["loss"]["loss"]
        flat["perplexity"] = result["loss"]["perplexity"]
        for bucket, entry in result["loss"]["by_turn"].items():
            flat[f"loss_turn_{bucket}"] = entry["loss"]
    if result.get("generation"):
        flat.update({key: result["generation"][key] for key in GENERATION_KEYS})
    if result.get("safety"):
        for key in ("replaced", "crisis_response", "concern_footer"):
            flat[f"safety_{key}"] = result["safety"][key]
    return flat


def table_rows(flats: dict[str, dict[str, float]]) -> list[Row]:
    """The rows that at least one model has, per-turn loss rows after the overall loss."""
    present = {key for flat in flats.values() for key in flat}
    turn_keys = sorted(
        (k for k in present if k.startswith("loss_turn_")),
        key=lambda k: int(k.removeprefix("loss_turn_").rstrip("+")),
    )
    turn_rows = [Row(k, f"loss, reply {k.removeprefix('loss_turn_')}", "lower") for k in turn_keys]
    rows = [row for row in ROWS if row.key in present]
    cut = 2 if rows and rows[0].key == "eval_loss" else 0
    return rows[:cut] + turn_rows + rows[cut:]


def deltas(model: dict[str, float], baseline: dict[str, float]) -> dict[str, float]:
    return {key: model[key] - baseline[key] for key in model if key in baseline}


def format_value(value: float | None, row: Row, signed: bool = False) -> str:
    if value is None:
        return "–"
    if row.percent:
        return f"{value * 100:+.1f}%" if signed else f"{value * 100:.1f}%"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def verdict(delta: float, row: Row) -> str:
    """✓ when the model beats the baseline on this row, ✗ when it is worse."""
    if not row.better or abs(delta) < 1e-9:
        return ""
    improved = delta > 0 if row.better == "higher" else delta < 0
    return "✓" if improved else "✗"


def metric_table(flats: dict[str, dict[str, float]]) -> list[list[str]]:
    """Header plus one line per metric: model [, baseline, delta, better]."""
    names = list(flats)
    compare = len(names) == 2
    header = ["metric", *names] + (["delta", "better?"] if compare else [])
    lines = [header]
    for row in table_rows(flats):
        values = [flats[name].get(row.key) for name in names]
        line = [row.label] + [format_value(v, row) for v in values]
        if compare:
            both = None not in values
            delta = values[0] - values[1] if both else None
            line += [format_value(delta, row, signed=True), verdict(delta, row) if both else ""]
        lines.append(line)
    return lines


def plain_table(lines: list[list[str]]) -> str:
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in lines
    )


def markdown_table(lines: list[list[str]]) -> str:
    header, *body = lines
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(cell.replace("|", "\\|") for cell in line) + " |" for line in body]
    return "\n".join(out)


# --- report.md --------------------------------------------------------------------------------

SAMPLE_CHARS = 400  # a sample's texts are cut here; the report is for reading, not archiving


def _quote(text: str) -> str:
    text = text.strip()
    if len(text) > SAMPLE_CHARS:
        text = text[:SAMPLE_CHARS] + " …"
    return "\n".join("> " + line for line in (text or "(empty)").splitlines())


def sample_indices(count: int, wanted: int) -> list[int]:
    """`wanted` indices spread evenly over `count` turns (the first and last included)."""
    if wanted <= 0 or count == 0:
        return []
    if wanted >= count:
        return list(range(count))
    if wanted == 1:
        return [0]
    return sorted({round(i * (count - 1) / (wanted - 1)) for i in range(wanted)})


def samples_section(turns, replies: dict[str, list[str]], wanted: int) -> list[str]:
    lines = ["## Sample turns", ""]
    for number, index in enumerate(sample_indices(len(turns), wanted), start=1):
        turn = turns[index]
        lines += [f"### {number}. dialogue {turn.dialogue + 1}, reply {turn.position}", ""]
        for message in [m for m in turn.context if m["role"] != "system"][-3:]:
            lines += [f"**{message['role']}**", "", _quote(message["content"]), ""]
        lines += ["**reference**", "", _quote(turn.reference), ""]
        for name, texts in replies.items():
            lines += [f"**{name}**", "", _quote(texts[index]), ""]
    return lines


def safety_section(metrics: dict) -> list[str]:
    lines = ["## Care layer", ""]
    for name, model in metrics["models"].items():
        safety = model.get("safety")
        if not safety:
            continue
        actions = ", ".join(f"{k} {v}" for k, v in sorted(safety["actions"].items())) or "none"
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(safety["reasons"].items())) or "none"
        lines += [f"- **{name}**: actions: {actions}; reasons for replacing: {reasons}"]
    return lines + [""]


def render_report(
    metrics: dict, turns, replies: dict[str, list[str]], samples: int, extra_sections=()
) -> str:
    """The whole report; `extra_sections` (markdown lines, such as the judge's) come before
    the settings."""
    models = metrics["models"]
    data = metrics["data"]
    described = " vs ".join(f"**{name}** = `{m['reference']}`" for name, m in models.items())
    lines = [
        "# anxin eval",
        "",
        f"{described}",
        "",
        f"Data: `{data['file']}`: {data['dialogues']} dialogues, {data['assistant_turns']} "
        f"assistant replies, {data['turns_evaluated']} regenerated.",
        "",
        "## Metrics",
        "",
        markdown_table(metric_table({name: m["flat"] for name, m in models.items()})),
        "",
        "BLEU-4 and ROUGE as LLaMA-Factory computes them (×100, mean over replies). Replies are "
        "scored as a user would see them, after the care layer (a crisis turn gets the fixed "
        "crisis response without asking the model). Loss rows by reply position only cover "
        "replies that fit in cutoff_len, as in training. ✓/✗: the model is better/worse than "
        "the baseline.",
        "",
    ]
    lines += safety_section(metrics)
    if turns and samples:
        lines += samples_section(turns, replies, samples)
    lines += list(extra_sections)
    lines += ["## Settings", "", "```json", json.dumps(metrics["settings"], indent=2), "```", ""]
    return "\n".join(lines)


# --- metrics.png ------------------------------------------------------------------------------

PANELS = [
    (
        "similarity and diversity (×100)",
        ["bleu-4", "rouge-1", "rouge-2", "rouge-l", "distinct-1", "distinct-2"],
    ),
    (
        "problem replies (% of replies)",
        ["empty", "repetitive", "wrong_language", "hit_max_new_tokens", "safety_replaced"],
    ),
]
SCALED = {"distinct-1", "distinct-2", "empty", "repetitive", "wrong_language"}
SCALED |= {"hit_max_new_tokens", "safety_replaced"}


def plot_metrics(flats: dict[str, dict[str, float]], target: Path, extra_panels=()) -> Path:
    """Grouped bars, one colour per model: similarity, problem shares, and loss by reply;
    then one panel per `extra_panels` entry, a function that draws on the axis it is given."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    loss_keys = [row.key for row in table_rows(flats) if row.key.startswith(("eval_", "loss_"))]
    panels = [*PANELS, ("loss on assistant tokens", loss_keys)]
    count = len(panels) + len(extra_panels)
    figure, axes = plt.subplots(1, count, figsize=(5 * count, 4.8), dpi=100)
    for axis, draw in zip(axes[len(panels) :], extra_panels):
        draw(axis)
    width = 0.8 / len(flats)
    for axis, (title, keys) in zip(axes, panels):
        for offset, (name, flat) in enumerate(flats.items()):
            values = [flat.get(k, 0.0) * (100 if k in SCALED else 1) for k in keys]
            spots = [i + (offset - (len(flats) - 1) / 2) * width for i in range(len(keys))]
            axis.bar(spots, values, width, label=name)
        labels = [k.replace("loss_turn_", "reply ").replace("eval_loss", "all") for k in keys]
        axis.set_xticks(range(len(keys)), labels, rotation=30, ha="right")
        axis.set_title(title)
        axis.grid(axis="y", alpha=0.3)
        if not keys:
            axis.text(0.5, 0.5, "not measured", ha="center", va="center", transform=axis.transAxes)
    axes[0].legend()
    figure.tight_layout()
    with atomic_path(target, suffix=".png") as tmp:
        figure.savefig(tmp, format="png")
    plt.close(figure)
    return target


def write_outputs(
    out: Path,
    metrics: dict,
    turns,
    replies: dict[str, list[str]],
    samples: int,
    extra_sections=(),
    extra_panels=(),
):
    """report.md, metrics.json and metrics.png in `out`, each written whole or not at all."""
    out.mkdir(parents=True, exist_ok=True)
    flats = {name: model["flat"] for name, model in metrics["models"].items()}
    write_json(out / "metrics.json", metrics)
    plot_metrics(flats, out / "metrics.png", extra_panels)
    report = render_report(metrics, turns, replies, samples, extra_sections)
    write_text(out / "report.md", report)
    return [out / "report.md", out / "metrics.json", out / "metrics.png"]


def timing_lines(metrics: dict) -> list[str]:
    """How long each model took: loss, then replies (with generation speed)."""
    lines = []
    for name, model in metrics["models"].items():
        parts = []
        if model.get("loss"):
            parts.append(f"loss {model['loss']['seconds']:.1f} s")
        if model.get("generation"):
            generation = model["generation"]
            parts.append(
                f"{generation['turns']} replies {generation['seconds']:.1f} s "
                f"({generation['tokens_per_second']:.1f} tokens/s)"
            )
        lines.append(f"{name}: " + (", ".join(parts) or "nothing measured"))
    return lines
