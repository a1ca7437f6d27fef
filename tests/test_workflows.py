"""The example workflows are in sync with their definition and use only existing node ids."""

from __future__ import annotations

import importlib.util
import json

from golden import REPO


def build_module():
    spec = importlib.util.spec_from_file_location("wf_build", REPO / "workflows" / "build.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_committed_workflows_match_their_definition_and_templates():
    build = build_module()
    for name, graph in build.WORKFLOWS.items():
        api = json.loads((REPO / "workflows" / "api" / f"{name}.json").read_text())
        ui = json.loads((REPO / "workflows" / "ui" / f"{name}.json").read_text())
        assert api == build.to_api(graph)
        assert ui == build.to_ui(graph)
        assert json.loads((REPO / "example_workflows" / f"{name}.json").read_text()) == ui
        for node in api.values():
            assert node["class_type"] in build.CORE or node["class_type"].startswith("AniTalker")
        # every link in the UI graph points at an existing node and output slot
        ids = {n["id"]: n for n in ui["nodes"]}
        for _, src, slot, dst, _, _ in ui["links"]:
            assert src in ids and dst in ids and slot < len(ids[src]["outputs"])
