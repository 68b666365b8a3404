"""`anxin safety check` and `anxin safety eval`, run through their argparse entry points."""

import argparse
import json

import pytest

from anxin.safety import commands


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="anxin safety")
    commands.add_arguments(parser)
    return commands.main(parser.parse_args(list(argv)))


def write_set(path, records):
    path.write_text(
        "\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n", encoding="utf-8"
    )
    return path


SMALL_SET = [
    {"text": "我不想活了", "label": "crisis", "category": "suicidal", "context": []},
    {"text": "I want to kill myself", "label": "crisis", "category": "suicidal", "context": []},
    {
        "text": "我已经想好了，就在今晚",
        "label": "crisis",
        "category": "context",
        "context": ["我想死"],
    },
    {"text": "累死了", "label": "non_crisis", "category": "idiom", "context": []},
    {"text": "奶奶去世了，好难过", "label": "non_crisis", "category": "grief", "context": []},
    {"text": "好累，撑不下去了", "label": "non_crisis", "category": "distress", "context": []},
]


def test_eval_prints_the_figures_and_writes_json(tmp_path, capsys):
    data = write_set(tmp_path / "set.jsonl", SMALL_SET)
    out = tmp_path / "reports" / "safety.json"
    assert run("eval", str(data), "--json", str(out)) == 0
    printed = capsys.readouterr().out
    assert "crisis recall        1.000  (3/3)" in printed
    assert "false-positive rate  0.000  (0/3)" in printed
    assert "confusion" in printed and "distress" in printed
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["overall"]["recall"] == 1.0 and report["overall"]["precision"] == 1.0
    assert report["confusion"]["non_crisis"] == {"none": 2, "concern": 1, "crisis": 0}
    assert report["categories"]["idiom"]["false_positive_rate"] == 0.0
    assert report["categories"]["suicidal"]["recall"] == 1.0


def test_eval_errors_name_lines_and_rules_never_text(tmp_path, capsys):
    records = [*SMALL_SET, {"text": "今天天气真好", "label": "crisis", "category": "mislabelled"}]
    data = write_set(tmp_path / "set.jsonl", records)
    out = tmp_path / "r.json"
    assert run("eval", str(data), "--json", str(out), "--min-recall", "0.98") == 1
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["errors"] == [
        {"line": 7, "label": "crisis", "category": "mislabelled", "predicted": "none", "rules": []}
    ]
    assert "天气" not in out.read_text(encoding="utf-8")
    assert "below target: recall" in capsys.readouterr().err


def test_show_errors_prints_the_misclassified_line(tmp_path, capsys):
    records = [{"text": "今天天气真好", "label": "crisis", "category": "x"}]
    data = write_set(tmp_path / "set.jsonl", records)
    run("eval", str(data), "--show-errors")
    assert f"{data}:1: crisis → none [x] 今天天气真好" in capsys.readouterr().out


@pytest.mark.parametrize(
    "line,message",
    [
        ('{"text": "hi", "label": "maybe"}', "label: 'maybe' is not one of"),
        ('{"label": "crisis"}', "text: missing"),
        ('{"text": "hi", "label": "crisis", "context": "no"}', "context: must be a list"),
        ('{"text": "hi", "label": "crisis", "context": [{"role": "bot", "content": "x"}]}', "role"),
        ("not json", "(line): not valid JSON"),
    ],
)
def test_bad_lines_are_refused_with_file_line_and_field(tmp_path, capsys, line, message):
    data = tmp_path / "bad.jsonl"
    data.write_text(json.dumps(SMALL_SET[0], ensure_ascii=False) + "\n" + line + "\n", "utf-8")
    assert run("eval", str(data)) == 2
    err = capsys.readouterr().err
    assert f"{data}:2: " in err and message in err


def test_check_prints_level_categories_and_rules(capsys):
    assert run("check", "我已经想好了，就在今晚", "--context", "我不想活了") == 0
    printed = capsys.readouterr().out
    assert "level:      crisis" in printed and "context.resolve" in printed


def test_check_json_and_reply_modes(capsys):
    run("check", "今天加班累死了", "--json")
    assert json.loads(capsys.readouterr().out)["level"] == "none"
    run("check", "--reply", "你患有抑郁症，每天吃两片舍曲林就好。", "--json")
    verdict = json.loads(capsys.readouterr().out)
    assert verdict["ok"] is False and "diagnosis_as_fact" in verdict["reasons"]


def test_help_teaches_with_examples():
    parser = argparse.ArgumentParser(prog="anxin safety")
    commands.add_arguments(parser)
    text = parser.format_help()
    assert "anxin safety eval data/safety_dev.jsonl" in text and "--context" in text
