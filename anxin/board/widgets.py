"""Gradio widgets for generated forms, and the small pieces of page several tabs share.

A field's widget follows its spec: a checkbox for a bool, a number box for an int or float, a
dropdown where the field names its choices, a text box for everything else (optional values,
lists, `true|false|auto`), typed as in YAML. Each widget has `elem_id="field-NAME"`; an error
is shown inside the widget's block, in red, until the value is fixed (MARK_FIELD_JS).
"""

from __future__ import annotations

import html

import gradio as gr

from anxin.board.form import Checked, FieldSpec
from anxin.board.jobs import JobStatus
from anxin.board.labels import text

COLUMNS = 4
# Every event of the board is the page's own call, never a public API: private events also keep
# the page small (a public endpoint's API description lists each of its 60-odd inputs).
PRIVATE = {"api_visibility": "private"}
LONG_TEXT = 48  # characters: a default longer than this gets a row of its own

CSS = """
.invalid { box-shadow: 0 0 0 2px #d92d20 inset; border-radius: 6px; }
.board-field-error { color: #d92d20; font-size: 13px; font-weight: 600; padding: 4px 2px 0; }
#board-title h1, #board-title h2 { margin: 0; }
.board-progress { width: 100%; background: var(--block-background-fill); border: 1px solid
  var(--border-color-primary); border-radius: 6px; height: 22px; position: relative; }
.board-progress > div { height: 100%; border-radius: 6px; background: var(--color-accent); }
.board-progress > span { position: absolute; inset: 0; text-align: center; font-size: 13px;
  line-height: 22px; }
"""


def field_widget(spec: FieldSpec, value, prefix: str = "field-"):
    common = dict(label=spec.name, info=spec.help, elem_id=prefix + spec.name, interactive=True)
    if spec.kind == "bool":
        return gr.Checkbox(value=bool(value), **common)
    if spec.kind in ("int", "float"):
        return gr.Number(value=value, precision=0 if spec.kind == "int" else None, **common)
    if spec.kind == "choice":
        return gr.Dropdown(choices=list(spec.choices), value=value, **common)
    long = len(str(value or "")) > LONG_TEXT
    return gr.Textbox(value=value, lines=2 if long else 1, max_lines=6, **common)


def render_fields(specs: list[FieldSpec], values: list, prefix: str = "field-") -> list:
    """The widgets in rows of COLUMNS; long texts get a row of their own. Each widget's
    elem_id is `prefix` + its key (two forms on one page need two prefixes)."""
    widgets, row = [], []

    def flush():
        if row:
            with gr.Row(equal_height=False):
                for spec, value in row:
                    widgets.append(field_widget(spec, value, prefix))
            row.clear()

    for spec, value in zip(specs, values, strict=True):
        if spec.kind == "text" and len(str(value or "")) > LONG_TEXT:
            flush()
            row.append((spec, value))
            flush()
            continue
        row.append((spec, value))
        if len(row) == COLUMNS:
            flush()
    flush()
    return widgets


def field_error(checked: Checked, prefix: str = "field-") -> dict:
    """What MARK_FIELD_JS needs to show a check's error at its field ({} when all is well)."""
    if checked.config is not None or not checked.field:
        return {}
    return {"id": prefix + checked.field, "message": checked.error}


# Shows a form's error inside the field it is about, in the browser: the check returns only
# {field, message}, so no event has to send an update for each of the form's 60-odd widgets.
MARK_FIELD_JS = """
(error) => {
  for (const node of document.querySelectorAll(".board-field-error")) node.remove();
  for (const node of document.querySelectorAll(".invalid")) node.classList.remove("invalid");
  const block = error && error.id && document.getElementById(error.id);
  if (block) {
    const note = document.createElement("div");
    note.className = "board-field-error";
    note.textContent = "⚠ " + error.message;
    block.classList.add("invalid");
    block.appendChild(note);
  }
  return [];
}
"""


def error_carrier():
    """A hidden component holding the last check's {field, message} for MARK_FIELD_JS."""
    return gr.JSON(value={}, visible=False)


def progress_html(fraction: float | None, caption: str) -> str:
    """A bar with a caption over it (Gradio has no progress component outside events)."""
    width = 0 if fraction is None else max(0.0, min(1.0, fraction)) * 100
    return (
        f'<div class="board-progress"><div style="width:{width:.1f}%"></div>'
        f"<span>{html.escape(caption)}</span></div>"
    )


def job_markdown(status: JobStatus, language: str, stopped_hint: str | None = None) -> str:
    """One line on a job: its phase and command, and why it failed if it did."""
    if status.job is None:
        return ""
    line = f"**{text('phase.' + status.phase, language)}** · `{status.job.command}`"
    if status.phase == "failed":
        code = "" if status.exit_code is None else f" (exit {status.exit_code})"
        line += f"\n\n⚠ {text('job.failed_because', language)}{code}: `{status.error_line}`"
    if status.phase == "stopped" and stopped_hint:
        line += f"\n\n{text(stopped_hint, language)}"
    return line
