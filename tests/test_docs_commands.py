"""Every `anxin ...` command shown to people (README, docs, each verb's --help) parses as written.

Each command is parsed by its verb's own argparse parser, as `anxin.cli` builds it, so a flag
that was renamed or a required one that is missing fails here rather than for a reader.
Commands are only parsed, never run.
"""

from __future__ import annotations

import argparse
import importlib
import re
import shlex
from pathlib import Path

import pytest

from anxin import cli

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "data" / "README.md"]


def commands_in(text: str) -> list[str]:
    """`anxin VERB ...` lines (continuation backslashes joined, trailing comments dropped)."""
    joined = re.sub(r"\\\n\s*", " ", text)
    found = []
    for line in joined.splitlines():
        line = line.strip().removeprefix("$ ")
        if not re.match(r"anxin\s+[a-z-]", line):
            continue
        # Examples end where two spaces start a note: `anxin chat ...   (then open ...)`.
        notes = r"\s{2,}(?=[(#])|\s{3,}(?![-\\])|\s+#\s|\s+&&\s|\s*;\s|\s+\|\s"
        command = re.split(notes, line)[0].strip()
        found.append(command)
    return found


def code_blocks(markdown: str) -> str:
    return "\n".join(re.findall(r"```[a-z]*\n(.*?)```", markdown, flags=re.DOTALL))


def parser_for(verb: str, sub: str | None = None) -> argparse.ArgumentParser:
    """The parser `anxin VERB` (or `anxin VERB SUB`, a sub-verb with its own module) uses."""
    module_name, text = cli.SUBVERBS[verb][sub] if sub else cli.COMMANDS[verb]
    parser = argparse.ArgumentParser(prog=f"anxin {verb}", description=text)
    importlib.import_module(module_name).add_arguments(parser)
    return parser


def doc_commands() -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        if doc.is_file():
            text = code_blocks(doc.read_text(encoding="utf-8"))
            found += [(doc.name, command) for command in commands_in(text)]
    return found


def help_commands() -> list[tuple[str, str]]:
    found = [("anxin --help", command) for command in commands_in(cli.EPILOG)]
    for verb in cli.COMMANDS:
        parser = parser_for(verb)
        epilogs = [parser.epilog or ""]
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                epilogs += [sub.epilog or "" for sub in action.choices.values()]
        found += [(f"anxin {verb} --help", c) for text in epilogs for c in commands_in(text)]
    return found


def check(command: str) -> str | None:
    """None when the command parses; else why not."""
    tokens = shlex.split(command)
    verb = tokens[1]
    if verb in ("-h", "--help", "--version", "-V"):
        return None
    if verb not in cli.COMMANDS:
        return f"unknown verb {verb!r}"
    try:
        sub = tokens[2] if len(tokens) > 2 and tokens[2] in cli.SUBVERBS.get(verb, {}) else None
        parser_for(verb, sub).parse_args(tokens[3:] if sub else tokens[2:])
    except SystemExit as stop:
        return None if stop.code == 0 else "does not parse"  # `--help` exits 0
    return None


def test_the_docs_show_commands_at_all():
    sources = {source for source, _ in doc_commands()}
    assert "README.md" in sources and len(doc_commands()) > 20


@pytest.mark.parametrize("source, command", doc_commands() + help_commands())
def test_documented_command_parses(source, command, capsys):
    problem = check(command)
    capsys.readouterr()  # argparse's own complaint, if any, is summed up by `problem`
    assert problem is None, f"{source}: `{command}`: {problem}"


def test_commands_read_what_training_writes():
    # Training writes the held-out split as validation.jsonl; older docs said val.jsonl.
    for source, command in doc_commands() + help_commands():
        assert not re.search(r"/val\.jsonl\b", command), f"{source}: `{command}`"
