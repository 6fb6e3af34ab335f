"""The README and docs/ stay true to each other and to the code: every relative link and #anchor
resolves, and the README's configuration table names every setting with the code's defaults."""

import re
from pathlib import Path

import pytest

from shared import config

REPO = Path(__file__).resolve().parent.parent.parent
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")


def prose(path: Path) -> list[str]:
    """The lines outside fenced code blocks."""
    lines, fenced = [], False
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, repeats numbered."""
    found, seen = set(), {}
    for line in prose(path):
        heading = re.match(r"#{1,6} (.+)", line)
        if heading:
            slug = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower()).replace(" ", "-")
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def links(path: Path) -> list[str]:
    return [a or b for line in prose(path) for a, b in LINK.findall(re.sub(r"`[^`]*`", "", line))]


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.name)
def test_every_relative_link_and_anchor_resolves(document):
    broken = []
    for target in links(document):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path_part, _, anchor = target.partition("#")
        resolved = (document.parent / path_part).resolve() if path_part else document
        if not resolved.exists():
            broken.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target}: no such heading")
    assert not broken, f"{document.name}: {broken}"


def test_the_readme_stays_a_front_door():
    assert len((REPO / "README.md").read_text().splitlines()) <= 250


def configuration_rows() -> dict[str, str]:
    """README configuration table: each setting named in a row's first cell -> that row's default cell."""
    rows, lines = {}, prose(REPO / "README.md")
    start = lines.index("## Configuration")
    for line in lines[start:]:
        if line.startswith("## ") and line != "## Configuration":
            break
        cells = line.split("|")
        if len(cells) > 3 and "`" in cells[1]:
            for name in re.findall(r"`([^`]+)`", cells[1]):
                rows[name] = cells[2]
    return rows


def test_the_configuration_table_names_every_setting_with_the_codes_default():
    rows = configuration_rows()
    assert set(config.APP_SETTINGS) <= set(rows), set(config.APP_SETTINGS) - set(rows)
    defaults = {
        name: getattr(config, f"DEFAULT_{name}") for name in config.APP_SETTINGS if hasattr(config, f"DEFAULT_{name}")
    }
    defaults[config.TABLE_PREFIX] = config.DEFAULT_TABLE_PREFIX
    assert len(defaults) >= 15
    wrong = {name: (rows[name].strip(), value) for name, value in defaults.items() if f"`{value}`" not in rows[name]}
    assert not wrong, wrong
