"""A launcher stopped by a signal, as a service manager or a closed terminal stops it, leaves no
process behind: `./dev demo --keep` killed with SIGTERM or SIGHUP stops Azurite, the simulator and
both function hosts it started."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parent.parent.parent


def children_of(pid: int) -> list[int]:
    """Live (not zombie) processes whose parent is ``pid``, from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def running(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_the_demo_stopped_by_a_signal_stops_every_process_it_started(signum):
    # without AzureWebJobsStorage (other tests set it in this process), so the demo starts its own Azurite
    env = {name: value for name, value in os.environ.items() if name != "AzureWebJobsStorage"}
    demo = subprocess.Popen([sys.executable, "-m", "tools.demo", "--tasks", "300", "--keep"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    children: list[int] = []
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and len(children) < 4:  # Azurite, the simulator, two hosts
            time.sleep(0.2)
            children = children_of(demo.pid)
        assert len(children) >= 4, f"the demo started {len(children)} processes"
        demo.send_signal(signum)
        assert demo.wait(timeout=60) == 128 + signum
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(running(pid) for pid in children):
            time.sleep(0.2)
        assert not [pid for pid in children if running(pid)], "processes left running"
    finally:  # whatever failed above, leave nothing running
        if demo.poll() is None:
            demo.terminate()
            try:
                demo.wait(timeout=30)
            except subprocess.TimeoutExpired:
                demo.kill()
        for pid in children:
            if running(pid):
                os.kill(pid, signal.SIGKILL)
