"""The Batch simulator is the tests' truth, so it shares no code with the app: it imports nothing
from shared/ (directly or through the tools it uses), and its own timestamps agree with the app's
parsing and formatting, two implementations checked against each other."""

import ast
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from shared.events import TICKS_PER_SECOND, datetime_to_ticks, parse_timestamp, ticks_to_iso
from tools.batchsim import wire

REPO = Path(__file__).resolve().parent.parent.parent


def imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_the_simulator_imports_nothing_from_shared():
    seen, pending = set(), [REPO / "tools" / "batchsim" / "__main__.py", *(REPO / "tools" / "batchsim").glob("*.py")]
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        for module in imported_modules(path):
            assert module.split(".")[0] != "shared", f"{path.relative_to(REPO)} imports {module}"
            if module.split(".")[0] == "tools":  # follow the project's own tools it uses
                candidate = REPO.joinpath(*module.split("."))
                pending += [p for p in (candidate.with_suffix(".py"), candidate / "__init__.py") if p.exists()]
    assert len(seen) > 5


TICKS = st.integers(min_value=0, max_value=(4102444800 * TICKS_PER_SECOND))  # 1970 .. 2100


@given(TICKS)
def test_the_simulators_times_read_back_in_the_app_and_the_apps_in_the_simulator(ticks):
    assert datetime_to_ticks(parse_timestamp(wire.iso(ticks))) // 10 == ticks // 10  # the app keeps microseconds
    assert wire.iso(ticks) == ticks_to_iso(ticks)
    assert wire.ticks_of(ticks_to_iso(ticks)) == ticks


def test_odata_literals_with_offsets_and_short_fractions():
    assert wire.ticks_of("1970-01-01T01:00:00+01:00") == 0
    assert wire.ticks_of("1970-01-01T00:00:00.5Z") == TICKS_PER_SECOND // 2
    for bad in ("2026-12-04T12:00:00", "yesterday", "2026-13-01T00:00:00Z", "2026-02-30T00:00:00Z"):
        try:
            wire.ticks_of(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} was read as a time")
