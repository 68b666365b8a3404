"""The Train tab: a form that is TrainConfig, presets, YAML and command previews, and the run.

Every field of `TrainConfig` gets a widget (anxin.board.form), section by section; the YAML
preview, the command preview and the check behind Start all go through the same `build_config`
that `anxin train` uses, so a value the form accepts is one the command accepts. Start writes
the YAML under $ANXIN_HOME/board/runs/ and runs `anxin train THAT.yaml` as a job; the progress
bar, the curves and the log tail are read back from disk every second (the job's log and the
run's trainer_log.jsonl), so a reopened page shows the running job as it is.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import gradio as gr

from anxin.board import form
from anxin.board.context import REPO_ROOT, Context
from anxin.board.jobs import JobBusy
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
from anxin.config import read_yaml
from anxin.errors import ConfigError
from anxin.train.config import TrainConfig
from anxin.train.progress import duration

CPU_PRESET = "smollm2-135m/lora_sft"
# As `anxin plot` draws it: the logged loss light, its smoothed line dark (Gradio's plot legend
# shows no entries, so the plot's label names the two).
LOSS_COLOURS = {"loss": "#93c5fd", "smoothed": "#1d4ed8"}


def specs() -> list[form.FieldSpec]:
    return form.train_fields(TrainConfig)


def presets(root: Path = REPO_ROOT) -> dict[str, Path]:
    """The shipped recipes, configs/<model>/<method>.yaml, by `<model>/<method>`."""
    return {f"{p.parent.name}/{p.stem}": p for p in sorted((root / "configs").glob("*/*.yaml"))}


def preset_values(ctx: Context, path: Path) -> list:
    """A shipped recipe as widget values. Its `dataset_dir: data` means the repository's data/
    (the bundled sample); it is made absolute when the board's folder has no such folder."""
    mapping = read_yaml(path)
    folder = mapping.get("dataset_dir")
    if isinstance(folder, str) and not ctx.path(folder).exists():
        beside = path.parents[2] / folder
        if beside.is_dir():
            mapping["dataset_dir"] = str(beside)
    return form.mapping_to_widgets(specs(), mapping, str(path))


def initial_values(ctx: Context) -> list:
    """The form of the last run when there is one, else the CPU demo recipe, else defaults."""
    job = ctx.runner.job("train")
    config = job.details.get("config") if job else None
    try:
        if config and Path(config).is_file():
            return form.file_to_widgets(specs(), config)
        if CPU_PRESET in presets():
            return preset_values(ctx, presets()[CPU_PRESET])
    except ConfigError:
        pass  # the TrainConfig changed since that file was written: start from defaults
    return form.defaults(specs())


# --- starting, stopping, resuming -------------------------------------------------------------


def check_startable(output) -> None:
    """What `anxin train` would refuse about output_dir (OutputArgs), asked before it starts."""
    from anxin.train.checkpoints import prepare_output_dir

    prepare_output_dir(output, is_main=False)  # is_main=False: checks, changes nothing


def train_argv(config: Path, *overrides: str) -> list[str]:
    return [sys.executable, "-m", "anxin", "train", str(config), *overrides]


def start_training(ctx: Context, shown: list) -> form.Checked:
    """Check the form, write its YAML and start `anxin train`; the Checked says what failed."""
    all_specs = specs()
    checked = form.check_train_form(TrainConfig, all_specs, shown)
    if checked.config is None:
        return checked
    cfg = checked.config
    output_dir = ctx.path(cfg.output.output_dir)
    try:
        check_startable(replace(cfg.output, output_dir=str(output_dir)))
    except ConfigError as error:
        return form.Checked(error=str(error), field=form.field_named_in(str(error), ["output_dir"]))
    values = form.form_values(all_specs, shown)
    config = ctx.home / "runs" / f"train-{time.strftime('%Y%m%d-%H%M%S')}.yaml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(form.to_yaml(all_specs, values), encoding="utf-8")
    details = {"config": str(config), "output_dir": str(output_dir)}
    ctx.runner.start("train", train_argv(config), details)
    return checked


def resume_training(ctx: Context) -> None:
    """Run the last training's YAML again from its newest complete checkpoint."""
    job = ctx.runner.job("train")
    if job is None:
        raise ConfigError("nothing to resume: no training has been started here")
    argv = train_argv(job.details["config"], "resume_from_checkpoint=true",
                      "overwrite_output_dir=false")  # fmt: skip
    ctx.runner.start("train", argv, job.details)


# --- what the run looks like ------------------------------------------------------------------


def read_run_log(output_dir: str | None) -> list[dict]:
    from anxin.plot import read_log

    if not output_dir:
        return []
    try:
        return read_log(output_dir)
    except FileNotFoundError:
        return []


def curves(entries: list[dict]):
    """(train loss with its smoothed line, eval loss) as long-form tables for gr.LinePlot."""
    import pandas as pd

    from anxin.plot import series, smooth

    steps, losses = series(entries, "loss")
    rows = [(s, v, "loss") for s, v in zip(steps, losses)]
    rows += [(s, v, "smoothed") for s, v in zip(steps, smooth(losses))]
    loss = pd.DataFrame(rows, columns=["step", "loss", "series"]) if rows else None
    eval_steps, eval_losses = series(entries, "eval_loss")
    evals = pd.DataFrame({"step": eval_steps, "eval_loss": eval_losses}) if eval_steps else None
    return loss, evals


def progress_of(entries: list[dict], language: str) -> tuple[float | None, str]:
    """Fraction done and a caption: step, percent, last losses, elapsed and time left."""
    if not entries:
        return None, text("train.waiting", language)
    last = entries[-1]
    step, total = last["step"], max(1, last.get("total_steps") or 1)
    elapsed = last.get("elapsed_s", 0.0)
    left = elapsed / step * (total - step) if step else None
    parts = [f"step {step}/{total}", f"{100 * step // total}%"]
    for key in ("loss", "eval_loss"):
        found = [e[key] for e in entries if key in e]
        if found:
            parts.append(f"{key} {found[-1]:.4f}")
    parts.append(text("train.elapsed", language).format(time=duration(elapsed)))
    if step < total:
        parts.append(text("train.left", language).format(time=duration(left)))
    return step / total, " · ".join(parts)


# --- the tab ----------------------------------------------------------------------------------


@dataclass
class TrainTab:
    widgets: list
    by_name: dict
    sections: dict
    preset: gr.Dropdown
    load_preset: gr.Button
    yaml_path: gr.Textbox
    load_yaml: gr.Button
    save_yaml: gr.Button
    yaml_preview: gr.Code
    command: gr.Code
    note: gr.Markdown
    error: gr.JSON
    start: gr.Button
    stop: gr.Button
    resume: gr.Button
    status: gr.Markdown
    progress: gr.HTML
    loss_plot: gr.LinePlot
    eval_plot: gr.LinePlot
    log: gr.Textbox


def build(ctx: Context) -> TrainTab:
    t = ctx.labels
    all_specs = specs()
    values = initial_values(ctx)
    names = list(presets())
    with gr.Row(equal_height=True):
        preset = t.make(gr.Dropdown, "train.preset", choices=names, scale=3, elem_id="preset",
                        value=CPU_PRESET if CPU_PRESET in names else None)  # fmt: skip
        load_preset = t.make(gr.Button, "train.load_preset", "value", scale=1)
        yaml_path = t.make(gr.Textbox, "train.yaml_path", value="train.yaml", scale=3,
                           elem_id="yaml-path")  # fmt: skip
        load_yaml = t.make(gr.Button, "train.load_yaml", "value", scale=1)
        save_yaml = t.make(gr.Button, "train.save_yaml", "value", scale=1, elem_id="save-yaml")
    widgets, sections = [], {}
    for section in dict.fromkeys(spec.section for spec in all_specs):
        chosen = [(s, v) for s, v in zip(all_specs, values) if s.section == section]
        title = _section_title(section, ctx.labels.language)
        with gr.Accordion(title, open=True, elem_id=f"section-{section}") as accordion:
            widgets += render_fields([s for s, _ in chosen], [v for _, v in chosen])
        t.bind(accordion, "label", lambda lang, section=section: _section_title(section, lang))
        sections[section] = accordion
    with gr.Row():
        yaml_preview = t.make(gr.Code, "train.yaml_preview", language="yaml", elem_id="yaml",
                              interactive=False, max_lines=24)  # fmt: skip
        command = t.make(gr.Code, "train.command", language="shell", elem_id="command",
                         interactive=False, max_lines=24)  # fmt: skip
    note = t.bind(gr.Markdown(elem_id="train-note"), "value", lambda language: "")
    with gr.Row():
        start = t.make(gr.Button, "train.start", "value", variant="primary", elem_id="start")
        stop = t.make(gr.Button, "train.stop", "value", variant="stop", elem_id="stop")
        resume = t.make(gr.Button, "train.resume", "value", elem_id="resume")
    status = gr.Markdown(elem_id="train-status")
    progress = gr.HTML(progress_html(None, ""), elem_id="train-progress")
    with gr.Row():
        loss_plot = t.make(gr.LinePlot, "train.loss_plot", x="step", y="loss", color="series",
                           height=260, y_axis_format=".4f", elem_id="loss-plot",
                           color_map=LOSS_COLOURS)  # fmt: skip
        eval_plot = t.make(gr.LinePlot, "train.eval_plot", x="step", y="eval_loss", height=260,
                           y_axis_format=".4f", elem_id="eval-plot")  # fmt: skip
    log = t.make(gr.Textbox, "train.log", lines=10, max_lines=10, autoscroll=True,
                 interactive=False, elem_id="train-log")  # fmt: skip
    by_name = {spec.name: widget for spec, widget in zip(all_specs, widgets)}
    return TrainTab(widgets, by_name, sections, preset, load_preset, yaml_path, load_yaml,
                    save_yaml, yaml_preview, command, note, error_carrier(), start, stop, resume,
                    status, progress, loss_plot, eval_plot, log)  # fmt: skip


def _section_title(section: str, language: str) -> str:
    """The section's title from labels.json, else its dataclass's docstring (a new section)."""
    import typing

    from anxin.board.labels import load_labels

    key = f"section.{section}"
    if key in load_labels():
        return text(key, language)
    section_type = typing.get_type_hints(TrainConfig)[section]
    return f"{section} · {(section_type.__doc__ or section).strip().splitlines()[0]}"


def wire(ctx: Context, tab: TrainTab):
    """The tab's events. Returns `checked(trigger)`, which runs the form's check and preview
    after `trigger` (an event method such as `event.then`), for other tabs that change the form."""
    language = ctx.language_state
    all_specs = specs()

    def preview(*shown):
        checked = form.check_train_form(TrainConfig, all_specs, list(shown))
        if checked.config is None:
            note = f"⚠ **{checked.field or ''}**: {checked.error}"
            return [gr.skip(), gr.skip(), note, field_error(checked)]
        values = form.form_values(all_specs, list(shown))
        yaml_text = form.to_yaml(all_specs, values)
        return [yaml_text, form.train_command(all_specs, values), "", {}]

    def checked(trigger):
        trigger(
            preview, tab.widgets, [tab.yaml_preview, tab.command, tab.note, tab.error],
            show_progress="hidden",
            trigger_mode="always_last",  # typing fast: the last value is the one checked
            **PRIVATE,
        ).then(None, tab.error, None, js=MARK_FIELD_JS, **PRIVATE)  # fmt: skip

    for widget in tab.widgets:
        checked(widget.blur if isinstance(widget, (gr.Textbox, gr.Number)) else widget.input)
        if isinstance(widget, gr.Textbox):
            checked(widget.submit)

    def load_values(values_or_error):
        if isinstance(values_or_error, ConfigError):
            return [f"⚠ {values_or_error}", *[gr.skip()] * len(tab.widgets)]
        return ["", *values_or_error]

    def load_preset(name):
        if name not in presets():
            return [gr.skip(), *[gr.skip()] * len(tab.widgets)]
        try:
            return load_values(preset_values(ctx, presets()[name]))
        except ConfigError as error:
            return load_values(error)

    def load_file(path):
        try:
            return load_values(form.file_to_widgets(all_specs, ctx.path(path)))
        except ConfigError as error:
            return load_values(error)

    def save_file(path, *shown):
        lang = shown[-1]
        checked = form.check_train_form(TrainConfig, all_specs, list(shown[:-1]))
        if checked.config is None:
            return f"⚠ {checked.error}"
        target = ctx.path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        values = form.form_values(all_specs, list(shown[:-1]))
        target.write_text(form.to_yaml(all_specs, values), encoding="utf-8")
        return text("train.saved", lang).format(path=target)

    loaded = [tab.note, *tab.widgets]
    checked(tab.load_preset.click(load_preset, tab.preset, loaded, **PRIVATE).then)
    checked(tab.load_yaml.click(load_file, tab.yaml_path, loaded, **PRIVATE).then)
    tab.save_yaml.click(save_file, [tab.yaml_path, *tab.widgets, language], tab.note, **PRIVATE)

    def start(*args):
        *shown, lang = args
        try:
            checked_form = start_training(ctx, shown)
        except JobBusy as error:
            return [f"⚠ {error}", {}]
        if checked_form.config is None:
            note = f"⚠ **{checked_form.field or ''}**: {checked_form.error}"
            return [note, field_error(checked_form)]
        return [text("train.started", lang), {}]

    tab.start.click(start, [*tab.widgets, language], [tab.note, tab.error], **PRIVATE).then(
        None, tab.error, None, js=MARK_FIELD_JS, **PRIVATE
    )

    def stop(lang):
        job = ctx.runner.stop()
        return text("train.stopping" if job else "train.nothing_running", lang)

    def resume(lang):
        try:
            resume_training(ctx)
        except (JobBusy, ConfigError) as error:
            return f"⚠ {error}"
        return text("train.resumed", lang)

    tab.stop.click(stop, language, tab.note, concurrency_limit=None, **PRIVATE)
    tab.resume.click(resume, language, tab.note, **PRIVATE)
    return checked


PANEL = ("status", "progress", "loss_plot", "eval_plot", "log", "start", "stop", "resume")


def panel_outputs(tab: TrainTab) -> list:
    return [getattr(tab, name) for name in PANEL]


def panel(ctx: Context, language: str, seen: dict) -> list:
    """The run's status, progress, curves and log; skipped when nothing changed since `seen`."""
    status = ctx.runner.status("train")
    output_dir = status.job.details.get("output_dir") if status.job else None
    log_file = Path(output_dir or "") / "trainer_log.jsonl"
    stamp = log_file.stat().st_mtime_ns if output_dir and log_file.is_file() else None
    signature = (status.phase, status.job.started_at if status.job else None, stamp,
                 len(status.log), language)  # fmt: skip
    if seen.get("train") == signature:
        return [gr.skip()] * len(PANEL)
    seen["train"] = signature
    entries = read_run_log(output_dir)
    loss, evals = curves(entries)
    fraction, caption = progress_of(entries, language)
    if status.phase == "finished":
        fraction = 1.0
    live = status.live
    return [
        job_markdown(status, language, stopped_hint="train.resume_hint"),
        progress_html(fraction, caption if status.job else ""),
        loss,
        evals,
        "\n".join(status.log.splitlines()[-60:]),
        gr.update(interactive=not live),
        gr.update(interactive=live),
        gr.update(interactive=not live and status.job is not None),
    ]
