"""Entry points as people start them: a launcher stopped by a signal, as a service manager or a closed
terminal stops it, leaves no process behind (`./dev demo --keep` killed with SIGTERM or SIGHUP stops
Azurite, the simulator and both function hosts it started); function folders run in a script leave
nothing unclosed; the local host with a timer's setting missing serves the rest."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tools.batchsim.server import DEFAULT_ACCOUNT, DEFAULT_KEY
from tools.stack import ACCESS_KEYS

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
    demo = subprocess.Popen(
        [sys.executable, "-m", "tools.demo", "--tasks", "300", "--keep"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
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


async def test_function_folders_run_in_process_leave_nothing_unclosed(azurite, simulator):
    """A script that runs function folders in-process, each in its own event loop, exits with no
    unclosed client session, connector or transport: a ResourceWarning is an error there."""
    account, url = simulator
    account.create_job("InProcess")
    account.add_tasks("InProcess", ["t1", "t2"], publish=False)
    env = {
        "PATH": os.environ["PATH"],
        "AzureWebJobsStorage": azurite.connection_string,
        "COUNTS_TABLE_PREFIX": f"inproc{os.getpid()}",
        "BATCH_ACCOUNT_URL": url,
        "BATCH_ACCOUNT_NAME": DEFAULT_ACCOUNT,
        "BATCH_ACCOUNT_KEY": DEFAULT_KEY,
        **ACCESS_KEYS,
    }
    script = await asyncio.create_subprocess_exec(
        sys.executable,
        "-W",
        "error::ResourceWarning",
        "-m",
        "tests.e2e.in_process",
        "InProcess",
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(script.communicate(), timeout=120)
    errors = stderr.decode(errors="replace")
    assert script.returncode == 0, errors
    outcomes = json.loads(stdout)
    assert outcomes["TaskEvents"] == 200 and outcomes["GetTaskCounts"] == 200
    assert outcomes["taskCounts"]["active"] + outcomes["taskCounts"]["running"] == 2  # the sync added t2
    for sign in ("ResourceWarning", "Unclosed", "Exception ignored"):
        assert sign not in errors, errors


def test_the_local_host_serves_the_rest_when_a_timer_setting_is_unset(tmp_path):
    """`python -m tools.funchost` with settings lacking PROGRESS_SCHEDULE (an app upgraded without
    re-provisioning): RecordProgress is reported in error in one line, every other function is served."""
    from tools.azurite import free_port

    example = json.loads((REPO / "local.settings.example.json").read_text())
    del example["Values"]["PROGRESS_SCHEDULE"]
    example["Values"]["AzureWebJobs.BatchServiceLogs.Disabled"] = "true"
    for schedule in ("VALIDATION_SCHEDULE", "TASK_SYNC_SCHEDULE"):
        example["Values"][schedule] = "0 0 0 1 1 *"  # nothing fires during the test
    settings = tmp_path / "local.settings.json"
    settings.write_text(json.dumps(example))
    port = free_port()
    host = subprocess.Popen(
        [sys.executable, "-m", "tools.funchost", "--settings", str(settings), "--port", str(port)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={"PATH": os.environ["PATH"]},
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert host.poll() is None, f"the host stopped: {host.stdout.read()}"
            assert time.monotonic() < deadline, "the host did not serve within 60 s"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/openapi.json", timeout=5) as served:
                    assert served.status == 200
                    break
            except OSError:
                time.sleep(0.2)
    finally:
        host.send_signal(signal.SIGINT)
        output, _ = host.communicate(timeout=30)
    errors = [line for line in output.splitlines() if "is in error" in line]
    assert len(errors) == 1 and "The 'RecordProgress' function is in error: '%PROGRESS_SCHEDULE%'" in errors[0], output
    assert "RecordProgress: Error:" in output and "SyncTasks: timerTrigger (0 0 0 1 1 *" in output
