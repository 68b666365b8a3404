"""`anxin chat`: the real command piped a script, and the session's commands one by one."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys

import pytest
from test_serve_api import CRISIS, ScriptedBackend

from anxin import safety
from anxin.engine import Engine
from anxin.serve.chat import ChatSession


def session_on(backend) -> tuple[ChatSession, io.StringIO, io.StringIO]:
    out, notes = io.StringIO(), io.StringIO()
    return ChatSession(Engine(backend, system_prompt="persona"), out, notes), out, notes


def test_piped_script_through_the_real_command(tiny_model_dir, tmp_path):
    script = "hello\nagain\n/undo\n/save t.jsonl\n/exit\nnever read\n"
    command = [sys.executable, "-m", "anxin", "chat", "--model", str(tiny_model_dir)]
    result = subprocess.run(
        [*command, "--max-new-tokens", "8", "--seed", "0"],
        input=script,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert safety.disclaimer("zh") in result.stderr
    assert "(stopped)" not in result.stderr
    assert result.stderr.count("(took back") == result.stderr.count("(saved 2 messages") == 1
    saved = [json.loads(line) for line in (tmp_path / "t.jsonl").read_text().splitlines()]
    assert len(saved) == 1
    roles = [m["role"] for m in saved[0]["messages"]]
    assert roles == ["system", "user", "assistant"]  # /undo took back "again" and its reply
    assert saved[0]["messages"][1]["content"] == "hello"
    first_reply = saved[0]["messages"][2]["content"]
    # stdout holds the replies only, each ended by a newline (random text may hold more)
    assert first_reply.strip() and result.stdout.startswith(first_reply + "\n")
    assert result.stdout.endswith("\n") and len(result.stdout) > len(first_reply) + 1


def test_history_undo_reset_and_system(tmp_path):
    backend = ScriptedBackend("I am listening.")
    session, out, notes = session_on(backend)
    for line in ["first", "second", "/undo", "third", "/system be brief", "fourth"]:
        assert session.handle(line)
    contents = [m["content"] for m in backend.prompts[-1]]
    assert contents == [
        "be brief",
        "first",
        "I am listening.",
        "third",
        "I am listening.",
        "fourth",
    ]
    assert out.getvalue() == "I am listening.\n" * 4
    session.handle("/reset")
    session.handle("fifth")
    assert [m["content"] for m in backend.prompts[-1]] == ["be brief", "fifth"]
    session.handle("/undo")
    session.handle("/undo")
    assert "nothing to undo" in notes.getvalue()


def test_save_writes_a_canonical_record(tmp_path):
    session, _, notes = session_on(ScriptedBackend("ok"))
    session.handle("hello")
    session.handle(f"/save {tmp_path / 'sub' / 'talk.jsonl'}")
    record = json.loads((tmp_path / "sub" / "talk.jsonl").read_text())
    assert record == {
        "messages": [
            {"role": "system", "content": "persona"},
            {"role": "user", "content": "hello"},
            {"role": "assistant", "content": "ok"},
        ]
    }
    assert "saved 2 messages" in notes.getvalue()
    # A transcript holds the most private text there is: readable by its owner only.
    assert (tmp_path / "sub" / "talk.jsonl").stat().st_mode & 0o777 == 0o600
    session.handle(f"/save {tmp_path}")  # a folder: said plainly, nothing lost
    assert "is a folder" in notes.getvalue()


def test_commands_help_unknown_and_exit():
    session, out, notes = session_on(ScriptedBackend("ok"))
    assert session.handle("/help") and "/save FILE" in notes.getvalue()
    assert session.handle("/frobnicate") and "unknown command /frobnicate" in notes.getvalue()
    assert session.handle("   ")
    assert not session.handle("/exit") and not session.handle("/quit")
    assert out.getvalue() == ""


def test_crisis_message_never_reaches_the_model_in_the_terminal():
    backend = ScriptedBackend("MODEL WORDS")
    session, out, _ = session_on(backend)
    session.handle(CRISIS)
    assert "MODEL WORDS" not in out.getvalue() and "12356" in out.getvalue()
    assert backend.prompts == []


def test_ctrl_c_stops_the_reply_and_keeps_the_session():
    class InterruptedBackend(ScriptedBackend):
        def stream(self, messages, settings, stats, stop=None):
            for i, piece in enumerate(super().stream(messages, settings, stats, stop)):
                if i == 2:
                    signal.raise_signal(signal.SIGINT)  # the user presses Ctrl-C
                yield piece

    backend = InterruptedBackend("one two three four five six seven", piece=4)
    session, out, notes = session_on(backend)
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN when run in the background (nohup)
    session.handle("talk to me")
    assert "(stopped)" in notes.getvalue()
    shown = out.getvalue().strip()
    assert backend.reply.startswith(shown) and len(shown) < len(backend.reply)
    assert session.history[-1] == {"role": "assistant", "content": shown}
    assert session.handle("still here?")  # the session goes on
    assert signal.getsignal(signal.SIGINT) is before  # the previous handler is back


@pytest.mark.slow
def test_ctrl_c_in_a_real_terminal(tiny_model_dir):
    """The real command on a pseudo-terminal: prompt, Ctrl-C mid-reply, the session goes on."""
    pexpect = pytest.importorskip("pexpect")
    command = [sys.executable, "-m", "anxin", "chat", "--model", str(tiny_model_dir)]
    child = pexpect.spawn(
        command[0], [*command[1:], "--max-new-tokens", "400"], encoding="utf-8", timeout=60
    )
    try:
        child.expect("你: ")
        child.sendline("hello")
        child.expect("安心: ")
        child.sendintr()
        child.expect(r"\(stopped\)")
        child.expect("你: ")
        child.sendline("/undo")
        child.expect("took back")
        child.sendintr()  # at the prompt: a hint, not an exit
        child.expect("/exit or Ctrl-D")
        child.sendeof()
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
