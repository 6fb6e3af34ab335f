"""Launchers that start processes stop them however they are stopped.

Ctrl-C raises KeyboardInterrupt; SIGTERM and SIGHUP (a service manager, a closed terminal, `kill`)
would end Python at once, skipping every ``finally`` and leaving Azurite, the simulator and the
function hosts running. After ``stop_children_on_termination()`` they raise SystemExit instead, so
the launcher's ``with`` blocks stop its children, as on Ctrl-C or on its own failure.
"""

from __future__ import annotations

import signal

SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def stop_children_on_termination() -> None:
    def leave(signum: int, _frame) -> None:
        for other in SIGNALS:  # a second signal must not cut the clean-up short
            signal.signal(other, signal.SIG_IGN)
        raise SystemExit(128 + signum)

    for signum in SIGNALS:
        signal.signal(signum, leave)
