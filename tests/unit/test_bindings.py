"""Every function's trigger parameter is annotated with a type the Python worker's converter for
that binding accepts, as the real host checks at load (the local host does not): a tidy-up of
annotations (List[...] -> list[...]) must not make the Functions host refuse a function."""

import importlib
import inspect
import json
from pathlib import Path

import pytest
from azure.functions import meta

REPO = Path(__file__).resolve().parent.parent.parent
FOLDERS = sorted(path.parent for path in REPO.glob("*/function.json"))


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda folder: folder.name)
def test_the_trigger_annotation_is_one_the_worker_accepts(folder):
    trigger = next(
        binding
        for binding in json.loads((folder / "function.json").read_text())["bindings"]
        if binding["type"].endswith("Trigger")
    )
    annotation = inspect.signature(importlib.import_module(folder.name).main).parameters[trigger["name"]].annotation
    converter = meta._ConverterMeta._bindings[trigger["type"]]  # the worker's registry (azure.functions.meta)
    if annotation is inspect.Parameter.empty or trigger["type"] in ("orchestrationTrigger", "activityTrigger"):
        return  # durable triggers are bound by the durable library, by name
    assert converter.check_input_type_annotation(annotation), f"{folder.name}: {annotation!r}"
