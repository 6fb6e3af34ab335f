"""The deployed requirements: requirements.txt is requirements.in compiled (`./dev lock`), every
package pinned with its hashes, so Azure's remote build installs exactly what the tests ran on."""

import re
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parent.parent.parent


def locked() -> dict[str, tuple[str, list[str]]]:
    """requirements.txt: name -> (pinned version, hashes)."""
    entries, text = {}, (REPO / "requirements.txt").read_text()
    for block in re.split(r"\n(?=[A-Za-z0-9])", text.split("\n#\n", 2)[-1].strip()):
        head = block.split()[0]
        name, _, version = head.partition("==")
        entries[canonicalize_name(name)] = (version, re.findall(r"--hash=sha256:([0-9a-f]{64})", block))
    return entries


def wanted() -> list[Requirement]:
    lines = (REPO / "requirements.in").read_text().splitlines()
    return [Requirement(line) for line in lines if line.strip() and not line.startswith("#")]


def test_every_requirement_is_pinned_within_its_range_with_hashes():
    lock = locked()
    assert lock and all(version and hashes for version, hashes in lock.values()), lock
    for requirement in wanted():
        version, _ = lock[canonicalize_name(requirement.name)]
        assert requirement.specifier.contains(version, prereleases=True), (requirement, version)


def test_the_lock_is_what_dev_lock_writes():
    header = (REPO / "requirements.txt").read_text().split("\n#\n", 2)[1]
    flags = set(re.findall(r"--[a-z-]+", header))
    dev_lock = (REPO / "dev").read_text().split("  lock)", 1)[1].split(";;", 1)[0]
    assert flags == set(re.findall(r"--[a-z-]+", dev_lock)) - {"--quiet"}  # the same command, quieter


def test_the_tests_run_on_the_deployed_versions():
    for name, (version, _) in locked().items():
        assert metadata.version(name) == version, f"{name}: installed {metadata.version(name)}, deployed {version}"
