"""The supervisor of one board job: `python supervise.py EXIT LOG -- COMMAND...`.

It runs the command on a pseudo-terminal, copies everything the command prints into LOG (so
progress bars, which tqdm draws only on a terminal, reach the page), and writes the command's
exit code to EXIT when it ends. The board starts it as a file, through `sh -c 'trap "" INT TERM
HUP; exec ...'`, so Stop's SIGINT to the process group reaches the command but never the
supervisor, not even while Python is still starting. Standard library only, for the same reason:
the less it imports, the sooner it runs.
"""

import json
import os
import select
import signal
import subprocess
import sys
import time

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
COLUMNS = 120


def default_signals() -> None:
    """In the child, before exec: the stop signals do what they normally do (the supervisor's
    ignored ones would be inherited, and Python would then never raise KeyboardInterrupt)."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_DFL)


def supervise(exit_file: str, log_file: str, argv: list[str]) -> int:
    import pty
    import tty

    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    leader, follower = pty.openpty()
    tty.setraw(follower)  # no "\n" -> "\r\n" translation: the log keeps what was printed
    set_width(follower, COLUMNS)
    child = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        preexec_fn=default_signals,  # safe here: the supervisor has a single thread
    )
    os.close(follower)
    with open(log_file, "ab") as log:
        copy_until_exit(leader, log, child)
    write_exit(exit_file, child.returncode)
    return 0


def set_width(fd: int, columns: int) -> None:
    import fcntl
    import struct
    import termios

    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))


def copy_until_exit(leader: int, log, child: subprocess.Popen) -> None:
    """Copy the terminal's output into the log until the child has exited and all is read."""
    while True:
        ready, _, _ = select.select([leader], [], [], 0.5)
        if ready:
            try:
                data = os.read(leader, 65536)
            except OSError:  # EIO: every process that could write has closed the terminal
                data = b""
            if not data:
                break
            log.write(data)
            log.flush()
        elif child.poll() is not None:
            break  # exited, and nothing more arrived within half a second
    child.wait()


def write_exit(exit_file: str, code: int) -> None:
    partial = f"{exit_file}.tmp"
    with open(partial, "w", encoding="utf-8") as out:
        json.dump({"exit_code": code, "ended_at": time.time()}, out)
    os.replace(partial, exit_file)  # whole or not at all: the board may read it any moment


def main(argv: list[str]) -> int:
    if len(argv) < 4 or argv[2] != "--":
        print("usage: supervise.py EXIT LOG -- COMMAND...", file=sys.stderr)
        return 2
    return supervise(argv[0], argv[1], argv[3:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
