"""`anxin chat`: talk to a model in the terminal, streaming, with history.

Replies go to stdout and everything else (the disclaimer, command feedback) to stderr, so piping
works for scripting:

    printf 'hello\\n/save talk.jsonl\\n/exit\\n' | anxin chat --model smollm2 > replies.txt

Ctrl-C stops the reply being written and keeps the session; Ctrl-D or /exit leaves. Nothing is
written anywhere unless you /save.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from typing import TYPE_CHECKING, TextIO

from anxin.engine import ContextTooLong
from anxin.errors import UpstreamError
from anxin.serve import add_engine_arguments, engine_from_args

if TYPE_CHECKING:
    from anxin.engine import Engine

HELP = """\
commands:
  /reset         forget the conversation (the persona stays)
  /undo          take back your last message and its reply
  /system TEXT   use TEXT as the persona from now on (/system alone shows it)
  /save FILE     write the conversation to FILE as one JSONL record (persona included)
  /help          this list
  /exit          leave (also /quit, Ctrl-D)
Ctrl-C stops the current reply."""

EPILOG = (
    """\
examples:
  anxin chat --model smollm2 --adapter saves/smollm2-135m/lora/sft
  anxin chat --model merged/ --temperature 0 --max-new-tokens 128
  anxin chat --upstream http://gpu-box:8000/v1            (generation on a vLLM server)
  printf 'hello\\n/save t.jsonl\\n/exit\\n' | anxin chat --model smollm2

"""
    + HELP
)


class ChatSession:
    """The conversation and its commands, apart from the terminal so tests can drive it."""

    def __init__(self, engine: Engine, out: TextIO, notes: TextIO, show_speaker: bool = False):
        self.engine = engine
        self.out = out  # replies
        self.notes = notes  # everything else
        self.show_speaker = show_speaker
        self.history: list[dict] = []
        self.system: str | None = None  # a /system persona, else the engine's

    def persona(self) -> str | None:
        return self.system or self.engine.system_prompt

    def conversation(self) -> list[dict]:
        persona = self.persona()
        return ([{"role": "system", "content": persona}] if persona else []) + self.history

    def handle(self, line: str) -> bool:
        """Act on one input line; False means leave."""
        line = line.strip()
        if not line:
            return True
        if line.startswith("/"):
            return self.command(line)
        self.answer(line)
        return True

    def command(self, line: str) -> bool:
        name, _, rest = line.partition(" ")
        rest = rest.strip()
        if name in ("/exit", "/quit"):
            return False
        if name == "/reset":
            self.history.clear()
            self.note("(conversation cleared)")
        elif name == "/undo":
            self.undo()
        elif name == "/system":
            self.set_system(rest)
        elif name == "/save":
            self.save(rest)
        elif name == "/help":
            self.note(HELP)
        else:
            self.note(f"unknown command {name}; /help lists the commands")
        return True

    def undo(self) -> None:
        if not self.history:
            self.note("(nothing to undo)")
            return
        if self.history[-1]["role"] == "assistant":
            self.history.pop()
        self.history.pop()
        self.note("(took back the last exchange)")

    def set_system(self, text: str) -> None:
        if text:
            self.system = text
            self.note("(persona set for this session)")
        else:
            self.note(f"persona: {self.persona() or '(none)'}")

    def save(self, target: str) -> None:
        from anxin.atomic import write_jsonl

        if not target:
            self.note("usage: /save FILE")
            return
        try:
            write_jsonl(target, [{"messages": self.conversation()}], private=True)
        except OSError as error:
            self.note(f"could not save: {error}")
            return
        self.note(f"(saved {len(self.history)} messages to {target})")

    def answer(self, text: str) -> None:
        """Stream a reply to `text`; Ctrl-C stops it and keeps what was shown."""
        self.history.append({"role": "user", "content": text})
        stop = threading.Event()
        shown: list[str] = []
        reply = None
        if self.show_speaker:
            self.out.write("安心: ")
        try:
            with stop_on_ctrl_c(stop) as pressed:
                for chunk in self.engine.stream(self.conversation(), stop=stop):
                    if chunk.delta:
                        shown.append(chunk.delta)
                        self.out.write(chunk.delta)
                        self.out.flush()
                    reply = chunk.reply or reply
        except (UpstreamError, ContextTooLong) as error:  # say so, keep the session
            self.note(f"\n(no reply: {error})")
        finally:
            self.out.write("\n")
            self.out.flush()
        text = reply.text if reply is not None else "".join(shown)
        if pressed.is_set():
            self.note("(stopped)")
        if text:
            self.history.append({"role": "assistant", "content": text})
        else:
            self.history.pop()  # nothing was said: as if the message had not been sent

    def note(self, text: str) -> None:
        print(text, file=self.notes, flush=True)


@contextlib.contextmanager
def stop_on_ctrl_c(stop: threading.Event):
    """While a reply streams, Ctrl-C sets `stop` instead of raising, so the Engine ends the reply
    cleanly (its care layer included) and the session goes on. Yields an Event telling whether
    Ctrl-C was pressed (`stop` itself is also set by backends when they finish)."""
    pressed = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield pressed  # signals reach only the main thread; nothing to arrange
        return

    def on_ctrl_c(*_):
        pressed.set()
        stop.set()

    previous = signal.signal(signal.SIGINT, on_ctrl_c)
    try:
        yield pressed
    finally:
        signal.signal(signal.SIGINT, previous)


def read_lines(interactive: bool):
    """Input lines: with a prompt and line editing on a terminal, plain reads from a pipe."""
    if not interactive:
        yield from sys.stdin
        return
    with contextlib.suppress(ImportError):
        import readline  # noqa: F401  (arrow keys and history in input())
    while True:
        try:
            yield input("你: ")
        except KeyboardInterrupt:
            print("\n(/exit or Ctrl-D to leave)", file=sys.stderr)
        except EOFError:
            print(file=sys.stderr)
            return


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = "Talk to a model in the terminal: streaming replies, history, commands."
    parser.epilog = EPILOG
    add_engine_arguments(parser)


def main(args: argparse.Namespace) -> int:
    from anxin import safety

    interactive = sys.stdin.isatty()
    print(safety.disclaimer(args.language), file=sys.stderr)
    engine = engine_from_args(args)
    if interactive:
        print("/help lists the commands; Ctrl-C stops a reply, Ctrl-D leaves.", file=sys.stderr)
    session = ChatSession(engine, sys.stdout, sys.stderr, show_speaker=interactive)
    for line in read_lines(interactive):
        if not session.handle(line):
            break
    return 0
