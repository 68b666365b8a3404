"""`anxin board` in headless Chromium on the tiny model, the whole workflow from an empty folder:
pick the bundled sample and see it rendered, a bad value shown at its field, a 2-step training
with its curve, stopped and resumed, the evaluation report, base and tuned side by side with a
crisis message answered by the care layer, merge and GGUF export, and the language toggle.
One screenshot per tab goes to tests/artifacts/board-*.png."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import httpx
import pytest
from test_serve_api import CRISIS

from anxin.board.context import BUNDLED_DATA

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).parent / "artifacts"
OUTPUT_DIR = "saves/tiny"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,  # about two minutes: five `anxin` processes start (train twice, eval,
    # merge, export), each importing torch; a busy machine needs the longer timeout below
    pytest.mark.timeout(900),
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM), reason=f"needs Debian's chromium at {CHROMIUM}"
    ),
    pytest.mark.filterwarnings("ignore::Warning:gradio.queueing"),
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def board(tmp_path, monkeypatch):
    """The board served from an empty folder; its jobs are stopped at the end."""
    from anxin.board.app import launch_board

    monkeypatch.chdir(tmp_path)
    url, page = launch_board("127.0.0.1", free_port(), block=False, workdir=tmp_path)
    try:
        yield url, tmp_path
    finally:
        page.close()


@pytest.fixture
def chromium():
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )  # fmt: skip
        yield chromium
        chromium.close()


class Board:
    """The page, driven as a person would: tabs by name, fields by their config key."""

    def __init__(self, page, workdir: Path):
        self.page = page
        self.workdir = workdir

    def open(self, tab_name: str) -> None:
        self.page.get_by_role("tab", name=tab_name).click()

    def field(self, name: str, form: str = "field-"):
        return self.page.locator(f"#{form}{name}").locator("textarea, input").first

    def set(self, name: str, value, form: str = "field-") -> None:
        box = self.field(name, form)
        box.fill(str(value))
        box.press("Tab")

    def tick(self, name: str, on: bool) -> None:
        box = self.page.locator(f"#field-{name} input[type=checkbox]")
        if box.is_checked() != on:
            box.click()

    def wait_text(self, selector: str, words: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        shown = ""
        while time.monotonic() < deadline:
            shown = self.page.locator(selector).inner_text()
            if words in shown:
                return shown
            time.sleep(0.2)
        raise AssertionError(f"{selector} never showed {words!r}; it shows {shown[-600:]!r}")

    def wait_gone(self, selector: str, words: str, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while words in self.page.locator(selector).inner_text():
            assert time.monotonic() < deadline, f"{selector} still shows {words!r}"
            time.sleep(0.2)

    def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"board-{name}.png"), full_page=True)


def wait_for_file(path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.1)


def test_the_whole_workflow_in_the_browser(board, chromium, tiny_model_dir):
    url, workdir = board
    ui = Board(chromium.new_page(viewport={"width": 1400, "height": 900}), workdir)
    ui.page.goto(url)
    try:
        workflow(ui, workdir, tiny_model_dir, url, chromium)
    except BaseException:
        ui.shot("failure")  # what the page showed when it went wrong
        raise


def workflow(ui: Board, workdir: Path, tiny_model_dir: Path, url: str, chromium) -> None:
    started = time.monotonic()

    def lap(step: str) -> None:
        print(f"{step}: {time.monotonic() - started:.0f} s")

    # Train tab first: the data preview renders with the form's model and template.
    ui.open("训练")
    ui.set("model_name_or_path", tiny_model_dir)
    ui.set("lora_rank", 0)
    ui.wait_text("#field-lora_rank", "lora_rank must be > 0")  # at its field, not a traceback
    ui.set("lora_rank", 8)
    ui.wait_gone("#field-lora_rank", "must be > 0")

    # Data: the bundled sample, checked, measured and rendered with the trained tokens marked.
    ui.open("数据")
    assert ui.page.locator("#data-dir input, #data-dir textarea").first.input_value() == str(
        BUNDLED_DATA
    )
    ui.page.locator("#data-names input").click()
    ui.page.get_by_role("option", name="anxin_sample").click()
    ui.page.keyboard.press("Escape")
    ui.wait_text("#data-stats", "dialogues: 365", timeout=60)
    preview = ui.wait_text("#data-preview", "<|im_start|>assistant")
    assert "trained" in preview or "训练" in preview
    assert ui.page.locator("#data-preview .text:not(.unlabeled)").count() > 0  # trained, marked
    ui.shot("data")
    lap("data")

    # Train: two steps, a checkpoint each; stop after the first, resume to the second.
    ui.open("训练")
    assert ui.field("dataset").input_value() == "anxin_sample"
    for key, value in {
        "max_samples": 200, "max_steps": 2, "per_device_train_batch_size": 4,
        "gradient_accumulation_steps": 16, "logging_steps": 1, "save_steps": 1,
        "eval_steps": 1, "warmup_steps": 0, "bf16": "false", "torch_threads": 1,
        "output_dir": OUTPUT_DIR,
    }.items():  # fmt: skip
        ui.set(key, value)
    ui.wait_text("#command", "output_dir=saves/tiny")
    ui.page.click("#start")
    out = workdir / OUTPUT_DIR
    # Another page, opened while the job runs (a reopened browser), shows it and its form.
    reopened = Board(chromium.new_page(viewport={"width": 1400, "height": 900}), workdir)
    reopened.page.goto(url)
    reopened.open("训练")
    reopened.wait_text("#train-status", "运行中")
    assert reopened.field("output_dir").input_value() == OUTPUT_DIR
    reopened.page.close()
    wait_for_file(out / "checkpoint-1" / "anxin_checkpoint.json", timeout=90)
    ui.wait_text("#train-progress", "step 1/2")
    ui.page.locator("#loss-plot .vega-embed").wait_for(timeout=10_000)  # the curve is drawn
    assert "step" in ui.page.locator("#loss-plot").inner_text()
    ui.page.click("#stop")
    ui.wait_text("#train-status", "已停止", timeout=30)
    assert not (out / "adapter_model.safetensors").exists()  # it did stop before the end
    ui.page.click("#resume")
    ui.wait_text("#train-status", "已完成", timeout=90)
    ui.wait_text("#train-progress", "step 2/2")
    run = json.loads((out / "run.json").read_text())
    assert run["resumed_from"].endswith("checkpoint-1")
    assert "resume_from_checkpoint=true" in ui.page.locator("#train-status").inner_text()
    ui.shot("train")
    lap("train")

    # Evaluate the run's held-out split, tuned against base.
    ui.open("评估")
    ui.page.click("#eval-fill")
    ui.wait_text("#eval-command", "validation.jsonl")
    for key, value in {"max_turns": 2, "max_new_tokens": 8, "batch_size": 2}.items():
        ui.set(key, value, form="eval-field-")
    ui.wait_text("#eval-command", "--max-new-tokens 8")
    ui.page.click("#eval-run")
    ui.wait_text("#eval-status", "已完成", timeout=90)
    ui.wait_text("#eval-report", "BLEU")
    ui.page.locator("#eval-metrics img").wait_for(timeout=10_000)
    ui.shot("eval")
    lap("eval")

    # Chat: base and tuned answer the same message; a crisis gets the care layer's reply.
    ui.open("对话")
    ui.page.click("#chat-fill")
    ui.page.click("#chat-load")
    ui.wait_text("#chat-loaded", "已加载", timeout=60)
    ui.page.fill("#chat-message textarea", "I cannot sleep before exams")
    ui.page.click("#chat-send")
    for side in ("base", "tuned"):
        ui.page.locator(f"#chat-{side} [data-testid='bot']").first.wait_for(timeout=30_000)
    ui.page.click("#chat-stop")  # the tiny model would babble its 256 tokens
    ui.page.locator("#chat-send:enabled").wait_for(timeout=30_000)  # Send is back
    ui.page.fill("#chat-message textarea", CRISIS)
    ui.page.click("#chat-send")
    for side in ("base", "tuned"):
        ui.wait_text(f"#chat-{side}", "12356", timeout=20)
    ui.shot("chat")
    lap("chat")

    # Export: a merged model and a GGUF with its Modelfile, each with download links.
    ui.open("导出")
    ui.page.click("#export-fill")
    ui.page.click("#merge")
    ui.wait_text("#merge-files", "safetensors", timeout=90)
    ui.page.click("#gguf")
    ui.wait_text("#gguf-files", "gguf", timeout=90)
    ui.wait_text("#gguf-files", "Modelfile")
    links = ui.page.locator("#gguf-files a").evaluate_all("links => links.map(a => a.href)")
    gguf = next(link for link in links if link.endswith("model.gguf"))
    assert len(httpx.get(gguf).content) == (workdir / "saves/tiny-gguf/model.gguf").stat().st_size
    ui.shot("export")
    lap("export")

    # The language toggle relabels the page.
    ui.page.get_by_text("English", exact=True).click()
    ui.page.get_by_role("tab", name="Train").wait_for(timeout=10_000)
    ui.wait_text("#gguf-status", "finished")
