"""Ctrl-C that ends long loops at a clean point instead of anywhere."""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator


@contextlib.contextmanager
def ctrl_c_requests_stop() -> Iterator[dict[str, bool]]:
    """While inside, the first Ctrl-C only asks to stop (``stop["requested"]`` turns True)
    so the loop can end where it chooses; a second one interrupts at once
    (KeyboardInterrupt). Off the main thread Python cannot catch signals: the request
    then never turns True and Ctrl-C interrupts as usual."""
    stop = {"requested": False}
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def request_stop(signum, frame):
        if stop["requested"]:
            raise KeyboardInterrupt
        stop["requested"] = True

    previous = signal.signal(signal.SIGINT, request_stop)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)
