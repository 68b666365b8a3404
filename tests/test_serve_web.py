"""`anxin web`: the page's reply logic directly, then the real page in headless Chromium."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest
from test_serve_api import CRISIS, ScriptedBackend

from anxin import safety
from anxin.engine import Engine
from anxin.serve import parse_auth
from anxin.serve.web import Conversations, build_page, hotline_markdown, launch

REPLY = "I hear you. That sounds really hard. What happened today?"
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).parent / "artifacts"


def test_launch_keeps_gradios_share_link_hint_quiet(monkeypatch):
    """A counselling page is not for a public link: Gradio's share=True hint is not printed."""
    page = build_page(Engine(ScriptedBackend(REPLY)), "zh")
    given = {}
    monkeypatch.setattr(type(page), "launch", lambda self, **options: given.update(options))
    url = launch(page, "::1", 7861, block=False)
    assert given["quiet"] is True and "share" not in given
    assert url == "http://[::1]:7861/"


def send_and_reply(talk, message, history, session=""):
    """Both steps of sending, as the page runs them."""
    shown, kept, box, waiting = talk.accept(message, history)
    return (shown, kept, box, waiting), list(talk.respond(waiting, kept, session))


def test_the_message_shows_at_once_then_the_reply_streams():
    backend = ScriptedBackend(REPLY, piece=5)
    talk = Conversations(Engine(backend, system_prompt="persona"), typing="typing…")
    (shown, kept, box, waiting), steps = send_and_reply(talk, "  hello  ", [])
    # Step one: the user's message at once, with a typing indicator; the model not asked yet.
    assert shown == [
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "typing…"},
    ]
    assert kept == [] and box == "" and waiting == shown[:1]
    # Step two: the reply grows in view and ends in the kept history.
    final, kept = steps[-1]
    assert (
        final
        == kept
        == [
            {"role": "user", "content": "hello"},
            {"role": "assistant", "content": REPLY},
        ]
    )
    assert len(steps) > 1 and REPLY.startswith(steps[0][0][-1]["content"])
    send_and_reply(talk, "and then?", kept)
    assert [m["content"] for m in backend.prompts[-1]] == ["persona", "hello", REPLY, "and then?"]
    assert talk.accept("   ", kept) == (kept, kept, "", None)
    assert list(talk.respond(None, kept)) == [(kept, kept)]
    assert talk.turns == {}  # no per-session state is left behind


def test_stop_ends_the_reply_early_and_reset_forgets():
    backend = ScriptedBackend("Some words. " * 20, piece=4)
    talk = Conversations(Engine(backend))
    *_, waiting = talk.accept("hello", [])
    replies = talk.respond(waiting, [], session="visitor")
    next(replies)
    talk.stop("visitor")
    *_, (shown, kept) = replies
    assert len(kept[-1]["content"]) < len(backend.reply)
    assert backend.stopped_early.is_set()
    *_, waiting = talk.accept("hello again", kept)
    replies = talk.respond(waiting, kept, session="visitor")
    next(replies)
    assert talk.reset("visitor") == ([], [], "")
    assert list(replies)[-1] == ([], [])  # a reply cut by Reset leaves nothing behind


def test_crisis_is_answered_in_step_one_without_the_model_or_the_queue():
    backend = ScriptedBackend("MODEL WORDS")
    talk = Conversations(Engine(backend))
    shown, kept, _, waiting = talk.accept(CRISIS, [])
    assert "12356" in shown[-1]["content"] and "MODEL WORDS" not in shown[-1]["content"]
    assert waiting is None and kept == shown  # nothing is left for the queued step
    assert backend.prompts == []


def test_hotline_panel_and_auth_parsing():
    panel = hotline_markdown("zh")
    for entry in safety.load_hotlines("zh")["hotlines"]:
        assert entry["number"] in panel
    assert "988" in hotline_markdown("en")
    assert parse_auth("me:pa:ss") == ("me", "pa:ss") and parse_auth(None) is None
    with pytest.raises(ValueError, match="USER:PASSWORD"):
        parse_auth("nopassword")


# --- the real page in a browser ---------------------------------------------------------------

browser_test = pytest.mark.skipif(
    not os.path.exists(CHROMIUM), reason=f"needs Debian's chromium at {CHROMIUM}"
)


@pytest.fixture(scope="module")
def page_url():
    backend = ScriptedBackend(REPLY, piece=4, delay=0.08)
    page = build_page(Engine(backend), "zh")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = launch(page, "127.0.0.1", port, block=False)
    try:
        yield url, backend
    finally:
        page.close()


@pytest.fixture(scope="module")
def browser():
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield chromium
        chromium.close()


def send(tab, text: str, expect: str, timeout: float = 20) -> list[str]:
    """Type `text`, press Send, and collect the last bot message as it changes until `expect`
    appears in it."""
    bot = tab.locator('[data-testid="bot"]')
    before = bot.count()
    tab.fill("#message textarea", text)
    tab.click("#send")
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while not (seen and expect in seen[-1]):
        assert time.monotonic() < deadline, f"no reply containing {expect!r}; saw {seen}"
        if bot.count() > before:
            text_now = bot.last.inner_text().strip()
            if text_now and (not seen or seen[-1] != text_now):
                seen.append(text_now)
        time.sleep(0.03)
    return seen


@pytest.mark.browser
@pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")  # gradio's own pandas calls
@browser_test
def test_the_page_streams_a_reply_and_shows_the_care_panel(page_url, browser):
    url, _ = page_url
    tab = browser.new_page(viewport={"width": 1200, "height": 800})
    tab.goto(url)
    # Gradio renders the columns one after another: wait for each (fails after 10 s), never
    # take one instant's is_visible() as the answer.
    for panel in ("#disclaimer", "#hotlines"):
        tab.locator(panel).wait_for(state="visible", timeout=10_000)
    assert tab.locator("#disclaimer").inner_text().strip() == safety.disclaimer("zh")
    assert "12356" in tab.locator("#hotlines").inner_text()
    seen = send(tab, "hello", expect="What happened today?")
    assert seen[-1] == REPLY
    assert any(REPLY.startswith(s) and s != REPLY for s in seen), f"not streamed: {seen}"
    ARTIFACTS.mkdir(exist_ok=True)
    tab.screenshot(path=str(ARTIFACTS / "web.png"), full_page=True)
    tab.click("#reset")
    tab.locator('[data-testid="bot"]').first.wait_for(state="detached", timeout=5000)
    tab.close()


@pytest.mark.browser
@pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")  # gradio's own pandas calls
@browser_test
def test_the_page_answers_a_crisis_without_the_model(page_url, browser):
    url, backend = page_url
    tab = browser.new_page()
    tab.goto(url)
    seen = send(tab, CRISIS, expect="12356")
    assert "really hard" not in seen[-1]
    assert all(CRISIS not in m["content"] for prompt in backend.prompts for m in prompt)
    tab.close()


@pytest.mark.browser
@pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")  # gradio's own pandas calls
@browser_test
def test_a_crisis_is_answered_while_the_model_is_busy_and_messages_show_at_once(browser):
    import threading

    backend = ScriptedBackend(REPLY, piece=4)
    backend.hold = threading.Event()  # the one generation slot stays taken until released
    page = build_page(Engine(backend), "zh", concurrency=1)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = launch(page, "127.0.0.1", port, block=False)
    try:
        busy, other = browser.new_page(), browser.new_page()
        busy.goto(url)
        other.goto(url)
        busy.fill("#message textarea", "hello")
        busy.click("#send")
        assert backend.started.wait(10)  # the model is now busy with the first visitor
        started = time.monotonic()
        other.fill("#message textarea", "I feel so tired")
        other.click("#send")
        # The second visitor's own message is shown at once, with the typing indicator...
        other.locator('[data-testid="user"]').first.wait_for(timeout=3000)
        assert "正在回复" in other.locator('[data-testid="bot"]').last.inner_text(timeout=3000)
        shown_after = time.monotonic() - started
        # ...and a crisis from a third visitor is answered though the queue is held.
        third = browser.new_page()
        third.goto(url)
        started = time.monotonic()
        seen = send(third, CRISIS, expect="12356", timeout=10)
        crisis_after = time.monotonic() - started
        assert "12356" in seen[-1]
        assert not backend.hold.is_set() and len(backend.prompts) == 1  # still the first reply
        assert shown_after < 3 and crisis_after < 5
    finally:
        backend.hold.set()
        page.close()
