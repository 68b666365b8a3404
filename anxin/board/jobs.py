"""The board's jobs: `anxin train`, `eval`, `merge` and `export` as child processes, state on disk.

A job runs under a small supervisor (anxin/board/supervise.py) in a session and process group of
its own, so nothing that happens to the board (a crash, Ctrl-C in its terminal, a closed
browser) reaches the job. The supervisor copies what the command prints into BOARD/jobs/KIND.log
and writes KIND.exit when it ends, so even a board started later learns how it ended;
KIND.json holds the rest: the command, the group's id and what the tab needs to show it. One
job runs at a time. Stop sends SIGINT to the group (Python raises KeyboardInterrupt and `anxin`
exits 130), then SIGTERM if anything of the group is still there after a grace period.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from anxin.atomic import write_json
from anxin.errors import AnxinError

KINDS = ("train", "eval", "merge", "export")
LIVE = ("running", "stopping")
# The supervisor, started with the stop signals ignored from its first instruction: `sh` sets
# them to SIG_IGN and execs Python, which keeps them ignored (see supervise.py).
SUPERVISOR = [
    "/bin/sh", "-c", 'trap "" INT TERM HUP; exec "$0" "$@"',
    sys.executable, str(Path(__file__).with_name("supervise.py")),
]  # fmt: skip
TAIL_BYTES = 24_000
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# tqdm's bar: "model: replies:  40%|████      | 2/5 [00:01<00:02,  1.2turn/s]"
_TQDM = re.compile(
    r"(?P<desc>[^\r\n|]*?)\s*(?P<percent>\d+)%\|[^|\r\n]*\|\s*(?P<n>\d+)/(?P<total>\d+)"
    r"\s*\[(?P<elapsed>[\d:]+)<(?P<left>[\d:?]+)"
)


class JobBusy(AnxinError):
    """Another job is running; the board runs one at a time."""


@dataclass
class Job:
    kind: str
    argv: list[str]
    pid: int  # the supervisor's, which is also the job's process group
    pid_started: str | None  # its start time in clock ticks, so a reused pid is not taken for it
    started_at: float
    details: dict = field(default_factory=dict)  # what the tab needs: output_dir, out, config
    stop_requested_at: float | None = None

    @property
    def command(self) -> str:
        """The command as a person would type it (`anxin train ...`, not `python -m anxin`)."""
        argv = self.argv
        if argv[1:3] == ["-m", "anxin"]:
            argv = ["anxin", *argv[3:]]
        return shlex.join(argv)


@dataclass
class JobStatus:
    job: Job | None
    phase: str  # none | running | stopping | finished | failed | stopped
    exit_code: int | None = None
    log: str = ""
    error_line: str | None = None

    @property
    def live(self) -> bool:
        return self.phase in LIVE


# --- reading what a job printed ---------------------------------------------------------------


def read_tail(path: Path, limit: int = TAIL_BYTES) -> str:
    """The end of a log file as raw text (progress bars' carriage returns kept)."""
    if not path.is_file():
        return ""
    with open(path, "rb") as f:
        f.seek(max(0, f.seek(0, os.SEEK_END) - limit))
        return f.read().decode("utf-8", errors="replace")


def screen_text(raw: str) -> str:
    """What a terminal would show: each carriage return overwrites its line, colours dropped."""
    raw = _ANSI.sub("", raw.replace("\r\n", "\n"))
    lines = []
    for line in raw.split("\n"):
        pieces = [piece for piece in line.split("\r") if piece.strip()]
        lines.append(pieces[-1] if pieces else line.strip("\r"))
    return "\n".join(lines).strip("\n")


def last_progress(raw: str) -> dict | None:
    """The newest tqdm bar in the log: description, percent, n/total, time left."""
    matches = list(_TQDM.finditer(_ANSI.sub("", raw)))
    if not matches:
        return None
    found = matches[-1].groupdict()
    return {
        "desc": found["desc"].strip().rstrip(":").strip(),
        "percent": int(found["percent"]),
        "n": int(found["n"]),
        "total": int(found["total"]),
        "left": found["left"],
    }


def last_error_line(text: str) -> str | None:
    """The line that says why a job failed: the last one naming an error, else the last one."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        if re.search(r"error|exception|killed|traceback", line, re.IGNORECASE):
            return line
    return lines[-1] if lines else None


# --- processes --------------------------------------------------------------------------------


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state, start time) from /proc/PID/stat, or None when the process is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # after the command name, which may hold spaces
    return fields[0], fields[19]


_STOP_MASK = sum(1 << (signum - 1) for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP))


def _wait_until_stop_signals_ignored(pid: int, timeout_s: float = 2.0) -> None:
    """Return once the supervisor ignores the stop signals (sh has run its `trap`), so that a
    Stop pressed at once reaches only the command: before that, SIGINT ended `sh` itself and the
    job was left without an exit code (seen in a loaded test run). Some milliseconds; on a
    system without /proc, or if the process is gone, at once."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return
        found = re.search(r"^SigIgn:\s*([0-9a-fA-F]+)", status, re.MULTILINE)
        if found is None or int(found.group(1), 16) & _STOP_MASK == _STOP_MASK:
            return
        time.sleep(0.002)


def process_started(pid: int) -> str | None:
    stat = _proc_stat(pid)
    return stat[1] if stat else None


def group_alive(pgid: int) -> bool:
    """Whether any live process is left in the group (the command, if its supervisor died)."""
    if not Path("/proc").is_dir():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        state, _, group = text[text.rindex(")") + 2 :].split()[:3]
        if int(group) == pgid and state != "Z":
            return True
    return False


def is_alive(pid: int, started: str | None) -> bool:
    if Path("/proc").is_dir():
        stat = _proc_stat(pid)
        return stat is not None and stat[0] != "Z" and (started is None or stat[1] == started)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class JobRunner:
    """Start, watch and stop the board's one job; everything it knows is under `home`."""

    def __init__(self, home: Path, workdir: Path, grace_s: float = 15.0):
        self.home = Path(home) / "jobs"
        self.workdir = Path(workdir)
        self.grace_s = grace_s
        self._lock = threading.Lock()

    def _path(self, kind: str, suffix: str) -> Path:
        return self.home / f"{kind}{suffix}"

    def log_path(self, kind: str) -> Path:
        return self._path(kind, ".log")

    def job(self, kind: str) -> Job | None:
        path = self._path(kind, ".json")
        if not path.is_file():
            return None
        return Job(**json.loads(path.read_text(encoding="utf-8")))

    def _save(self, job: Job) -> None:
        write_json(self._path(job.kind, ".json"), asdict(job))

    def start(self, kind: str, argv: list[str], details: dict | None = None) -> Job:
        """Run `argv` as the job of `kind`; JobBusy if one runs. It runs in the board's folder,
        or in `details["workdir"]`: details kept from an earlier job (Resume) run it where it
        ran, whatever folder this board was started in."""
        details = {"workdir": str(self.workdir), **(details or {})}
        with self._lock:
            busy = self.running()
            if busy is not None:
                raise JobBusy(f"a {busy.kind} job is running ({busy.command}); stop it first")
            self.home.mkdir(parents=True, exist_ok=True)
            exit_file, log = self._path(kind, ".exit"), self.log_path(kind)
            exit_file.unlink(missing_ok=True)
            with open(log, "wb") as out:
                process = subprocess.Popen(
                    [*SUPERVISOR, str(exit_file), str(log), "--", *argv],
                    cwd=details["workdir"],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=out,  # the supervisor's own failure, if any
                    start_new_session=True,
                )
            # Collect its exit status, so a finished job does not linger as a zombie.
            threading.Thread(target=process.wait, daemon=True).start()
            _wait_until_stop_signals_ignored(process.pid)
            job = Job(kind, list(argv), process.pid, process_started(process.pid), time.time(),
                      details)  # fmt: skip
            self._save(job)
            return job

    def status(self, kind: str) -> JobStatus:
        job = self.job(kind)
        if job is None:
            return JobStatus(None, "none")
        log = screen_text(read_tail(self.log_path(kind)))
        ended = self._exit_code(kind)
        if self._alive(job, ended):
            return JobStatus(job, "stopping" if job.stop_requested_at else "running", log=log)
        if ended == 0:
            return JobStatus(job, "finished", 0, log)
        if job.stop_requested_at:
            return JobStatus(job, "stopped", ended, log)
        error = last_error_line(log) or "the job ended without an exit code"
        return JobStatus(job, "failed", ended, log, error)

    @staticmethod
    def _alive(job: Job, exit_code: int | None = None) -> bool:
        """The supervisor runs, or (it died, no exit code written) something of its group."""
        if is_alive(job.pid, job.pid_started):
            return True
        return exit_code is None and group_alive(job.pid)

    def _exit_code(self, kind: str) -> int | None:
        path = self._path(kind, ".exit")
        if not path.is_file():
            return None
        return json.loads(path.read_text(encoding="utf-8"))["exit_code"]

    def running(self) -> Job | None:
        for kind in KINDS:
            status = self.status(kind)
            if status.live:
                return status.job
        return None

    def stop(self) -> Job | None:
        """SIGINT to the running job's group now, SIGTERM after the grace period."""
        job = self.running()
        if job is None:
            return None
        job.stop_requested_at = time.time()
        self._save(job)
        _signal_group(job.pid, signal.SIGINT)
        timer = threading.Timer(self.grace_s, self._terminate, args=(job,))
        timer.daemon = True
        timer.start()
        return job

    def _terminate(self, job: Job) -> None:
        if self._alive(job, self._exit_code(job.kind)):
            _signal_group(job.pid, signal.SIGTERM)


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
        os.killpg(pgid, signum)
