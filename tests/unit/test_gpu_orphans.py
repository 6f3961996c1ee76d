"""A process started by the inference server knows when the server is gone (gpu_endpoints.engine.
server_gone), also while it is still exiting: its main thread gone, another of its threads not yet,
so that getppid() still names it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from gpu_endpoints.engine import server_gone

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc and pthread_exit")

# A server whose main thread exits (pthread_exit) while another of its threads lives on for a while:
# the process is a zombie leader, its child still its own. The child says what it sees. The main
# thread exits only once the child has looked at it alive (a file the child makes): the child's
# start and imports take longer than any fixed wait on a loaded machine.
SERVER = textwrap.dedent(
    """
    import ctypes, os, subprocess, sys, tempfile, threading, time
    CHILD = '''
    import os, sys, time
    from gpu_endpoints.engine import server_gone
    parent = os.getppid()
    before = server_gone(parent)
    open(sys.argv[1], "w").close()
    time.sleep(1.0)
    print(before, os.getppid() == parent, server_gone(parent), flush=True)
    '''
    looked = os.path.join(tempfile.mkdtemp(), "looked")
    subprocess.Popen([sys.executable, "-c", CHILD, looked])
    deadline = time.monotonic() + 20
    while not os.path.exists(looked) and time.monotonic() < deadline:
        time.sleep(0.01)
    threading.Thread(target=time.sleep, args=(3,)).start()
    ctypes.CDLL(None).pthread_exit(None)
    """
)


def test_a_process_sees_its_server_alive_and_not_its_own_parent_as_gone() -> None:
    assert not server_gone(os.getppid())
    assert server_gone(os.getpid())  # not this process's parent


def test_a_server_whose_main_thread_is_gone_is_gone_though_its_child_is_not_handed_to_init_yet() -> None:
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", SERVER], env=environment, capture_output=True, text=True, timeout=30
    )
    # Before: the server alive. After its main thread exited: the child's parent is still the server
    # (its other thread), and yet the server is seen as gone
    assert done.stdout.split() == ["False", "True", "True"], done.stdout + done.stderr
