"""Stopping always works: the first SIGTERM or Ctrl-C asks for a stop at the next step boundary (with a
checkpoint, as Lightning does for SIGTERM); a second one ends the run at once.

The second signal is noticed by a thread reading Python's signal wakeup file descriptor, not by a Python
signal handler: a handler runs only when the main thread returns to the interpreter, which a step stuck in
one long kernel (or a callback that sleeps) may not do for minutes. The thread writes the run's record with
status ``interrupted`` and ends the process with 128 + the signal's number.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextmanager
def stop_on_signals(on_force: Callable[[str], None]) -> Iterator[None]:
    """While inside: Ctrl-C behaves as SIGTERM does under Lightning (the first asks the running Trainer to stop
    at the next step boundary); a second SIGTERM or Ctrl-C calls ``on_force(reason)`` from a watcher thread and
    exits the process at once with 128 + the signal number. Outside the main thread it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    previous_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    previous_int = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, _sigint_as_sigterm)
    done = threading.Event()

    def watch() -> None:
        seen = 0
        while not done.is_set():
            try:
                data = reader.recv(64)
            except OSError:
                return
            for signum in data:
                if signum not in SIGNALS or done.is_set():
                    continue
                seen += 1
                if seen >= 2:
                    reason = f"a second {signal.Signals(signum).name} ended the run at once"
                    try:
                        for attempt in range(3):  # the main thread may be changing the record as we write it
                            try:
                                on_force(reason)
                                break
                            except Exception:
                                if attempt == 2:
                                    raise
                    finally:
                        print(f"\n{reason}; recorded as interrupted", file=sys.stderr, flush=True)
                        os._exit(128 + signum)

    thread = threading.Thread(target=watch, name="ablate-stop", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        signal.set_wakeup_fd(previous_fd)
        signal.signal(signal.SIGINT, previous_int)
        try:
            writer.send(b"\0")  # wakes the watcher, which sees it is done
        except OSError:
            pass
        thread.join(timeout=1)
        writer.close()
        reader.close()


def _sigint_as_sigterm(signum: int, frame: FrameType | None) -> None:
    """Ctrl-C: what SIGTERM does now (Lightning's handler while it trains: stop at the next step boundary with a
    checkpoint); with no handler for SIGTERM, Python's KeyboardInterrupt as before."""
    handler: Any = signal.getsignal(signal.SIGTERM)
    if callable(handler):
        handler(signal.SIGTERM, frame)
    else:
        raise KeyboardInterrupt
