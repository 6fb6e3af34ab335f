"""ruff (lint and format) over the repository and mypy over shared/, configured in ruff.toml and
mypy.ini (not pyproject.toml, which azd would take for the app's manifest)."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent.parent


@pytest.mark.parametrize(
    "command",
    [
        ["ruff", "check", "--no-cache", "."],
        ["ruff", "format", "--no-cache", "--check", "."],
        ["mypy", "--no-incremental"],
    ],
    ids=["ruff check", "ruff format", "mypy shared"],
)
def test_the_code_passes(command):
    result = subprocess.run([sys.executable, "-m", *command], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
