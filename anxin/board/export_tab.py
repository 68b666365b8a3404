"""The Export tab: merge the adapter into its base (`anxin merge`), or write one GGUF file with
an Ollama Modelfile (`anxin export`), as jobs; each result comes with download links.

Result files are registered as Gradio static paths, so downloading a model serves the file
where it lies instead of copying gigabytes into Gradio's cache first.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from anxin.board.context import Context
from anxin.board.jobs import JobBusy, JobStatus
from anxin.board.labels import text
from anxin.board.widgets import PRIVATE, job_markdown
from anxin.gguf import DTYPES as GGUF_DTYPES
from anxin.gguf import GGUF_NAME
from anxin.merge import DTYPES as MERGE_DTYPES

KINDS = ("merge", "export")


def merge_argv(model: str, adapter: str, out: str, dtype: str) -> list[str]:
    return [sys.executable, "-m", "anxin", "merge", "--model", model, "--adapter", adapter,
            "--out", out, "--dtype", dtype]  # fmt: skip


def export_argv(model: str, adapter: str, out: str, dtype: str) -> list[str]:
    argv = [sys.executable, "-m", "anxin", "export", "--model", model, "--out", out,
            "--dtype", dtype]  # fmt: skip
    return argv + (["--adapter", adapter] if adapter else [])


def result_files(kind: str, out: Path) -> list[str]:
    """What a finished job offers for download: the merged folder's files, or the GGUF with
    its Modelfile."""
    if not out.is_dir():
        return []
    if kind == "export":
        wanted = [out / GGUF_NAME, out / "Modelfile"]
    else:
        wanted = sorted(p for p in out.iterdir() if p.is_file())
    found = [str(p) for p in wanted if p.is_file()]
    gr.set_static_paths(found)  # served in place, not copied
    return found


def start(ctx: Context, kind: str, model: str, adapter: str, out: str, dtype: str) -> None:
    if not out.strip():
        raise ValueError(text("export.needs_out", ctx.labels.language))
    model_ref = ctx.model_ref(model.strip()) or "smollm2"
    adapter_path = str(ctx.path(adapter.strip())) if adapter.strip() else ""
    out_path = str(ctx.path(out.strip()))
    if kind == "merge":
        if not adapter_path:
            raise ValueError(text("export.needs_adapter", ctx.labels.language))
        argv = merge_argv(model_ref, adapter_path, out_path, dtype)
    else:
        argv = export_argv(model_ref, adapter_path, out_path, dtype)
    ctx.runner.start(kind, argv, {"out": out_path})


@dataclass
class ExportTab:
    model: gr.Textbox
    adapter: gr.Textbox
    fill: gr.Button
    merge_dtype: gr.Dropdown
    merge_out: gr.Textbox
    merge: gr.Button
    gguf_dtype: gr.Dropdown
    gguf_out: gr.Textbox
    gguf: gr.Button
    note: gr.Markdown
    statuses: dict
    files: dict


def build(ctx: Context, model: str, adapter: str) -> ExportTab:
    t = ctx.labels
    with gr.Row(equal_height=True):
        model_box = t.make(gr.Textbox, "chat.model", value=model, scale=3,
                           elem_id="export-model")  # fmt: skip
        adapter_box = t.make(gr.Textbox, "chat.adapter", value=adapter, scale=3,
                             elem_id="export-adapter")  # fmt: skip
        fill = t.make(gr.Button, "eval.fill", "value", scale=1, elem_id="export-fill")
    statuses, files = {}, {}
    with gr.Row():
        with gr.Column():
            t.make(gr.Markdown, "export.merge_heading", "value")
            merge_dtype = t.make(gr.Dropdown, "export.dtype", choices=list(MERGE_DTYPES),
                                 value=MERGE_DTYPES[0], elem_id="merge-dtype")  # fmt: skip
            merge_out = t.make(gr.Textbox, "export.out", value=_beside(adapter, "merged"),
                               elem_id="merge-out")  # fmt: skip
            merge = t.make(gr.Button, "export.merge", "value", variant="primary",
                           elem_id="merge")  # fmt: skip
            statuses["merge"] = gr.Markdown(elem_id="merge-status")
            files["merge"] = t.make(gr.File, "export.files", file_count="multiple",
                                    interactive=False, elem_id="merge-files")  # fmt: skip
        with gr.Column():
            t.make(gr.Markdown, "export.gguf_heading", "value")
            gguf_dtype = t.make(gr.Dropdown, "export.dtype", choices=list(GGUF_DTYPES),
                                value=GGUF_DTYPES[0], elem_id="gguf-dtype")  # fmt: skip
            gguf_out = t.make(gr.Textbox, "export.out", value=_beside(adapter, "gguf"),
                              elem_id="gguf-out")  # fmt: skip
            gguf = t.make(gr.Button, "export.gguf", "value", variant="primary", elem_id="gguf")
            statuses["export"] = gr.Markdown(elem_id="gguf-status")
            files["export"] = t.make(gr.File, "export.files", file_count="multiple",
                                     interactive=False, elem_id="gguf-files")  # fmt: skip
    note = t.bind(gr.Markdown(elem_id="export-note"), "value", lambda language: "")
    return ExportTab(model_box, adapter_box, fill, merge_dtype, merge_out, merge, gguf_dtype,
                     gguf_out, gguf, note, statuses, files)  # fmt: skip


def _beside(adapter: str, suffix: str) -> str:
    """`saves/run` -> `saves/run-merged`: results beside the adapter, not inside it."""
    return f"{adapter.rstrip('/')}-{suffix}" if adapter else suffix


def wire(ctx: Context, tab: ExportTab, train_widgets: dict) -> None:
    language = ctx.language_state

    def fill(model, output_dir):
        return model, output_dir, _beside(output_dir, "merged"), _beside(output_dir, "gguf")

    tab.fill.click(fill, [train_widgets["model_name_or_path"], train_widgets["output_dir"]],
                   [tab.model, tab.adapter, tab.merge_out, tab.gguf_out], **PRIVATE)  # fmt: skip

    def starter(kind: str):
        def run(model, adapter, out, dtype, lang):
            try:
                start(ctx, kind, model, adapter, out, dtype)
            except (JobBusy, ValueError) as error:
                return f"⚠ {error}"
            return text("export.started", lang)

        return run

    for kind, button, out, dtype in (("merge", tab.merge, tab.merge_out, tab.merge_dtype),
                                     ("export", tab.gguf, tab.gguf_out, tab.gguf_dtype)):  # fmt: skip
        button.click(starter(kind), [tab.model, tab.adapter, out, dtype, language], tab.note,
                     **PRIVATE)  # fmt: skip


def panel_outputs(tab: ExportTab) -> list:
    return [*(tab.statuses[k] for k in KINDS), *(tab.files[k] for k in KINDS)]


def panel(ctx: Context, language: str, seen: dict) -> list:
    statuses = {kind: ctx.runner.status(kind) for kind in KINDS}
    texts, downloads = [], []
    for kind, status in statuses.items():
        signature = (status.phase, status.job.started_at if status.job else None, language)
        if seen.get(kind) == signature:
            texts.append(gr.skip())
            downloads.append(gr.skip())
            continue
        seen[kind] = signature
        texts.append(job_markdown(status, language))
        downloads.append(_downloads(kind, status))
    return [*texts, *downloads]


def _downloads(kind: str, status: JobStatus) -> list[str] | None:
    if status.phase != "finished" or status.job is None:
        return None
    return result_files(kind, Path(status.job.details["out"])) or None
