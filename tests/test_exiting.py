"""The program's end (:func:`clfsload.cli.exiting.exit_program`): exit handlers, flushed streams, the exit code."""

import subprocess
import sys
import textwrap

from _load import REPO


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=str(REPO), capture_output=True,
                          text=True, timeout=60, env={"PYTHONPATH": str(REPO)})


def test_exit_handlers_run_and_buffered_output_is_written_with_the_code():
    done = _run("""
        import atexit, sys
        from clfsload.cli.exiting import exit_program

        atexit.register(lambda: sys.stdout.write("handler ran\\n"))
        sys.stdout.write("buffered, no newline flush")  # PYTHONUNBUFFERED is not set: held in the buffer
        sys.stderr.write("on stderr\\n")
        exit_program(3)
    """)
    assert done.returncode == 3
    assert done.stdout == "buffered, no newline flushhandler ran\n"
    assert done.stderr == "on stderr\n"


def test_a_live_thread_takes_the_normal_exit_which_waits_for_it():
    done = _run("""
        import threading, time, sys
        from clfsload.cli.exiting import exit_program

        def late():
            time.sleep(0.3)
            print("thread finished")

        threading.Thread(target=late).start()
        exit_program(0)
    """)
    assert done.returncode == 0
    assert done.stdout == "thread finished\n"
