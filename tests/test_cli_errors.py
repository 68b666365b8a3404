"""Every verb on bad input: one clear line and exit status 2, never a traceback.

The inputs are what people really pass by mistake: a missing path, an empty file, a file of
blank lines, binary bytes, Chinese text in GBK, a folder where a file belongs, and an output
that cannot be written. Verbs run in-process through `anxin.cli.main`, so a traceback here
is an exception that fails the test.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from anxin import cli

UNWRITABLE = "/proc/anxin-cannot-write-here/out.jsonl"  # even root cannot create this


@pytest.fixture
def bad(tmp_path: Path) -> dict[str, Path]:
    files = {
        "missing": tmp_path / "missing.jsonl",
        "empty": tmp_path / "empty.jsonl",
        "blank": tmp_path / "blank.jsonl",
        "binary": tmp_path / "binary.jsonl",
        "gbk": tmp_path / "gbk.jsonl",
        "folder": tmp_path / "folder",
        "good": tmp_path / "good.jsonl",
        "yaml": tmp_path / "good.yaml",
        "not_llama": tmp_path / "not_llama",
    }
    files["empty"].write_bytes(b"")
    files["blank"].write_text("\n\n   \n")
    files["binary"].write_bytes(bytes(range(256)) * 4)
    record = {
        "messages": [{"role": "user", "content": "你好"}, {"role": "assistant", "content": "我在"}]
    }
    files["gbk"].write_bytes((json.dumps(record, ensure_ascii=False) + "\n").encode("gbk"))
    files["good"].write_text(json.dumps(record, ensure_ascii=False) + "\n", encoding="utf-8")
    files["folder"].mkdir()
    files["yaml"].write_text("model_name_or_path: smollm2\nstage: sft\n")
    files["not_llama"].mkdir()
    (files["not_llama"] / "config.json").write_text('{"model_type": "gpt2"}')
    return files


def cases(b: dict[str, Path]) -> list[list[str]]:
    data_inputs = ("missing", "empty", "blank", "binary", "gbk")
    runs = []
    for kind in data_inputs:
        runs += [
            ["data", "check", b[kind]],
            ["data", "convert", b[kind], "-o", b["folder"] / "out.jsonl"],
            ["data", "stats", b[kind]],
            ["safety", "eval", b[kind]],
            ["eval", "--data", b[kind], "--out", b["folder"] / "eval"],
        ]
    runs += [
        ["data", "convert", b["good"], "-o", b["folder"]],
        ["data", "convert", b["good"], "-o", UNWRITABLE],
        ["train", b["missing"]],
        ["train", b["binary"]],
        ["train", b["yaml"], "lerning_rate=1"],
        ["train", b["yaml"], "learning_rate=abc"],
        ["train", b["yaml"], "dataset=nothing_registered", f"dataset_dir={b['folder']}"],
        ["merge", "--adapter", b["folder"], "--out", b["folder"] / "merged"],
        ["merge", "--adapter", b["binary"], "--out", b["folder"] / "merged"],
        ["export", "--model", b["not_llama"], "--out", b["folder"] / "export"],
        ["export", "--model", b["missing"], "--out", b["folder"] / "export"],
        ["chat", "--model", b["missing"]],
        ["serve", "--model", b["missing"]],
        ["serve", "--host", "0.0.0.0"],
        ["serve", "--api-key-file", b["empty"]],
        ["web", "--auth", "no-colon"],
        ["web", "--host", "0.0.0.0"],
        ["plot", b["folder"]],
        ["plot", b["missing"]],
    ]
    return [[str(part) for part in run] for run in runs]


def test_every_verb_fails_on_bad_input_with_one_line_and_status_2(bad, capsys, monkeypatch):
    monkeypatch.delenv("ANXIN_API_KEY", raising=False)
    monkeypatch.delenv("ANXIN_WEB_AUTH", raising=False)
    failures = []
    for argv in cases(bad):
        status = cli.main(argv)
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.startswith(f"anxin {argv[0]}: error")]
        if status != 2 or len(lines) != 1 or "Traceback" in err:
            failures.append(f"{' '.join(argv)} -> {status}: {err.strip()[-300:]!r}")
    assert failures == []


def test_bad_input_names_what_is_wrong(bad, capsys):
    expectations = {
        ("data", "check", str(bad["empty"])): "the file is empty",
        ("data", "check", str(bad["gbk"])): "iconv -f gbk -t utf-8",
        ("data", "convert", str(bad["good"]), "-o", str(bad["folder"])): "is a folder",
        ("data", "convert", str(bad["good"]), "-o", UNWRITABLE): "cannot write here",
        ("export", "--model", str(bad["not_llama"]), "--out", str(bad["folder"] / "x")): "llama",
        ("train", str(bad["yaml"]), "lerning_rate=1"): "command line: unknown key",
    }
    for argv, expected in expectations.items():
        assert cli.main(list(argv)) == 2
        assert expected in capsys.readouterr().err, argv


def test_unknown_verbs_and_flags_are_usage_errors(capsys):
    assert cli.main(["trian"]) == 2
    assert "did you mean 'train'" in capsys.readouterr().out
    with pytest.raises(SystemExit) as usage:
        cli.main(["data", "check", "--no-such-flag"])
    assert usage.value.code == 2


def test_a_reader_that_closes_the_pipe_early_ends_the_verb_quietly():
    """`anxin safety eval FILE | head`: once head has its lines and goes, the verb stops with
    SIGPIPE's status and no traceback (a verb printing 6 MB, more than a pipe holds)."""
    import subprocess
    import sys

    verb = (
        "import sys, types\n"
        "from anxin import cli\n"
        "module = types.ModuleType('talkative')\n"
        "module.add_arguments = lambda parser: None\n"
        "module.main = lambda args: [print('x' * 60) for _ in range(100_000)] and 0\n"
        "sys.modules['talkative'] = module\n"
        "cli.COMMANDS['talkative'] = ('talkative', 'prints a lot')\n"
        "sys.exit(cli.main(['talkative']))\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", verb], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert process.stdout.readline() == b"x" * 60 + b"\n"
    process.stdout.close()  # what head does after its lines
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=60) == 141
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr


def test_a_broken_pipe_that_is_not_stdout_is_reported_not_swallowed(monkeypatch, capsys):
    """A verb's own pipe breaking (a subprocess, a socket) is an error, not a reader gone."""
    import types

    module = types.ModuleType("pipes_out")
    module.add_arguments = lambda parser: None

    def main(args):
        print("before")
        raise BrokenPipeError(32, "Broken pipe")

    module.main = main
    monkeypatch.setitem(sys.modules, "pipes_out", module)
    monkeypatch.setitem(cli.COMMANDS, "pipes_out", ("pipes_out", "breaks its own pipe"))
    with pytest.raises(BrokenPipeError):
        cli.main(["pipes_out"])
    assert "before" in capsys.readouterr().out
