"""Crash marks outlive the worker that wrote them: a real process segfaults while holding one,
and its parent reads what it was running and which thread crashed."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

from tidal.serving.crashmarks import (
    CrashMarks,
    Mark,
    crashed_models,
    fault_path,
    marks_path,
    read_fault,
    read_marks,
)

_CRASH = textwrap.dedent("""
    import ctypes, sys, threading
    from tidal.serving.crashmarks import CrashMarks, enable_fault_report
    marks = CrashMarks(sys.argv[1])
    enable_fault_report(sys.argv[2])
    ready = threading.Event()

    def idle():  # another model mid-predict on another thread
        with marks.hold("predict", "models:/calm/1"):
            ready.set()
            threading.Event().wait()

    threading.Thread(target=idle, daemon=True).start()
    ready.wait()
    with marks.hold("load", "models:/done/1"):
        pass  # freed: not blamed
    def crash():
        with marks.hold("predict", "models:/crash/7"):
            print(threading.get_ident(), flush=True)
            ctypes.string_at(0)
    worker = threading.Thread(target=crash)
    worker.start()
    worker.join()
""")


def test_a_segfaulting_thread_is_named_by_its_mark_after_the_process_dies(tmp_path):
    marks, fault = marks_path(tmp_path, 1), fault_path(tmp_path, 1)
    done = subprocess.run([sys.executable, "-c", _CRASH, str(marks), str(fault)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == -signal.SIGSEGV, done.stderr
    crashing_thread = int(done.stdout.split()[0])
    held = read_marks(marks)
    assert sorted((m.kind, m.uri) for m in held) == [("predict", "models:/calm/1"),
                                                     ("predict", "models:/crash/7")]
    report, thread = read_fault(fault)
    assert "Segmentation fault" in report and thread == crashing_thread
    blamed, certain = crashed_models(held, thread)
    assert [m.uri for m in blamed] == ["models:/crash/7"] and certain


def test_without_a_fault_report_every_running_model_is_blamed_uncertainly(tmp_path):
    marks = CrashMarks(tmp_path / "marks")
    with marks.hold("predict", "models:/a/1"), marks.hold("load", "models:/b/2"):
        held = read_marks(tmp_path / "marks")
    assert read_marks(tmp_path / "marks") == []  # freed on the way out
    assert read_marks(tmp_path / "missing") == []
    assert read_fault(tmp_path / "missing") == ("", None)
    blamed, certain = crashed_models(held, None)
    assert {(m.kind, m.uri) for m in blamed} == {("predict", "models:/a/1"),
                                                 ("load", "models:/b/2")}
    assert not certain
    assert all(isinstance(m, Mark) for m in blamed)
