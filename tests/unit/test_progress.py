"""CLI progress bars: drawn on a terminal (a real pseudo-terminal here), never into a
pipe or a file."""

import io
import os

from modelmon_daemon.cli.progress import terminal_progress


def test_no_bar_when_not_a_terminal():
    assert terminal_progress("window", io.StringIO()) is None


def test_a_bar_on_a_terminal():
    master, slave = os.openpty()
    try:
        with os.fdopen(slave, "w") as tty:
            progress = terminal_progress("window", tty)
            assert progress is not None
            for done in range(1, 4):
                progress(done, 3)
            tty.flush()
        chunks = []
        while True:  # everything drawn, until the terminal's other end is closed
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: no writer left
                break
            if not chunk:
                break
            chunks.append(chunk)
        drawn = b"".join(chunks).decode()
    finally:
        os.close(master)
    assert "3/3" in drawn and "window" in drawn
