"""Take the README's screenshots of `anxin board` on the embedded SmolLM2-135M-Instruct.

    python docs/board/take_screenshots.py            (needs /usr/bin/chromium and playwright)

Runs the board from an empty temporary folder, as a new user would, and drives it in headless
Chromium: the bundled sample in the Data tab, a 6-step training, an evaluation against the base,
a message and a crisis message in the Chat tab, a merge and a GGUF export. One PNG per tab is
written next to this file (English page), plus train-zh.png for the language toggle. It takes
several minutes on a CPU; the model is pulled first if it is not cached.
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CHROMIUM = "/usr/bin/chromium"
VIEW = {"width": 1400, "height": 1000}
OUTPUT_DIR = "saves/smollm2-board"
# Small enough for a busy 2-core CPU (SmolLM2 in float32 there: about a minute a step).
TRAINING = {
    "max_samples": 40,
    "cutoff_len": 256,
    "gradient_accumulation_steps": 2,
    "max_steps": 6,
    "warmup_steps": 0,
    "logging_steps": 1,
    "eval_steps": 2,
    "save_steps": 2,
    "output_dir": OUTPUT_DIR,
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Page:
    def __init__(self, page):
        self.page = page

    def open(self, tab: str) -> None:
        self.page.get_by_role("tab", name=tab).click()
        self.page.wait_for_timeout(500)

    def set(self, elem_id: str, value) -> None:
        box = self.page.locator(f"#{elem_id}").locator("textarea, input").first
        box.fill(str(value))
        box.press("Tab")

    def wait_text(self, selector: str, words: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while words not in self.page.locator(selector).inner_text():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{selector} never showed {words!r}")
            time.sleep(0.5)

    def shot(self, name: str, top: str | None = None, height: int = VIEW["height"]) -> None:
        """The page from the element `top` down (`height` pixels), or the whole page."""
        path = str(HERE / f"{name}.png")
        if top is None:
            self.page.screenshot(path=path, full_page=True)
            return
        self.page.locator(top).scroll_into_view_if_needed()
        box = self.page.locator(top).bounding_box()
        scroll = self.page.evaluate("window.scrollY")
        clip = {"x": 0, "y": box["y"] + scroll - 16, "width": VIEW["width"], "height": height}
        self.page.screenshot(path=path, full_page=True, clip=clip)
        print(f"wrote {path}", file=sys.stderr)


def data(ui: Page) -> None:
    ui.open("Data")
    ui.page.locator("#data-names input").click()
    ui.page.get_by_role("option", name="anxin_sample").click()
    ui.page.keyboard.press("Escape")
    ui.wait_text("#data-stats", "dialogues: 365", timeout=300)
    ui.page.locator("#data-lengths img").wait_for(timeout=60_000)
    ui.page.wait_for_timeout(1000)
    ui.shot("data")


def train(ui: Page) -> None:
    ui.open("Train")
    for key, value in TRAINING.items():
        ui.set(f"field-{key}", value)
    ui.wait_text("#command", f"output_dir={OUTPUT_DIR}", timeout=60)
    ui.shot("train-form", "#board-title")
    ui.page.click("#start")
    ui.wait_text("#train-status", "running", timeout=60)  # not the last run's "finished"
    train_view(ui)


def train_view(ui: Page) -> None:
    """The run as the page shows it once finished (also after reopening the page)."""
    ui.open("Train")
    ui.wait_text("#train-status", "finished", timeout=1800)
    ui.page.wait_for_timeout(2000)
    ui.shot("train", "#yaml", height=1250)


def evaluate(ui: Page) -> None:
    ui.open("Evaluate")
    ui.page.click("#eval-fill")
    # cutoff_len as in training is 256 here: too short for the prompts of the longer turns.
    settings = {"max_turns": 2, "max_new_tokens": 32, "samples": 2, "cutoff_len": 1024}
    for key, value in settings.items():
        ui.set(f"eval-field-{key}", value)
    ui.wait_text("#eval-command", "--max-new-tokens 32", timeout=60)
    ui.page.click("#eval-run")
    ui.wait_text("#eval-status", "running", timeout=60)
    ui.wait_text("#eval-status", "finished", timeout=1800)
    ui.page.wait_for_timeout(2000)
    ui.shot("eval", "#eval-run", height=1300)


def chat(ui: Page) -> None:
    ui.open("Chat")
    ui.page.click("#chat-fill")
    ui.page.click("#chat-load")
    ui.wait_text("#chat-loaded", "Loaded", timeout=300)
    ui.page.get_by_text("generation settings", exact=False).click()  # open the accordion
    ui.set("chat-max_new_tokens", 40)
    for message in ("最近工作压力很大，晚上总是睡不着。", "我真的不想活了，活着没有意思。"):
        ui.page.fill("#chat-message textarea", message)
        ui.page.click("#chat-send")
        ui.page.wait_for_timeout(1000)
        ui.page.locator("#chat-send:enabled").wait_for(timeout=600_000)  # both replies ended
    ui.wait_text("#chat-tuned", "12356", timeout=60)
    ui.shot("chat", "#board-title")


def export(ui: Page) -> None:
    ui.open("Export")
    ui.page.click("#export-fill")
    for button, status in (("#merge", "#merge-status"), ("#gguf", "#gguf-status")):
        ui.page.click(button)
        ui.wait_text(status, "running", timeout=60)
        ui.wait_text(status, "finished", timeout=900)
    ui.page.wait_for_timeout(2000)
    ui.shot("export", "#board-title")


def chinese(ui: Page) -> None:
    ui.page.get_by_text("中文", exact=True).click()
    ui.open("训练")
    ui.page.wait_for_timeout(2000)
    ui.shot("train-zh", "#board-title")


STEPS = {"data": data, "train": train, "train-view": train_view, "eval": evaluate, "chat": chat,
         "export": export, "zh": chinese}  # fmt: skip


def main(argv: list[str]) -> int:
    import argparse

    from playwright.sync_api import sync_playwright

    from anxin.board.app import launch_board

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", help="the board's folder (default: a new empty one); "
                        "reuse one, with the same $ANXIN_HOME, to retake later tabs only")  # fmt: skip
    parser.add_argument("--steps", default=",".join(STEPS), help="which, in order")
    args = parser.parse_args(argv)
    os.chdir(args.workdir or tempfile.mkdtemp(prefix="anxin-board-shots-"))
    url, page = launch_board("127.0.0.1", free_port(), language="en", block=False)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"]
            )
            tab = browser.new_page(viewport=VIEW)
            tab.goto(url)
            for step in args.steps.split(","):
                STEPS[step](Page(tab))
            browser.close()
    finally:
        page.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
