"""Settings > CPU Threads: the choice is in force, kept across starts, and waits for a running task."""

from __future__ import annotations

import threading

import pytest
import torch

from core.runtime import available_cpus, default_threads

# the menu offers 1..the CPUs this process may use; choosing between counts needs two of them
pytestmark = pytest.mark.skipif(available_cpus() < 2, reason="the process may use one CPU: the menu offers only 1")


@pytest.fixture
def keep_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_the_choice_is_in_force_and_kept_for_the_next_start(qtbot, keep_threads):
    from gnft_gui.main_window import MainWindow

    window = MainWindow()
    qtbot.addWidget(window)
    assert window.threads_choice == "auto" and torch.get_num_threads() == default_threads()
    assert window.threads_actions["auto"].isChecked()
    assert window.threads_actions["auto"].text() == f"&Automatic ({default_threads()})"
    window.threads_actions["2"].trigger()
    assert torch.get_num_threads() == 2 and window.threads_actions["2"].isChecked()
    window.close()

    torch.set_num_threads(1)
    again = MainWindow()
    qtbot.addWidget(again)
    assert again.threads_choice == "2" and torch.get_num_threads() == 2 and again.threads_actions["2"].isChecked()


def test_a_change_during_a_task_applies_when_it_ends(qtbot, keep_threads):
    from gnft_gui.main_window import MainWindow

    window = MainWindow()
    qtbot.addWidget(window)
    window.threads_actions["1"].trigger()
    release, seen = threading.Event(), []

    def work(_observer):
        release.wait(60)
        seen.append(torch.get_num_threads())

    task = window._run(work, "held")
    task.start()
    window.threads_actions["2"].trigger()
    assert torch.get_num_threads() == 1 and window.threads_actions["2"].isChecked()  # not under the running task
    with qtbot.waitSignal(task.finished, timeout=60000):
        release.set()
    assert seen == [1] and torch.get_num_threads() == 2 and not window.tasks
