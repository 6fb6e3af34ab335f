"""The deployment package: the files a zip deploy holds once .funcignore is applied (azd adds no
default exclusions when a .funcignore exists), walked over the working tree as it is after
`./dev setup` (virtual environments, node_modules and caches included, so leaving them out is tested)."""

import os
from pathlib import Path

import pathspec

REPO = Path(__file__).resolve().parent.parent.parent
MAX_PACKAGE_BYTES = 2 * 1024 * 1024  # the app's own files; dependencies are installed by the remote build


def package_files() -> list[str]:
    spec = pathspec.GitIgnoreSpec.from_lines((REPO / ".funcignore").read_text().splitlines())
    files = []
    for folder, directories, names in os.walk(REPO):
        relative = Path(folder).relative_to(REPO)
        directories[:] = [d for d in directories if not spec.match_file(f"{(relative / d).as_posix()}/")]
        files += [(relative / name).as_posix() for name in names if not spec.match_file((relative / name).as_posix())]
    return sorted(files)


def test_the_package_holds_the_app_and_every_function_folder():
    files = set(package_files())
    assert {"host.json", "requirements.txt", "openapi.json"} <= files
    for definition in REPO.glob("*/function.json"):
        folder = definition.parent.name
        assert {f"{folder}/function.json", f"{folder}/__init__.py"} <= files, folder
    assert {path.relative_to(REPO).as_posix() for path in (REPO / "shared").rglob("*.py")} <= files
    assert {path.relative_to(REPO).as_posix() for path in (REPO / "web").iterdir()} <= files  # the dashboard


def test_the_package_leaves_out_everything_that_is_not_the_app():
    files = package_files()
    top = {path.split("/")[0] for path in files}
    functions = {definition.parent.name for definition in REPO.glob("*/function.json")}
    assert top - functions == {"host.json", "requirements.txt", "openapi.json", "shared", "web"}, top - functions
    assert not [path for path in files if "__pycache__" in path or path.endswith(".pyc")]


def test_the_package_is_small():
    size = sum((REPO / path).stat().st_size for path in package_files())
    assert size < MAX_PACKAGE_BYTES, f"{size:,} bytes"
