"""The Chat tab: the base model and the tuned one side by side, answering the same message.

Both are `anxin.engine.Engine`s, so both replies stream through the same care layer (a crisis
message gets the fixed safe reply with help lines on both sides, and the model is not asked).
The base is loaded with the template and persona saved with the adapter, so the two differ in
their weights only, never in how the conversation is rendered. The disclaimer and the help-line
panel are those of `anxin web`.
"""

# No `from __future__ import annotations`: Gradio reads the handlers' `gr.Request` annotations.
import queue
import threading
from dataclasses import dataclass, field

import gradio as gr

from anxin.board.context import Context
from anxin.board.labels import text
from anxin.board.widgets import PRIVATE
from anxin.errors import AnxinError
from anxin.serve.web import Conversations, hotline_markdown

SIDES = ("base", "tuned")


def setting_widgets() -> list:
    """One box per GenerationSettings field, with its default and help (the fields `anxin chat`
    has flags for), applied to both sides alike. An optional one (seed) is a text box: empty
    means none, where a number box would show 0."""
    from anxin.generation import SETTING_HELP, setting_defaults

    widgets = []
    for name, default in setting_defaults().items():
        common = dict(label=name, info=SETTING_HELP.get(name, ""), elem_id=f"chat-{name}")
        if default is None:
            widgets.append(gr.Textbox(value="", **common))
        else:
            integer = isinstance(default, int)
            widgets.append(gr.Number(value=default, precision=0 if integer else None, **common))
    return widgets


def chosen_settings(values: list):
    """GenerationSettings from the boxes (an empty one keeps the default); ValueError names the
    bad one."""
    import typing

    from anxin.generation import GenerationSettings, setting_defaults

    hints = typing.get_type_hints(GenerationSettings)
    chosen = {}
    for name, value in zip(setting_defaults(), values, strict=True):
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        kind = next(t for t in (hints[name], *typing.get_args(hints[name])) if t in (int, float))
        try:
            chosen[name] = kind(value)
        except ValueError:
            raise ValueError(f"{name}: expected a number, got {value!r}") from None
    return GenerationSettings(**chosen)


@dataclass
class ChatModels:
    """The engines of the tab (one board, one pair), loaded on request."""

    talks: dict = field(default_factory=dict)  # side -> Conversations
    described: dict = field(default_factory=dict)  # side -> what was loaded

    def load(self, ctx: Context, model: str, adapter: str) -> None:
        from anxin.engine import Engine
        from anxin.template import read_template_card

        self.talks.clear()
        self.described = {"base": model}
        model_ref = ctx.model_ref(model) or None
        tuned = None
        if adapter:
            adapter_path = str(ctx.path(adapter))
            tuned = Engine.from_pretrained(model_ref, adapter_path)
            self.talks["tuned"] = Conversations(tuned)
            self.described["tuned"] = f"{model} + {adapter}"  # after "base": shown in order
        card = read_template_card(ctx.path(adapter)) if adapter else None
        base = Engine.from_pretrained(
            model_ref,
            template=(card or {}).get("template"),
            system_prompt=tuned.system_prompt if tuned else None,
        )
        self.talks["base"] = Conversations(base)

    def use(self, settings) -> None:
        """Both sides generate with the same settings."""
        for talk in self.talks.values():
            talk.engine.settings = settings

    def accept(self, message: str, histories: dict) -> dict:
        """Step one, never queued, per side: (shown, kept, waiting conversation). A crisis is
        answered here by the care layer on both sides, and nothing waits for a model."""
        accepted = {}
        for side, talk in self.talks.items():
            shown, kept, _, waiting = talk.accept(message, histories[side])
            accepted[side] = (shown, kept, waiting)
        return accepted

    def respond(self, waiting: dict, histories: dict, session: str):
        """Step two: yield {side: (shown, kept)} as both replies grow, each in its own thread."""
        updates: queue.Queue = queue.Queue()
        current = {}

        def run(side: str) -> None:
            try:
                for shown, kept in self.talks[side].respond(
                    waiting.get(side), histories[side], f"{session}:{side}"
                ):
                    updates.put((side, shown, kept))
            except AnxinError as error:
                failed = [*histories[side], {"role": "assistant", "content": f"⚠ {error}"}]
                updates.put((side, failed, histories[side]))
            finally:
                updates.put((side, None, None))

        for side in self.talks:
            threading.Thread(target=run, args=(side,), daemon=True).start()
        running = len(self.talks)
        while running:
            side, shown, kept = updates.get()
            if shown is None:
                running -= 1
                continue
            current[side] = (shown, kept)
            yield dict(current)

    def replying(self, session: str) -> bool:
        return any(f"{session}:{side}" in talk.turns for side, talk in self.talks.items())

    def stop(self, session: str) -> None:
        for side, talk in self.talks.items():
            talk.stop(f"{session}:{side}")

    def reset(self, session: str) -> None:
        for side, talk in self.talks.items():
            talk.reset(f"{session}:{side}")


@dataclass
class ChatTab:
    model: gr.Textbox
    adapter: gr.Textbox
    fill: gr.Button
    load: gr.Button
    loaded: gr.Markdown
    chats: dict
    histories: dict
    box: gr.Textbox
    settings: list
    send: gr.Button
    stop: gr.Button
    reset: gr.Button


def build(ctx: Context, model: str, adapter: str) -> ChatTab:
    from anxin import safety

    t = ctx.labels
    with gr.Row(equal_height=True):
        model_box = t.make(gr.Textbox, "chat.model", value=model, scale=3, elem_id="chat-model")
        adapter_box = t.make(gr.Textbox, "chat.adapter", value=adapter, scale=3,
                             elem_id="chat-adapter")  # fmt: skip
        fill = t.make(gr.Button, "eval.fill", "value", scale=1, elem_id="chat-fill")
        load = t.make(gr.Button, "chat.load", "value", variant="primary", scale=1,
                      elem_id="chat-load")  # fmt: skip
    loaded = gr.Markdown(elem_id="chat-loaded")
    t.bind(gr.Markdown(safety.disclaimer(t.language), elem_id="disclaimer"), "value",
           safety.disclaimer)  # fmt: skip
    chats, histories = {}, {}
    with gr.Row():
        for side in SIDES:
            with gr.Column(scale=3):
                chats[side] = t.make(gr.Chatbot, f"chat.{side}", height=420,
                                     elem_id=f"chat-{side}", buttons=["copy_all"])  # fmt: skip
                histories[side] = gr.State([])
        with gr.Column(scale=2):
            t.bind(gr.Markdown(hotline_markdown(t.language), elem_id="hotlines"), "value",
                   hotline_markdown)  # fmt: skip
    with gr.Row():
        box = t.make(gr.Textbox, "chat.placeholder", "placeholder", show_label=False, scale=5,
                     elem_id="chat-message")  # fmt: skip
        send = t.make(gr.Button, "chat.send", "value", variant="primary", scale=1,
                      elem_id="chat-send")  # fmt: skip
        stop = t.make(gr.Button, "train.stop", "value", scale=1, elem_id="chat-stop")
        reset = t.make(gr.Button, "chat.reset", "value", scale=1, elem_id="chat-reset")
    with t.make(gr.Accordion, "chat.settings", open=False), gr.Row():
        settings = setting_widgets()
    return ChatTab(model_box, adapter_box, fill, load, loaded, chats, histories, box, settings,
                   send, stop, reset)  # fmt: skip


def wire(ctx: Context, tab: ChatTab, train_widgets: dict) -> None:
    models = ChatModels()
    language = ctx.language_state

    def load(model, adapter, lang):
        try:
            models.load(ctx, model.strip(), adapter.strip())
        except (AnxinError, OSError, ValueError) as error:
            return f"⚠ {error}"
        loaded = " · ".join(f"**{text('chat.' + s, lang)}**: `{d}`"
                            for s, d in models.described.items())  # fmt: skip
        return f"{text('chat.loaded', lang)} {loaded}"

    tab.load.click(load, [tab.model, tab.adapter, language], tab.loaded, **PRIVATE)

    def fill(model, output_dir):
        return model, output_dir

    tab.fill.click(fill, [train_widgets["model_name_or_path"], train_widgets["output_dir"]],
                   [tab.model, tab.adapter], **PRIVATE)  # fmt: skip

    chats, histories = list(tab.chats.values()), list(tab.histories.values())
    waiting = gr.State({})  # each side's conversation accepted in step one, until answered

    # Gradio passes the request where the annotated parameter stands, the settings after it.
    def accept(message, base_history, tuned_history, lang, request: gr.Request, *settings):
        if not models.talks or models.replying(request.session_hash or ""):
            # One message at a time: a second one would race the replies still streaming.
            gr.Warning(text("chat.load_first" if not models.talks else "chat.wait", lang))
            return [gr.skip()] * 4 + [message, {}, gr.skip()]
        try:
            models.use(chosen_settings(list(settings)))
        except ValueError as error:
            gr.Warning(str(error))
            return [gr.skip()] * 4 + [message, {}, gr.skip()]
        accepted = models.accept(message, {"base": base_history, "tuned": tuned_history})
        shown = [accepted.get(side, (gr.skip(), gr.skip(), None)) for side in SIDES]
        waiting_now = {side: found[2] for side, found in accepted.items()}
        # Send waits for the replies (a second message would race them); Stop stays.
        return [shown[0][0], shown[1][0], shown[0][1], shown[1][1], "", waiting_now,
                gr.update(interactive=False)]  # fmt: skip

    def respond(waiting_now, base_history, tuned_history, request: gr.Request):
        histories = {"base": base_history, "tuned": tuned_history}
        for current in models.respond(waiting_now, histories, request.session_hash or ""):
            shown = [current.get(side, (gr.skip(), gr.skip())) for side in SIDES]
            yield [shown[0][0], shown[1][0], shown[0][1], shown[1][1]]

    def stop(request: gr.Request):
        models.stop(request.session_hash or "")

    def reset(request: gr.Request):
        models.reset(request.session_hash or "")
        return [[], [], [], [], ""]

    private = dict(**PRIVATE, show_progress="hidden")
    for trigger in (tab.box.submit, tab.send.click):
        # As on `anxin web`: step one is never queued, so a crisis is answered at once.
        trigger(
            accept, [tab.box, *histories, language, *tab.settings],
            [*chats, *histories, tab.box, waiting, tab.send],
            concurrency_limit=None, **private,
        ).then(
            respond, [waiting, *histories], [*chats, *histories], concurrency_id="reply",
            **private,
        ).then(
            lambda: gr.update(interactive=True), None, tab.send, **private
        )  # fmt: skip
    tab.stop.click(stop, concurrency_limit=None, **private)
    for clears in (tab.reset.click, *(chat.clear for chat in chats)):  # the chats' own bins too
        clears(reset, outputs=[*chats, *histories, tab.box], concurrency_limit=None, **private)
