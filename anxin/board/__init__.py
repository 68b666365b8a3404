"""`anxin board`: the whole workflow in the browser (data, train, evaluate, chat, export).

    anxin board                       (then open http://127.0.0.1:7861)
    anxin board --host 0.0.0.0 --auth "me:$PASSWORD"

A Gradio workbench in the spirit of LLaMA-Factory's LlamaBoard, for counselling models. The
Train form is generated from `TrainConfig`, so it cannot drift from the YAML; training,
evaluation, merge and export run as `anxin` commands in child processes (anxin.board.jobs), so a
crash cannot take the page down and closing the browser does not stop them; the Data tab shows
which tokens are trained on; the Chat tab puts base and tuned side by side behind the care layer.
Everything the board keeps (job state, logs, each run's YAML) is under $ANXIN_HOME/board.
"""

from __future__ import annotations

import argparse
import os

EPILOG = """\
examples:
  anxin board                                   then open http://127.0.0.1:7861
  anxin board --language en --port 8080
  anxin board --host 0.0.0.0 --auth "me:$PASSWORD"   (a login is required off localhost)

Relative paths in the forms are relative to the folder the board was started in, and jobs run
there. Jobs keep running when the browser closes; reopening the page shows them."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "The training workbench in the browser: data check and preview, training with live "
        "curves, evaluation, side-by-side chat behind the care layer, merge and GGUF export."
    )
    parser.epilog = EPILOG
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=7861, help="port (default: 7861)")
    parser.add_argument(
        "--auth",
        metavar="USER:PASSWORD",
        help="require a login (default: $ANXIN_WEB_AUTH); needed off localhost",
    )
    parser.add_argument(
        "--language", choices=("zh", "en"), default="zh", help="first language of the page"
    )


def main(args: argparse.Namespace) -> int:
    from anxin.serve import page_login

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    auth = page_login(args.host, args.auth, "the board (which runs commands and reads files)")
    from anxin.board.app import launch_board

    launch_board(args.host, args.port, auth, args.language)
    return 0
