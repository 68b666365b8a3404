"""The board's job runner on fake short commands: start, one at a time, stop (SIGINT, then
SIGTERM), resume, a failure's last error line, and state that a new runner (a reopened or
restarted board) finds on disk."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from anxin.board import jobs
from anxin.board.jobs import (
    JobBusy,
    JobRunner,
    group_alive,
    last_error_line,
    last_progress,
    screen_text,
)

# A fake training: one "checkpoint" file per step in its folder, resuming after the last one;
# a progress bar on the terminal; KeyboardInterrupt (SIGINT) ends it with exit code 130.
FAKE_TRAIN = """
import sys, time
from pathlib import Path
from tqdm import tqdm
out, steps, delay = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
out.mkdir(exist_ok=True)
done = len(list(out.glob("step-*")))
try:
    for step in tqdm(range(done + 1, steps + 1), initial=done, total=steps, desc="train"):
        time.sleep(delay)
        (out / f"step-{step}").write_text("")
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(130)
print("done", flush=True)
"""
STUBBORN = (
    "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
    "print('ready', flush=True)\ntime.sleep(60)"
)


def wait_for(runner: JobRunner, kind: str, phases: set[str], timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = runner.status(kind)
        if status.phase in phases:
            return status
        time.sleep(0.1)
    raise AssertionError(f"{kind} never reached {phases}: {runner.status(kind)}")


def fake_train(out: Path, steps: int = 40, delay: float = 0.1) -> list[str]:
    return [sys.executable, "-c", FAKE_TRAIN, str(out), str(steps), str(delay)]


def test_start_stop_and_resume_a_job(tmp_path):
    runner = JobRunner(tmp_path / "home", tmp_path, grace_s=10)
    out = tmp_path / "run"
    job = runner.start("train", fake_train(out), {"output_dir": str(out)})
    assert job.command.startswith(f"{sys.executable} -c")
    wait_for(runner, "train", {"running"})
    while not list(out.glob("step-*")):
        time.sleep(0.05)
    with pytest.raises(JobBusy, match="a train job is running"):
        runner.start("eval", [sys.executable, "-c", "pass"])
    assert runner.stop().kind == "train"
    status = wait_for(runner, "train", {"stopped"})
    assert status.exit_code == 130 and "interrupted" in status.log  # SIGINT, not SIGTERM
    stopped_at = len(list(out.glob("step-*")))
    assert 0 < stopped_at < 40

    # a new runner (the board restarted) sees the same job, and resumes it
    reopened = JobRunner(tmp_path / "home", tmp_path)
    assert reopened.status("train").phase == "stopped"
    reopened.start("train", fake_train(out, delay=0.01), reopened.job("train").details)
    status = wait_for(reopened, "train", {"finished"})
    assert status.exit_code == 0 and "done" in status.log
    assert len(list(out.glob("step-*"))) == 40
    bar = last_progress(status.log)
    assert bar["desc"] == "train" and bar["n"] == bar["total"] == 40


def test_a_job_that_ignores_sigint_gets_sigterm_after_the_grace_period(tmp_path):
    runner = JobRunner(tmp_path / "home", tmp_path, grace_s=0.5)
    runner.start("eval", [sys.executable, "-c", STUBBORN])
    deadline = time.monotonic() + 20
    while "ready" not in runner.status("eval").log:  # its handler is in place
        assert time.monotonic() < deadline
        time.sleep(0.1)
    runner.stop()
    assert runner.status("eval").phase == "stopping"
    status = wait_for(runner, "eval", {"stopped"}, timeout=10)
    assert status.exit_code == -15


def test_stop_at_once_after_start_stops_the_job_and_records_it(tmp_path):
    # The supervisor ignores the stop signals from its first instruction, so even a Stop
    # that lands while Python is still starting ends the command and the exit is recorded.
    runner = JobRunner(tmp_path / "home", tmp_path, grace_s=1)
    job = runner.start("train", fake_train(tmp_path / "run", delay=1.0))
    runner.stop()
    status = wait_for(runner, "train", {"stopped"})
    assert status.exit_code is not None and status.exit_code != 0
    assert not group_alive(job.pid)


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc/PID/status")
def test_the_supervisor_ignores_the_stop_signals_when_start_returns(tmp_path, monkeypatch):
    # a shell slow to reach its trap: a Stop pressed in that window used to end it
    slow = [jobs.SUPERVISOR[0], "-c", "sleep 0.3; " + jobs.SUPERVISOR[2], *jobs.SUPERVISOR[3:]]
    monkeypatch.setattr(jobs, "SUPERVISOR", slow)
    runner = JobRunner(tmp_path / "home", tmp_path, grace_s=1)
    job = runner.start("train", fake_train(tmp_path / "run", delay=1.0))
    status = Path(f"/proc/{job.pid}/status").read_text()
    ignored = int(status.split("SigIgn:")[1].split()[0], 16)
    assert ignored & jobs._STOP_MASK == jobs._STOP_MASK  # a Stop now cannot end it
    runner.stop()
    assert wait_for(runner, "train", {"stopped"}).exit_code not in (None, 0)


def test_a_failed_job_shows_its_last_error_line(tmp_path):
    runner = JobRunner(tmp_path / "home", tmp_path)
    script = (
        "import sys\nprint('loading...')\n"
        "print('anxin train: error: form: lora_rank must be > 0, got 0', file=sys.stderr)\n"
        "print('bye')\nsys.exit(2)"
    )
    runner.start("train", [sys.executable, "-c", script])
    status = wait_for(runner, "train", {"failed"})
    assert status.exit_code == 2
    assert status.error_line == "anxin train: error: form: lora_rank must be > 0, got 0"


def test_a_job_runs_in_the_board_folder_and_survives_its_runner(tmp_path):
    runner = JobRunner(tmp_path / "home", tmp_path)
    where = [sys.executable, "-c", "import os; print(os.getcwd())"]
    runner.start("merge", where)
    del runner  # nothing of the job lives in the runner object
    elsewhere = JobRunner(tmp_path / "home", tmp_path / "home")  # a board started elsewhere
    status = wait_for(elsewhere, "merge", {"finished"})
    assert status.log.strip().endswith(str(tmp_path))
    elsewhere.start("merge", where, status.job.details)  # run again: where it ran before
    assert wait_for(elsewhere, "merge", {"finished"}).log.strip().endswith(str(tmp_path))


def test_log_text_reads_as_the_terminal_showed_it():
    raw = "a\r\n\x1b[32mtrain:  10%|#    | 1/10 [00:01<00:09]\rtrain:  20%|##   | 2/10 [00:02<00:08]\nend"
    assert screen_text(raw) == "a\ntrain:  20%|##   | 2/10 [00:02<00:08]\nend"
    assert last_progress(raw) == {"desc": "train", "percent": 20, "n": 2, "total": 10,
                                  "left": "00:08"}  # fmt: skip
    assert last_error_line("x\nValueError: bad\nWriting model shards: 100%\n") == "ValueError: bad"
    assert last_error_line("only\n") == "only" and last_error_line("") is None
