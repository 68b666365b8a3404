"""`anxin data` end to end through its parser and main(): convert, check, stats, download."""

from __future__ import annotations

import json
import shutil
import sys
import types
from pathlib import Path

import pytest

import anxin.data
from anxin import cli
from anxin.data.commands import dialogue_stats, measure
from anxin.data.registry import load_datasets

CORPORA = Path(__file__).parent / "fixtures" / "corpora"


def run(*argv: str) -> int:
    """`anxin data ...` through the real command line (bad input: one line, status 2)."""
    return cli.main(["data", *[str(a) for a in argv]])


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def write_bad_copy(tmp_path: Path) -> Path:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        (CORPORA / "messages.jsonl").read_text("utf-8")
        + '{"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": ""}]}\n'
        + (CORPORA / "messages.jsonl").read_text("utf-8").splitlines()[0]
        + "\n",
        "utf-8",
    )
    return bad


def test_convert_smilechat_and_register(tmp_path, capsys):
    out = tmp_path / "data" / "smile.jsonl"
    code = run(
        "convert",
        "--format",
        "auto",
        CORPORA / "smilechat",
        "-o",
        out,
        "--register",
        tmp_path / "data",
        "--name",
        "smile",
    )
    assert code == 0
    records = read_jsonl(out)
    assert [r["id"] for r in records] == ["1", "2", "10"]
    assert all(set(r) == {"id", "source", "messages"} for r in records)
    printed = capsys.readouterr().out
    assert "format smilechat: read 3, kept 3" in printed
    assert "repaired (merged consecutive turns of one speaker): 1" in printed
    info = json.loads((tmp_path / "data" / "dataset_info.json").read_text("utf-8"))
    assert info["smile"]["file_name"] == "smile.jsonl"
    assert [r["messages"] for r in load_datasets("smile", tmp_path / "data")] == [
        r["messages"] for r in records
    ]


def test_convert_writes_nothing_when_input_is_invalid(tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    assert run("convert", "-f", "messages", write_bad_copy(tmp_path), "-o", out) == 2
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [tmp_path / "bad.jsonl"]  # no temporary left behind
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "bad.jsonl:3: messages[1].content: is empty" in error


def test_converted_conversations_are_private_files(tmp_path):
    out = tmp_path / "out.jsonl"
    assert run("convert", CORPORA / "messages.jsonl", "-o", out) == 0
    assert out.stat().st_mode & 0o777 == 0o600


def test_convert_skip_invalid_counts_reasons_and_duplicates(tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    assert run("convert", write_bad_copy(tmp_path), "-o", out, "--skip-invalid") == 0
    assert [r["id"] for r in read_jsonl(out)] == ["m-1", "m-2"]
    captured = capsys.readouterr()
    assert "read 4, kept 2, duplicates dropped 1, skipped 1" in captured.out
    assert "skipped (empty content): 1" in captured.out
    assert "bad.jsonl:3: messages[1].content: is empty" in captured.err
    assert "我很想家" not in captured.out + captured.err  # no conversation text is printed


def test_convert_name_needs_register(tmp_path, capsys):
    assert run("convert", CORPORA / "alpaca.json", "-o", tmp_path / "o.jsonl", "--name", "x") == 2


def test_check_exit_codes(tmp_path, capsys):
    assert run("check", CORPORA / "messages.jsonl") == 0
    assert capsys.readouterr().out.strip().endswith("OK")
    assert run("check", write_bad_copy(tmp_path)) == 1
    captured = capsys.readouterr()
    assert "FAILED" in captured.out and "bad.jsonl:3: messages[1].content" in captured.err
    assert run("check", CORPORA / "smilechat", "--no-repair") == 1
    assert "2.json:1: messages[1].role: expected assistant after user" in capsys.readouterr().err
    assert run("check", tmp_path / "missing.jsonl") == 2
    assert "no such file or folder" in capsys.readouterr().err


def test_check_rubric_is_called_with_valid_records(monkeypatch, capsys):
    seen = []

    def check_rubric(records):
        seen.extend(records)
        return ["m-2: too short"]

    fake = types.ModuleType("anxin.data.rubric")
    fake.check_rubric = check_rubric
    monkeypatch.setitem(sys.modules, "anxin.data.rubric", fake)
    monkeypatch.setattr(anxin.data, "rubric", fake, raising=False)
    assert run("check", CORPORA / "messages.jsonl", "--rubric") == 1
    assert [r["id"] for r in seen] == ["m-1", "m-2"]
    captured = capsys.readouterr()
    assert "rubric: 1 issues" in captured.out and "m-2: too short" in captured.err


TINY = [
    {
        "messages": [
            {"role": "system", "content": "s"},
            {"role": "user", "content": "abcd"},
            {"role": "assistant", "content": "ab"},
        ]
    },
    {
        "messages": [
            {"role": "user", "content": "ab"},
            {"role": "assistant", "content": "abcdef"},
            {"role": "user", "content": "abcdef"},
            {"role": "assistant", "content": "a"},
        ]
    },
]


class CharTokenizer:
    """One token per character: enough to check the token arithmetic."""

    chat_template = None

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return [ord(c) for c in text]


def test_stats_numbers_on_a_tiny_dataset():
    stats = dialogue_stats(TINY)
    assert stats["dialogues"] == 2
    assert stats["messages_per_dialogue"] == {"count": 2, "mean": 3.5, "median": 3.5, "max": 4}
    assert stats["replies_per_dialogue"]["mean"] == 1.5
    assert stats["characters_per_dialogue"] == {"count": 2, "mean": 11.0, "median": 11.0, "max": 15}
    by_role = stats["characters_by_role"]
    assert list(by_role) == ["system", "user", "assistant"]
    assert by_role["user"] == {"count": 3, "mean": 4.0, "median": 4, "max": 6}
    assert by_role["assistant"] == {"count": 3, "mean": 3.0, "median": 2, "max": 6}
    assert "tokens_by_role" not in stats


def test_stats_tokens_with_a_stub_tokenizer():
    stats = dialogue_stats(TINY, CharTokenizer())
    assert stats["tokens_by_role"] == stats["characters_by_role"]
    assert "tokens_per_dialogue" not in stats  # no chat template, no per-dialogue tokens


def test_stats_chat_template_tokens_with_tiny_tokenizer(tiny_tokenizer):
    lengths = measure(TINY, tiny_tokenizer)
    expected = tiny_tokenizer.apply_chat_template(TINY[1]["messages"], tokenize=True)["input_ids"]
    assert lengths.tokens_per_dialogue[1] == len(expected)
    assert sum(lengths.tokens_by_role["user"]) > 0


def test_stats_command_prints_json_and_plots(tmp_path, capsys, monkeypatch):
    data = tmp_path / "tiny.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in TINY), "utf-8")
    fake_models = types.ModuleType("anxin.models")
    fake_models.load_tokenizer = lambda ref: CharTokenizer()
    monkeypatch.setitem(sys.modules, "anxin.models", fake_models)
    plot = tmp_path / "plots" / "lengths.png"
    assert run("stats", data, "--json", "--model", "whatever", "--plot", plot) == 0
    printed = capsys.readouterr().out
    stats = json.loads(printed[: printed.rindex("}") + 1])
    assert stats["dialogues"] == 2 and stats["tokens_by_role"]["user"]["max"] == 6
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert run("stats", data) == 0
    assert "characters per user turn" in capsys.readouterr().out


def test_download_is_delegated(monkeypatch):
    calls = []
    fake = types.ModuleType("anxin.data.download")
    fake.__doc__ = "Fetch a corpus."
    fake.add_arguments = lambda parser: parser.add_argument("corpus")
    fake.main = lambda args: calls.append(args.corpus) or 0
    monkeypatch.setitem(sys.modules, "anxin.data.download", fake)
    monkeypatch.setattr(anxin.data, "download", fake, raising=False)
    assert run("download", "smilechat") == 0
    assert calls == ["smilechat"]


def test_help_teaches_with_examples(capsys):
    with pytest.raises(SystemExit):
        run("convert", "--help")
    assert "anxin data convert --format smilechat" in capsys.readouterr().out


def test_convert_registers_outside_dataset_dir_with_absolute_path(tmp_path):
    shutil.copy(CORPORA / "alpaca.json", tmp_path / "a.json")
    out = tmp_path / "elsewhere" / "a.jsonl"
    assert run("convert", tmp_path / "a.json", "-o", out, "--register", tmp_path / "reg") == 0
    info = json.loads((tmp_path / "reg" / "dataset_info.json").read_text("utf-8"))
    assert info["a"]["file_name"] == str(out.resolve())


def test_a_turn_of_a_whole_book_is_named_in_a_warning_but_the_data_stays_valid(tmp_path, capsys):
    book = "很长的一段话。" * 4_000  # 28,000 characters pasted into one turn
    records = [
        {
            "messages": [
                {"role": "user", "content": "你好"},
                {"role": "assistant", "content": "你好呀"},
            ]
        },
        {"messages": [{"role": "user", "content": book}, {"role": "assistant", "content": "嗯"}]},
    ]
    data = tmp_path / "long.jsonl"
    data.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n", "utf-8")
    assert run("check", data) == 0
    err = capsys.readouterr().err
    assert f"warning: 1 messages longer than 20,000 characters, e.g. {data}:2: messages[0]" in err
    assert "(28,000 characters)" in err
