"""Runs the people's client (python -m cli) as a person would: a separate process, a plain environment.
A ResourceWarning is an error there, and nothing may be reported unclosed at exit."""

import subprocess
import sys


def run_cli(*args: str) -> tuple[int, str, str]:
    result = subprocess.run(
        [sys.executable, "-W", "error::ResourceWarning", "-m", "cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "160"},
    )
    assert "ResourceWarning" not in result.stderr and "Exception ignored" not in result.stderr, result.stderr
    return result.returncode, result.stdout, result.stderr
