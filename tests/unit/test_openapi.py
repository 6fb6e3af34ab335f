"""openapi.json documents exactly the HTTP routes the function folders declare, with their methods
and who may call them (function key or anonymous)."""
import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
DOCUMENT = json.loads((REPO / "openapi.json").read_text())
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def declared_routes() -> dict[tuple[str, str], str]:
    """(path under /api, method) -> authLevel, from every function.json's httpTrigger."""
    routes = {}
    for definition in REPO.glob("*/function.json"):
        for binding in json.loads(definition.read_text())["bindings"]:
            if binding["type"] != "httpTrigger":
                continue
            route = "/" + binding.get("route", definition.parent.name)
            paths = [route]
            if catch_all := re.search(r"/\{\*(\w+)\}$", route):  # also matches nothing: documented as two paths
                paths = [route[:catch_all.start()], route.replace("{*", "{")]
            for path in paths:
                for method in binding.get("methods", ["get", "post"]):
                    routes[(path, method.lower())] = binding.get("authLevel", "function")
    return routes


def documented_routes() -> dict[tuple[str, str], list]:
    return {(path, method): operation.get("security", DOCUMENT["security"])
            for path, item in DOCUMENT["paths"].items() for method, operation in item.items() if method in HTTP_METHODS}


def test_the_document_is_openapi_3_1_served_under_the_route_prefix():
    host = json.loads((REPO / "host.json").read_text())
    assert DOCUMENT["openapi"] == "3.1.0"
    assert DOCUMENT["servers"] == [{"url": "/" + host["extensions"]["http"]["routePrefix"]}]


def test_every_route_is_documented_and_every_documented_route_exists():
    assert set(documented_routes()) == set(declared_routes())


def test_anonymous_routes_and_only_those_need_no_key():
    declared = declared_routes()
    for route, security in documented_routes().items():
        assert (security == []) == (declared[route] == "anonymous"), route


def test_path_parameters_match_the_route_templates():
    for path, item in DOCUMENT["paths"].items():
        names = set(re.findall(r"\{(\w+)\}", path))
        for method, operation in item.items():
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert declared == names, f"{method} {path}"


def test_the_dashboards_files_are_the_documented_ones():
    [asset] = [p for p in DOCUMENT["paths"]["/dashboard/{asset}"]["get"]["parameters"] if p["name"] == "asset"]
    assert sorted(asset["schema"]["enum"]) == sorted(p.name for p in (REPO / "web").iterdir())
