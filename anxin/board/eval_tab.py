"""The Evaluate tab: `anxin eval` as a form, run as a job, then its report.md and metrics.png.

The form is EvalConfig's fields (anxin.board.form.flag_fields), the same fields `anxin eval`
builds its flags from, so options added there (the LLM judge's) appear here by themselves.
"Use the training run" fills in the run's validation.jsonl, its adapter and its base model as
the baseline, so one click compares tuned against base on the held-out split.
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from anxin.board import form
from anxin.board.context import Context
from anxin.board.jobs import JobBusy, JobStatus, last_progress
from anxin.board.labels import text
from anxin.board.widgets import (
    MARK_FIELD_JS,
    PRIVATE,
    error_carrier,
    field_error,
    job_markdown,
    progress_html,
    render_fields,
)
from anxin.evaluate import EvalConfig

VALIDATION_FILE = "validation.jsonl"
PREFIX = "eval-field-"  # the Train form has fields of the same names (cutoff_len...)


def specs() -> list[form.FieldSpec]:
    return form.flag_fields(EvalConfig)


def initial_values() -> list:
    return [form.flag_widget_value(spec) for spec in specs()]


def from_training(model: str, output_dir: str, cutoff_len) -> dict[str, str]:
    """Eval fields that point at a training run: its held-out split, adapter and base."""
    suggested = {
        "data": str(Path(output_dir) / VALIDATION_FILE),
        "out": str(Path(output_dir) / "eval"),
        "model": model,
        "adapter": output_dir,
        "compare": model,
        "cutoff_len": cutoff_len,
    }
    names = {spec.name for spec in specs()}
    return {key: value for key, value in suggested.items() if key in names}


def eval_argv(shown: list) -> list[str]:
    return [sys.executable, "-m", "anxin", "eval", *form.flag_arguments(specs(), shown)]


def eval_command(shown: list) -> str:
    return shlex.join(["anxin", "eval", *form.flag_arguments(specs(), shown)])


def start_eval(ctx: Context, shown: list) -> form.Checked:
    checked = form.check_flag_form(EvalConfig, specs(), shown)
    if checked.config is not None:
        out = str(ctx.path(checked.config.out))
        ctx.runner.start("eval", eval_argv(shown), {"out": out})
    return checked


def results(status: JobStatus) -> tuple[str | None, str | None]:
    """(report.md text, metrics.png path) of a finished evaluation."""
    if status.phase != "finished" or status.job is None:
        return None, None
    out = Path(status.job.details["out"])
    report = out / "report.md"
    picture = out / "metrics.png"
    return (
        report.read_text(encoding="utf-8") if report.is_file() else None,
        str(picture) if picture.is_file() else None,
    )


def progress_of(status: JobStatus, language: str) -> tuple[float | None, str]:
    if status.phase == "finished":
        return 1.0, text("phase.finished", language)
    bar = last_progress(status.log) if status.live else None
    if bar is None:
        return None, text("eval.loading", language) if status.live else ""
    caption = f"{bar['desc']} {bar['n']}/{bar['total']} · {bar['percent']}%"
    caption += " · " + text("train.left", language).format(time=bar["left"])
    return bar["n"] / max(1, bar["total"]), caption


# --- the tab ----------------------------------------------------------------------------------


@dataclass
class EvalTab:
    widgets: list
    by_name: dict
    fill: gr.Button
    command: gr.Code
    note: gr.Markdown
    error: gr.JSON
    run: gr.Button
    stop: gr.Button
    status: gr.Markdown
    progress: gr.HTML
    report: gr.Markdown
    metrics: gr.Image


def build(ctx: Context) -> EvalTab:
    t = ctx.labels
    all_specs = specs()
    t.make(gr.Markdown, "eval.intro", "value")
    fill = t.make(gr.Button, "eval.fill", "value", elem_id="eval-fill", size="sm")
    widgets = render_fields(all_specs, initial_values(), PREFIX)
    command = t.make(gr.Code, "eval.command", language="shell", interactive=False,
                     elem_id="eval-command")  # fmt: skip
    note = t.bind(gr.Markdown(elem_id="eval-note"), "value", lambda language: "")
    with gr.Row():
        run = t.make(gr.Button, "eval.run", "value", variant="primary", elem_id="eval-run")
        stop = t.make(gr.Button, "train.stop", "value", variant="stop", elem_id="eval-stop")
    status = gr.Markdown(elem_id="eval-status")
    progress = gr.HTML(progress_html(None, ""), elem_id="eval-progress")
    metrics = t.make(gr.Image, "eval.metrics", type="filepath", interactive=False,
                     elem_id="eval-metrics")  # fmt: skip
    report = gr.Markdown(elem_id="eval-report")
    by_name = {spec.name: widget for spec, widget in zip(all_specs, widgets)}
    return EvalTab(widgets, by_name, fill, command, note, error_carrier(), run, stop, status,
                   progress, report, metrics)  # fmt: skip


def wire(ctx: Context, tab: EvalTab, train_widgets: dict) -> None:
    language = ctx.language_state
    all_specs = specs()

    def preview(*shown):
        checked = form.check_flag_form(EvalConfig, all_specs, list(shown))
        if checked.config is None:
            return [gr.skip(), f"⚠ **{checked.field or ''}**: {checked.error}",
                    field_error(checked, PREFIX)]  # fmt: skip
        return [eval_command(list(shown)), "", {}]

    def checked(trigger):
        trigger(
            preview, tab.widgets, [tab.command, tab.note, tab.error], show_progress="hidden",
            trigger_mode="always_last", **PRIVATE,
        ).then(None, tab.error, None, js=MARK_FIELD_JS, **PRIVATE)  # fmt: skip

    for widget in tab.widgets:
        checked(widget.blur if isinstance(widget, (gr.Textbox, gr.Number)) else widget.input)
        if isinstance(widget, gr.Textbox):
            checked(widget.submit)

    def fill(model, output_dir, cutoff_len):
        values = from_training(model, output_dir, cutoff_len)
        return [values.get(spec.name, gr.skip()) for spec in all_specs]

    train_inputs = [train_widgets[k] for k in ("model_name_or_path", "output_dir", "cutoff_len")]
    checked(tab.fill.click(fill, train_inputs, tab.widgets, **PRIVATE).then)

    def run(*args):
        *shown, lang = args
        try:
            checked_form = start_eval(ctx, shown)
        except JobBusy as error:
            return [f"⚠ {error}", {}]
        if checked_form.config is None:
            return [f"⚠ **{checked_form.field or ''}**: {checked_form.error}",
                    field_error(checked_form, PREFIX)]  # fmt: skip
        return [text("eval.started", lang), {}]

    tab.run.click(run, [*tab.widgets, language], [tab.note, tab.error], **PRIVATE).then(
        None, tab.error, None, js=MARK_FIELD_JS, **PRIVATE
    )

    def stop(lang):
        return text("train.stopping" if ctx.runner.stop() else "train.nothing_running", lang)

    tab.stop.click(stop, language, tab.note, concurrency_limit=None, **PRIVATE)


PANEL = ("status", "progress", "report", "metrics", "run", "stop")


def panel_outputs(tab: EvalTab) -> list:
    return [getattr(tab, name) for name in PANEL]


def panel(ctx: Context, language: str, seen: dict) -> list:
    status = ctx.runner.status("eval")
    signature = (status.phase, status.job.started_at if status.job else None, len(status.log),
                 language)  # fmt: skip
    if seen.get("eval") == signature:
        return [gr.skip()] * len(PANEL)
    seen["eval"] = signature
    fraction, caption = progress_of(status, language)
    report, picture = results(status)
    return [
        job_markdown(status, language),
        progress_html(fraction, caption),
        report or "",
        picture,
        gr.update(interactive=not status.live),
        gr.update(interactive=status.live),
    ]
