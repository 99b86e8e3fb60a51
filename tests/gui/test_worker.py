"""Task: results, failures and cancellation arrive as signals; stopping never waits on an undelivered result."""

from __future__ import annotations

import threading

from core.events import Cancelled
from gnft_gui.worker import Task


def test_result_failure_and_cancel_are_signals(qtbot):
    ok = Task(lambda obs: 41 + 1, "ok")
    with qtbot.waitSignal(ok.finished, timeout=10000) as got:
        ok.start()
    assert got.args == [42] and not ok.running
    bad = Task(lambda obs: 1 / 0, "bad")
    with qtbot.waitSignal(bad.failed, timeout=10000) as failed:
        bad.start()
    assert "division by zero" in failed.args[0] and "Traceback" in failed.args[1]

    def until_cancelled(obs):
        while not obs.should_stop():
            obs.token._event.wait(0.01)
        raise Cancelled()

    slow = Task(until_cancelled, "slow")
    slow.start()
    with qtbot.waitSignal(slow.cancelled, timeout=10000):
        slow.cancel()


def test_stop_returns_once_the_work_is_done_even_before_its_result_is_delivered(qtbot):
    done = threading.Event()
    task = Task(lambda obs: done.set() or "result", "quick")
    task.start()
    assert done.wait(10)  # the work has returned; its result waits in the GUI thread's queue
    assert task.stop(ms=5000)  # the thread ends now, without the GUI loop having run
    assert not task.running
