"""Runs the people's client (tools.cli) as a person would: a separate process, a plain environment."""
import subprocess
import sys


def run_cli(*args: str) -> tuple[int, str, str]:
    result = subprocess.run([sys.executable, "-m", "tools.cli", *args], capture_output=True, text=True, timeout=60,
                            env={"PATH": "/usr/bin:/bin", "COLUMNS": "160"})
    return result.returncode, result.stdout, result.stderr
