"""One benchmark, the code of an earlier commit against today's, in the same session.

    .venv/bin/python -m bench.versus --then 4c588d4 --runs 3 --results ingestion -- bench.ingestion
    .venv/bin/python -m bench.versus --then 4c588d4 --runs 3 --results validation -- \\
        bench.validation --tasks 1000000 --parallel-listings 8 --batch-latency 0.075

Each commit's tree is extracted with ``git archive`` (``--now`` defaults to HEAD: commit first) and
run with its own benchmark code (``--copy FILE`` lays this checkout's file over both trees, for a
benchmark newer than a commit), this checkout's ``.venv`` and ``node_modules``; runs alternate
(then, now, then, now, ...) so that a machine slowing down mid-session weighs on both alike. Every
number in each run's ``bench/results/<results>.json`` is collected; the table gives, per figure,
the median of the runs of each side and now / then. Writes ``bench/results/versus-<results>.json``.
A figure present on one side only is listed with the other side empty.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"


def extract(commit: str, into: Path, copies: list[str]) -> Path:
    """The commit's tree in ``into``, sharing this checkout's installed environment, with ``copies``
    (paths in this checkout: a benchmark the older commit did not have yet) laid over it."""
    archive = subprocess.run(["git", "archive", commit], cwd=REPO, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tree:
        tree.extractall(into, filter="data")
    for shared in (".venv", "node_modules"):
        (into / shared).symlink_to(REPO / shared)
    for path in copies:
        shutil.copyfile(REPO / path, into / path)
    return into


def figures(value: Any, path: str = "") -> dict[str, float]:
    """Every number in a results document, by its path (``batched.0.events_per_s``)."""
    if isinstance(value, bool):
        return {}
    if isinstance(value, int | float):
        return {path: float(value)}
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    found: dict[str, float] = {}
    for key, inner in items:
        found.update(figures(inner, f"{path}.{key}" if path else str(key)))
    return found


def run_once(tree: Path, command: list[str], results: str) -> dict[str, float]:
    subprocess.run([sys.executable, "-m", *command], cwd=tree, check=True)
    return figures(json.loads((tree / "bench" / "results" / f"{results}.json").read_text()))


def medians(runs: list[dict[str, float]]) -> dict[str, float]:
    names = sorted({name for run in runs for name in run})
    return {name: statistics.median(run[name] for run in runs if name in run) for name in names}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--then", required=True, help="the earlier commit")
    parser.add_argument("--now", default="HEAD")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--results", required=True, help="the benchmark's results file, without .json")
    parser.add_argument("--copy", action="append", default=[], help="a file of this checkout laid over both trees")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- module [arguments]")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("name the benchmark module after --")
    commits = {
        side: subprocess.run(
            ["git", "rev-parse", "--short", rev], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
        for side, rev in (("then", args.then), ("now", args.now))
    }
    runs: dict[str, list[dict[str, float]]] = {"then": [], "now": []}
    with tempfile.TemporaryDirectory(prefix="versus-") as scratch:
        trees = {side: extract(commit, Path(scratch) / side, args.copy) for side, commit in commits.items()}
        for number in range(args.runs):
            for side in ("then", "now"):
                print(f"== run {number + 1} of {args.runs}: {side} ({commits[side]})", flush=True)
                runs[side].append(run_once(trees[side], command, args.results))
    then, now = medians(runs["then"]), medians(runs["now"])
    report = {
        "command": " ".join(command),
        "commits": commits,
        "runs": args.runs,
        "medians": {name: {"then": then.get(name), "now": now.get(name)} for name in sorted(set(then) | set(now))},
        "each_run": runs,
    }
    print(f"figure | then ({commits['then']}) | now ({commits['now']}) | now / then   (medians of {args.runs})")
    for name, pair in report["medians"].items():
        ratio = f"{pair['now'] / pair['then']:.2f}" if pair["then"] and pair["now"] is not None else ""
        print(f"{name} | {pair['then']} | {pair['now']} | {ratio}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"versus-{args.results}.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
