"""The Data tab: pick datasets from a dataset_info.json or upload a file, check it, measure it,
see conversations as the model will be trained on them, and register an upload.

The preview renders with the Train tab's model, template, persona and cutoff_len through
`anxin.template.render_conversation`, the function training itself uses, and highlights the
tokens whose labels are trained (assistant replies and their end-of-turn token): what you see
is exactly what the loss is computed on.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from anxin.atomic import write_jsonl
from anxin.board.context import BUNDLED_DATA, Context
from anxin.board.labels import text
from anxin.board.widgets import PRIVATE
from anxin.data.commands import format_stats, measure, plot_lengths, read_checked, summarize
from anxin.data.readers import READERS, REPAIR_BY_DEFAULT
from anxin.data.record import CheckReport, check_records
from anxin.data.registry import canonical_entry, check_entry, info_path, load_dataset_info
from anxin.data.registry import register_dataset as add_to_registry
from anxin.errors import AnxinError, DataError

PROBLEMS_SHOWN = 20
DATASET_NAME = re.compile(r"[\w][\w.-]*")
TRAINED_COLOUR = "#22c55e"


def trained_colours(language: str) -> dict[str, str]:
    return {text("data.trained", language): TRAINED_COLOUR}


def default_dataset_dir(workdir: Path) -> str:
    """The board folder's data/ when it has a registry, else the bundled sample's folder."""
    if (workdir / "data" / "dataset_info.json").is_file() or not BUNDLED_DATA.is_dir():
        return "data"
    return str(BUNDLED_DATA)


def dataset_names(ctx: Context, dataset_dir: str) -> list[str]:
    try:
        return list(load_dataset_info(ctx.path(dataset_dir)))
    except AnxinError:
        return []


# --- reading and checking ---------------------------------------------------------------------


def read_registered(dataset_dir: Path, name: str) -> tuple[list[dict], CheckReport]:
    """A registered dataset read as training reads it, invalid records kept out and counted."""
    entry = load_dataset_info(dataset_dir)[name]
    check_entry(name, entry, info_path(dataset_dir))
    formatting = entry.get("formatting", "alpaca")
    options = {key: entry[key] for key in ("columns", "tags") if entry.get(key)}
    report = CheckReport(skip_invalid=True)
    stream = READERS[formatting](
        dataset_dir / entry["file_name"], on_error=report.add_problem, **options
    )
    return check_records(
        stream, skip_invalid=True, repair=formatting in REPAIR_BY_DEFAULT, report=report
    )


def upload_source(files: list[str]) -> Path:
    """One uploaded file as it is; several (a SMILECHAT or CPsyCounD folder) in one folder."""
    if len(files) == 1:
        return Path(files[0])
    folder = Path(tempfile.mkdtemp(prefix="anxin-upload-"))
    for file in files:
        shutil.copy(file, folder / Path(file).name)
    return folder


def register_upload(ctx: Context, files: list[str], fmt: str, name: str, folder: str):
    """Write the upload's valid dialogues to FOLDER/NAME.jsonl and register NAME in
    FOLDER/dataset_info.json, as `anxin data convert --register` does. Returns (the registry's
    path, dialogues kept, records skipped)."""
    target = ctx.path(folder)
    if not DATASET_NAME.fullmatch(name):
        # The name becomes a file name: no separators, no way out of the folder.
        problem = f"{name!r}: use letters, digits, '.', '_' or '-'"
        raise DataError(info_path(target), None, "name", problem)
    records, report, _ = read_checked(upload_source(files), fmt, skip_invalid=True)
    write_jsonl(target / f"{name}.jsonl", records)
    registry = add_to_registry(target, name, canonical_entry(f"{name}.jsonl"))
    return registry, len(records), sum(report.skipped.values())


@dataclass
class Checked:
    records: list[dict]
    reports: list[tuple[str, CheckReport]]  # (what was read, its report)


def read_selection(ctx: Context, dataset_dir: str, names: list[str], files, fmt: str) -> Checked:
    """The uploaded files if any, else the picked datasets."""
    if files:
        records, report, used = read_checked(upload_source(files), fmt, skip_invalid=True)
        return Checked(records, [(f"upload ({used})", report)])
    records, reports = [], []
    for name in names or []:
        found, report = read_registered(ctx.path(dataset_dir), name)
        records += found
        reports.append((name, report))
    return Checked(records, reports)


def report_markdown(checked: Checked, language: str) -> str:
    lines = []
    for label, report in checked.reports:
        lines += [f"**{label}**", "```", report.summary(), "```"]
        problems = [str(problem) for problem in report.problems]
        if problems:
            lines.append(f"{text('data.problems', language)} ({len(problems)}):")
            lines += ["```", *problems[:PROBLEMS_SHOWN]]
            if len(problems) > PROBLEMS_SHOWN:
                lines.append(f"... +{len(problems) - PROBLEMS_SHOWN}")
            lines.append("```")
    return "\n".join(lines) or text("data.nothing", language)


# --- the preview ------------------------------------------------------------------------------


def highlighted(tokenizer, messages: list[dict], cutoff_len: int | None, trained: str):
    """(Rendered, pieces) for one conversation: pieces are (text, category) runs, trained
    tokens in category `trained`, the rest in none."""
    from anxin.template import IGNORE_INDEX, render_conversation

    rendered = render_conversation(tokenizer, messages, cutoff_len)
    ids, is_trained = rendered.input_ids, [label != IGNORE_INDEX for label in rendered.labels]
    pieces, start = [], 0
    for end in range(1, len(ids) + 1):
        if end == len(ids) or is_trained[end] != is_trained[start]:
            category = trained if is_trained[start] else None
            pieces.append((tokenizer.decode(ids[start:end]), category))
            start = end
    return rendered, pieces


def preview(tokenizer, records, first: int, count: int, system, cutoff_len, language) -> list:
    """HighlightedText pieces for `count` conversations from index `first`, each under a line
    that says how many tokens it has, how many are trained, and what cutoff_len cut."""
    from anxin.template import with_system

    trained = text("data.trained", language)
    pieces: list[tuple[str, str | None]] = []
    for index in range(first, min(first + count, len(records))):
        messages = with_system(records[index]["messages"], system)
        rendered, parts = highlighted(tokenizer, messages, cutoff_len, trained)
        notes = [
            text("data.token_counts", language).format(
                tokens=len(rendered.input_ids), trained=rendered.trained_tokens
            )
        ]
        if rendered.dropped_pairs:
            notes.append(text("data.dropped", language).format(pairs=rendered.dropped_pairs))
        if rendered.truncated:
            notes.append(text("data.truncated", language))
        pieces.append((f"\n── #{index + 1} · {'; '.join(notes)} ──\n", None))
        pieces += parts
    return pieces


# --- the tab ----------------------------------------------------------------------------------


@dataclass
class DataTab:
    dataset_dir: gr.Textbox
    names: gr.Dropdown
    files: gr.File
    fmt: gr.Dropdown
    first: gr.Number
    count: gr.Slider
    check: gr.Button
    report: gr.Markdown
    stats: gr.Markdown
    lengths: gr.Image
    preview: gr.HighlightedText
    register_name: gr.Textbox
    register_dir: gr.Textbox
    register: gr.Button
    register_note: gr.Markdown


def build(ctx: Context) -> DataTab:
    t = ctx.labels
    start_dir = default_dataset_dir(ctx.workdir)
    with gr.Row():
        with gr.Column(scale=1):
            t.make(gr.Markdown, "data.pick_heading", "value")
            dataset_dir = t.make(gr.Textbox, "data.dataset_dir", value=start_dir,
                                 elem_id="data-dir")  # fmt: skip
            names = t.make(
                gr.Dropdown, "data.datasets", choices=dataset_names(ctx, start_dir),
                multiselect=True, elem_id="data-names",
            )  # fmt: skip
            t.make(gr.Markdown, "data.upload_heading", "value")
            files = t.make(gr.File, "data.upload", file_count="multiple", type="filepath",
                           elem_id="data-upload")  # fmt: skip
            fmt = t.make(gr.Dropdown, "data.format", choices=["auto", *READERS], value="auto")
            with gr.Row():
                register_name = t.make(gr.Textbox, "data.register_name", scale=2)
                register_dir = t.make(gr.Textbox, "data.register_dir", value="data", scale=2)
            register = t.make(gr.Button, "data.register", "value", elem_id="data-register")
            register_note = gr.Markdown()
        with gr.Column(scale=2):
            with gr.Row():
                first = t.make(gr.Number, "data.first", value=1, precision=0, minimum=1)
                count = t.make(gr.Slider, "data.count", minimum=1, maximum=8, step=1, value=2)
                check = t.make(gr.Button, "data.check", "value", variant="primary",
                               elem_id="data-check")  # fmt: skip
            preview_box = t.make(
                gr.HighlightedText, "data.preview", elem_id="data-preview", show_legend=True,
                combine_adjacent=True, color_map=trained_colours(t.language),
            )  # fmt: skip
            t.bind(preview_box, "color_map", trained_colours)
            report = gr.Markdown(elem_id="data-report")
            stats = gr.Markdown(elem_id="data-stats")
            lengths = t.make(gr.Image, "data.lengths", type="filepath", height=260,
                             interactive=False, elem_id="data-lengths")  # fmt: skip
    return DataTab(dataset_dir, names, files, fmt, first, count, check, report, stats, lengths,
                   preview_box, register_name, register_dir, register, register_note)  # fmt: skip


def wire(ctx: Context, tab: DataTab, train_widgets: dict) -> list:
    """Events; `train_widgets` are the Train tab's fields (the preview renders with them).
    Returns the events that change the Train form, for the form's preview to follow."""
    language = ctx.language_state
    render_with = [train_widgets[k] for k in
                   ("model_name_or_path", "template", "default_system", "cutoff_len")]  # fmt: skip

    def refresh_names(dataset_dir):
        return gr.update(choices=dataset_names(ctx, dataset_dir), value=[])

    def inspect(dataset_dir, names, files, fmt, first, count, model, template, system, cutoff,
                lang):  # fmt: skip
        try:
            checked = read_selection(ctx, dataset_dir, names, files, fmt)
        except AnxinError as error:
            return f"⚠ {error}", "", None, []
        if not checked.records:
            return report_markdown(checked, lang), "", None, []
        tokenizer, note = None, ""
        try:
            tokenizer = ctx.tokenizer(model, template)
        except (AnxinError, OSError, ValueError) as error:
            note = f"\n\n⚠ {text('data.no_tokenizer', lang)}: {error}"
        lengths = measure(checked.records, tokenizer)
        picture = ctx.home / "data" / "lengths.png"
        picture.parent.mkdir(parents=True, exist_ok=True)
        plot_lengths(lengths, picture)
        pieces = []
        if tokenizer is not None:
            system = system or None
            first = max(1, int(first or 1)) - 1
            pieces = preview(tokenizer, checked.records, first, int(count), system,
                             int(cutoff) if cutoff else None, lang)  # fmt: skip
        stats = f"```\n{format_stats(summarize(lengths))}\n```"
        return report_markdown(checked, lang) + note, stats, str(picture), pieces

    def use_for_training(dataset_dir, names):
        return ",".join(names or []) or gr.skip(), dataset_dir if names else gr.skip()

    def register(files, fmt, name, folder, lang):
        if not files or not name.strip():
            return text("data.register_needs", lang), gr.skip(), gr.skip()
        try:
            registry, kept, skipped = register_upload(ctx, files, fmt, name.strip(), folder)
        except AnxinError as error:
            return f"⚠ {error}", gr.skip(), gr.skip()
        note = text("data.registered", lang).format(
            name=name.strip(), count=kept, path=registry, skipped=skipped
        )
        names = dataset_names(ctx, folder)
        return note, folder, gr.update(choices=names, value=[name.strip()])

    inspect_io = dict(
        inputs=[tab.dataset_dir, tab.names, tab.files, tab.fmt, tab.first, tab.count,
                *render_with, language],
        outputs=[tab.report, tab.stats, tab.lengths, tab.preview],
    )  # fmt: skip
    tab.dataset_dir.submit(refresh_names, tab.dataset_dir, tab.names, **PRIVATE)
    tab.dataset_dir.blur(refresh_names, tab.dataset_dir, tab.names, **PRIVATE)
    tab.check.click(inspect, **inspect_io, **PRIVATE)
    picked = tab.names.input(
        use_for_training, [tab.dataset_dir, tab.names],
        [train_widgets["dataset"], train_widgets["dataset_dir"]], **PRIVATE,
    )  # fmt: skip
    picked.then(inspect, **inspect_io, **PRIVATE)
    tab.files.upload(inspect, **inspect_io, **PRIVATE)
    registered = tab.register.click(
        register, [tab.files, tab.fmt, tab.register_name, tab.register_dir, language],
        [tab.register_note, tab.dataset_dir, tab.names], **PRIVATE,
    ).then(
        use_for_training, [tab.dataset_dir, tab.names],
        [train_widgets["dataset"], train_widgets["dataset_dir"]], **PRIVATE,
    )  # fmt: skip
    return [picked, registered]
