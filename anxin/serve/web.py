"""`anxin web`: a Gradio chat page over the Engine, with the disclaimer and hotlines in view.

The page streams replies, has Stop and Reset buttons, and keeps each visitor's conversation in
their own session state only (nothing is logged or stored on the server). Every reply goes
through `Engine.stream`, so the care layer is the same as in the terminal and the API.

Sending is two steps. The first runs at once for every visitor (no queue): it shows the
message with a typing indicator and asks the care layer, which answers a crisis right there.
Only then does the second step wait for the model, in the one queue shared by all visitors;
so a person in crisis never waits behind other people's replies, and nobody stares at an
empty page while their message is queued.
"""

# No `from __future__ import annotations` here: Gradio reads the handlers' `gr.Request`
# annotations at runtime to pass the visitor's session in.
import argparse
import os
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from anxin.serve import add_engine_arguments, engine_from_args, http_url, page_login

if TYPE_CHECKING:
    from anxin.engine import Engine

EPILOG = """\
examples:
  anxin web --model smollm2 --adapter saves/smollm2-135m/lora/sft      (then open http://127.0.0.1:7860)
  anxin web --model merged/ --host 0.0.0.0 --auth "counsellor:$PASSWORD"  (a login is required off localhost)
  anxin web --upstream http://gpu-box:8000/v1 --language en
"""

LABELS = {
    "zh": {
        "title": "安心 · AI 陪伴",
        "placeholder": "说说你现在的感受……（回车发送）",
        "send": "发送",
        "stop": "停止",
        "reset": "重新开始",
        "hotlines": "需要帮助时",
        "checked": "号码核对于",
        "chat": "对话",
        "typing": "正在回复……",
    },
    "en": {
        "title": "anxin · AI companion",
        "placeholder": "How are you feeling right now? (Enter to send)",
        "send": "Send",
        "stop": "Stop",
        "reset": "Start over",
        "hotlines": "If you need help now",
        "checked": "numbers checked on",
        "chat": "Conversation",
        "typing": "typing…",
    },
}


def hotline_markdown(language: str) -> str:
    from anxin import safety

    labels = LABELS[language]
    listing = safety.load_hotlines(language)
    lines = [f"### {labels['hotlines']}", ""]
    for entry in listing["hotlines"]:
        lines.append(
            f"- **{entry['name']}** `{entry['number']}`  \n  {entry['hours']} · {entry['note']}"
        )
    lines += ["", f"<small>{labels['checked']} {listing['last_checked']}</small>"]
    return "\n".join(lines)


@dataclass
class _Turn:
    """A reply in progress: Stop ends it and keeps what was said, Reset also forgets it."""

    stop: threading.Event = field(default_factory=threading.Event)
    forgotten: bool = False


class Conversations:
    """The replying part of the page, apart from Gradio so it can be tested directly.

    History lives in each visitor's `gr.State`; the only server-side thing is the reply in
    progress per session, so Stop and Reset can end it cleanly (care layer included).
    """

    def __init__(self, engine: "Engine", typing: str = "…"):
        self.engine = engine
        self.typing = typing
        self.turns: dict[str, _Turn] = {}

    def accept(self, message: str, history: list[dict]):
        """Step one, never queued: (chat shown, history kept, text box, waiting conversation).

        The message appears at once with a typing indicator; a crisis is answered here by the
        care layer (nothing is left waiting for the model)."""
        message = (message or "").strip()
        if not message:
            return history, history, "", None
        conversation = [*history, {"role": "user", "content": message}]
        answer = self.engine.care_reply(self.engine.assess(conversation), conversation)
        if answer is not None:
            answered = [*conversation, {"role": "assistant", "content": answer.text}]
            return answered, answered, "", None
        waiting = [*conversation, {"role": "assistant", "content": self.typing}]
        return waiting, history, "", conversation

    def respond(
        self, conversation: list[dict] | None, history: list[dict], session: str = ""
    ) -> Iterator[tuple[list[dict], list[dict]]]:
        """Step two, in the model's queue: yield (chat shown, history kept) as the reply grows."""
        if conversation is None:  # nothing waits: an empty message, or answered in step one
            yield history, history
            return
        turn = self.turns[session] = _Turn()
        text = ""
        try:
            for chunk in self.engine.stream(conversation, stop=turn.stop):
                if turn.forgotten:
                    break
                text = chunk.reply.text if chunk.reply else text + chunk.delta
                shown = [*conversation, {"role": "assistant", "content": text or self.typing}]
                yield shown, shown
        finally:
            if self.turns.get(session) is turn:
                del self.turns[session]
        if turn.forgotten:
            yield [], []  # Reset won the race against the last pieces of the reply

    def stop(self, session: str = "") -> None:
        if session in self.turns:
            self.turns[session].stop.set()

    def reset(self, session: str = "") -> tuple[list, list, str]:
        if session in self.turns:
            self.turns[session].forgotten = True
            self.turns[session].stop.set()
        return [], [], ""


def build_page(engine: "Engine", language: str = "zh", concurrency: int = 1):
    """The Gradio Blocks page (not launched)."""
    import gradio as gr

    from anxin import safety

    labels = LABELS[language]
    talk = Conversations(engine, labels["typing"])

    def respond(conversation, history, request: gr.Request):
        yield from talk.respond(conversation, history, request.session_hash or "")

    def stop(request: gr.Request):
        talk.stop(request.session_hash or "")

    def reset(request: gr.Request):
        return talk.reset(request.session_hash or "")

    with gr.Blocks(title=labels["title"]) as page:
        gr.Markdown(f"## {labels['title']}")
        gr.Markdown(safety.disclaimer(language), elem_id="disclaimer")
        history = gr.State([])
        waiting = gr.State(None)  # the conversation accepted in step one, until it is answered
        with gr.Row():
            with gr.Column(scale=3):
                chatbot = gr.Chatbot(
                    label=labels["chat"],
                    height=460,
                    elem_id="chat",
                    feedback_options=None,
                    buttons=["copy_all"],
                )
                with gr.Row():
                    box = gr.Textbox(
                        placeholder=labels["placeholder"],
                        show_label=False,
                        scale=5,
                        elem_id="message",
                    )
                    send = gr.Button(labels["send"], variant="primary", scale=1, elem_id="send")
                with gr.Row():
                    stop_button = gr.Button(labels["stop"], elem_id="stop")
                    reset_button = gr.Button(labels["reset"], elem_id="reset")
            with gr.Column(scale=1):
                gr.Markdown(hotline_markdown(language), elem_id="hotlines")
        private = dict(api_visibility="private")  # the page's own calls, not a public API
        for trigger in (box.submit, send.click):
            # Step one runs for everyone at once (no queue): see the module doc.
            trigger(
                talk.accept,
                inputs=[box, history],
                outputs=[chatbot, history, box, waiting],
                concurrency_limit=None,
                show_progress="hidden",
                **private,
            ).then(
                respond,
                inputs=[waiting, history],
                outputs=[chatbot, history],
                concurrency_limit=concurrency,
                concurrency_id="reply",
                show_progress="hidden",
                **private,
            )
        # Stop and Reset must work while a reply is still streaming: no concurrency limit.
        stop_button.click(stop, concurrency_limit=None, **private)
        reset_io = dict(outputs=[chatbot, history, box], concurrency_limit=None, **private)
        reset_button.click(reset, **reset_io)
        chatbot.clear(reset, **reset_io)  # the chat's own trash button forgets the history too
    return page


def launch(
    page,
    host: str = "127.0.0.1",
    port: int = 7860,
    auth: tuple[str, str] | None = None,
    queue_size: int = 16,
    block: bool = True,
    **options,
) -> str:
    """Serve the page; with block=False return its URL at once (tests, notebooks). `options`
    go to Gradio's launch as they are (the board passes its css)."""
    page.queue(max_size=queue_size)
    url = http_url(host, port, "/")
    if block:
        print(f"anxin: the page is at {url}", file=sys.stderr)
    page.launch(
        server_name=host,
        server_port=port,
        auth=auth,
        prevent_thread_lock=not block,
        ssr_mode=False,  # no Node.js server beside Python
        footer_links=["gradio", "settings"],
        quiet=True,  # no share=True hint: a counselling page is not for a public link
        **options,
    )
    return url


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = "A chat page in the browser (Gradio): streaming, stop, reset, hotlines."
    parser.epilog = EPILOG
    add_engine_arguments(parser)
    http = parser.add_argument_group("http")
    http.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    http.add_argument("--port", type=int, default=7860)
    http.add_argument(
        "--auth",
        metavar="USER:PASSWORD",
        help="require a login (default: $ANXIN_WEB_AUTH); needed off localhost",
    )
    http.add_argument(
        "--concurrency",
        type=int,
        help="replies generated at once (default: 1 locally, 16 with --upstream)",
    )
    http.add_argument("--queue-size", type=int, default=16, help="visitors allowed to wait")


def main(args: argparse.Namespace) -> int:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    auth = page_login(args.host, args.auth, "the page")
    engine = engine_from_args(args)
    concurrency = args.concurrency or (16 if args.upstream else 1)
    page = build_page(engine, args.language, concurrency)
    launch(page, args.host, args.port, auth, queue_size=args.queue_size)
    return 0
