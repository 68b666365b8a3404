"""The board's page: five tabs, the language toggle, and one timer that redraws the jobs.

Tabs are built in order (Data, Train, Evaluate, Chat, Export) and wired afterwards, since the
Data, Evaluate, Chat and Export tabs read the Train form (model, template, output_dir...). The
timer reads each job's state from disk once a second and sends only what changed, so a page
opened while a job runs, or reopened later, shows it as it is.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from anxin.board import chat_tab, data_tab, eval_tab, export_tab, form, train_tab
from anxin.board.context import Context
from anxin.board.widgets import CSS, PRIVATE
from anxin.errors import ConfigError

LANGUAGE_CHOICES = [("中文", "zh"), ("English", "en")]
REFRESH_S = 1.0


def build_board(workdir: Path | None = None, language: str = "zh") -> tuple[gr.Blocks, Context]:
    """The Gradio page (not launched) and its context."""
    ctx = Context.create(workdir or Path.cwd(), language)
    t = ctx.labels
    train_start = dict(zip([s.name for s in train_tab.specs()], train_tab.initial_values(ctx)))
    model, output_dir = train_start["model_name_or_path"], train_start["output_dir"]
    with gr.Blocks(title="anxin board") as page:
        ctx.language_state = gr.State(language)
        seen = gr.State({})  # what each job panel last showed, per visitor
        with gr.Row(equal_height=True):
            t.make(gr.Markdown, "board.title", "value", elem_id="board-title")
            toggle = gr.Radio(LANGUAGE_CHOICES, value=language, show_label=False,
                              container=False, elem_id="language")  # fmt: skip
        with gr.Tabs():
            with t.make(gr.Tab, "tab.data", elem_id="tab-data"):
                data = data_tab.build(ctx)
            with t.make(gr.Tab, "tab.train", elem_id="tab-train"):
                train = train_tab.build(ctx)
            with t.make(gr.Tab, "tab.eval", elem_id="tab-eval"):
                evaluate = eval_tab.build(ctx)
            with t.make(gr.Tab, "tab.chat", elem_id="tab-chat"):
                chat = chat_tab.build(ctx, model, output_dir)
            with t.make(gr.Tab, "tab.export", elem_id="tab-export"):
                export = export_tab.build(ctx, model, output_dir)
        check_train_form = train_tab.wire(ctx, train)
        for changes_form in data_tab.wire(ctx, data, train.by_name):
            check_train_form(changes_form.then)
        eval_tab.wire(ctx, evaluate, train.by_name)
        chat_tab.wire(ctx, chat, train.by_name)
        export_tab.wire(ctx, export, train.by_name)
        _wire_jobs(ctx, page, seen, train, evaluate, export)
        _wire_language(ctx, toggle, seen)
        check_train_form(
            page.load(lambda: _last_run_form(ctx), None, train.widgets, **PRIVATE).then
        )
    return page, ctx


def _wire_jobs(ctx: Context, page, seen, train, evaluate, export) -> None:
    outputs = [
        *train_tab.panel_outputs(train),
        *eval_tab.panel_outputs(evaluate),
        *export_tab.panel_outputs(export),
    ]

    def refresh(language, shown):
        shown = dict(shown or {})
        return [
            shown,
            *train_tab.panel(ctx, language, shown),
            *eval_tab.panel(ctx, language, shown),
            *export_tab.panel(ctx, language, shown),
        ]

    timer = gr.Timer(REFRESH_S)
    io = dict(inputs=[ctx.language_state, seen], outputs=[seen, *outputs])
    timer.tick(refresh, **io, show_progress="hidden", **PRIVATE)
    page.load(refresh, **io, show_progress="hidden", **PRIVATE)


def _wire_language(ctx: Context, toggle, seen) -> None:
    def switch(language):
        # Forgetting what the panels showed makes the next tick redraw them in the new words.
        return [language, {}, *ctx.labels.switch(language)]

    toggle.change(
        switch, toggle, [ctx.language_state, seen, *ctx.labels.components()],
        show_progress="hidden", **PRIVATE,
    )  # fmt: skip


def _last_run_form(ctx: Context) -> list:
    """The Train form of the last run, so a reopened page shows what is (or was) training."""
    job = ctx.runner.job("train")
    config = job.details.get("config") if job else None
    if not config or not Path(config).is_file():
        return [gr.skip()] * len(train_tab.specs())
    try:
        return form.file_to_widgets(train_tab.specs(), config)
    except ConfigError:  # TrainConfig changed shape since: keep the form as it is
        return [gr.skip()] * len(train_tab.specs())


def launch_board(
    host: str = "127.0.0.1",
    port: int = 7861,
    auth: tuple[str, str] | None = None,
    language: str = "zh",
    block: bool = True,
    workdir: Path | None = None,
):
    """Build and serve the board; with block=False return (url, page) at once (tests)."""
    from anxin.serve.web import launch

    page, ctx = build_board(workdir, language)
    ctx.home.mkdir(parents=True, exist_ok=True)
    url = launch(page, host, port, auth, block=block, css=CSS, allowed_paths=[str(ctx.home)])
    return url, page
