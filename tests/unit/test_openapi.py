"""openapi.json documents exactly the HTTP routes the function folders declare, with their methods
and who may call them (read, ingest, operate access, or anyone)."""

import json
import re
from pathlib import Path

from shared.access import APP_ROLES, Access

REPO = Path(__file__).resolve().parent.parent.parent
DOCUMENT = json.loads((REPO / "openapi.json").read_text())
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def declared_routes() -> dict[tuple[str, str], str]:
    """(path under /api, method) -> the access its function folder checks (shared.access.Access), or
    "anonymous"; every HTTP function is anonymous to the host and checks its access itself."""
    routes = {}
    for definition in REPO.glob("*/function.json"):
        for binding in json.loads(definition.read_text())["bindings"]:
            if binding["type"] != "httpTrigger":
                continue
            assert binding["authLevel"] == "anonymous", definition  # the app checks access (docs/access.md)
            source = (definition.parent / "__init__.py").read_text()
            if reused := re.search(r"^from ([A-Z]\w*) import \w+$", source, re.MULTILINE):  # another folder's glue
                source = (REPO / reused[1] / "__init__.py").read_text()
            checked = set(re.findall(r"Access\.([A-Z]+)", source))
            assert len(checked) <= 1, definition
            folder_access = checked.pop().lower() if checked else "anonymous"
            route = "/" + binding.get("route", definition.parent.name)
            paths = [route]
            if catch_all := re.search(r"/\{\*(\w+)\}$", route):  # also matches nothing: documented as two paths
                paths = [route[: catch_all.start()], route.replace("{*", "{")]
            for path in paths:
                for method in binding.get("methods", ["get", "post"]):
                    # OPTIONS is Event Grid's handshake: answered to anyone, it reads and writes nothing
                    routes[(path, method.lower())] = "anonymous" if method == "options" else folder_access
    return routes


def documented_routes() -> dict[tuple[str, str], list]:
    return {
        (path, method): operation.get("security", DOCUMENT.get("security", []))
        for path, item in DOCUMENT["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS
    }


def test_the_document_is_openapi_3_1_served_under_the_route_prefix():
    host = json.loads((REPO / "host.json").read_text())
    assert DOCUMENT["openapi"] == "3.1.0"
    assert DOCUMENT["servers"] == [{"url": "/" + host["extensions"]["http"]["routePrefix"]}]


def test_every_route_is_documented_and_every_documented_route_exists():
    assert set(documented_routes()) == set(declared_routes())


def test_each_route_documents_the_access_its_function_checks():
    declared = declared_routes()
    for route, security in documented_routes().items():
        if declared[route] == "anonymous":
            assert security == [], route
            continue
        kind = Access(declared[route])
        assert security == [
            {"accessKey": [kind.value]},
            {"accessKeyQuery": [kind.value]},
            {"entraId": [APP_ROLES[kind]]},
        ], route
        assert {"401", "403"} <= set(DOCUMENT["paths"][route[0]][route[1]]["responses"]), route


def test_path_parameters_match_the_route_templates():
    for path, item in DOCUMENT["paths"].items():
        names = set(re.findall(r"\{(\w+)\}", path))
        for method, operation in item.items():
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert declared == names, f"{method} {path}"


def test_the_dashboards_files_are_the_documented_ones():
    [asset] = [p for p in DOCUMENT["paths"]["/dashboard/{asset}"]["get"]["parameters"] if p["name"] == "asset"]
    assert sorted(asset["schema"]["enum"]) == sorted(p.name for p in (REPO / "web").iterdir())
