"""The pack's node text in English, in the format of ComfyUI's locale files, read from the registered V3 schemas.

    python -m tests.support.node_locale       # rewrites locales/en/nodeDefs.json after a schema's text changed

The schemas are the one source of the English text (display names, descriptions, input labels and tooltips, output
names); locales/en/nodeDefs.json is their snapshot, which ComfyUI serves (GET /i18n) and the help pages' tables are
built from (docs/build.py, standard library only). test_locales.py fails while it is stale, and while
locales/zh/nodeDefs.json, written by hand, lacks a node, input or output the schemas have.

Format (the frontend's own locales/<lang>/nodeDefs.json): node id -> {"display_name", "description", "inputs":
{input id: {"name", "tooltip"}}, "outputs": {"<index>": {"name", "tooltip"?}}}. An input's name is its label where the
schema gives one ("batch_size (0 = auto)"): a locale's name replaces the label on the widget.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.golden import REPO

LOCALES = REPO / "locales"
ENGLISH = LOCALES / "en" / "nodeDefs.json"


def node_text(schema) -> dict:
    inputs = {item.id: {"name": item.display_name or item.id, "tooltip": item.tooltip} for item in schema.inputs}
    outputs = {}
    for index, out in enumerate(schema.outputs):
        outputs[str(index)] = {"name": out.display_name or out.get_io_type()}
        if getattr(out, "tooltip", None):
            outputs[str(index)]["tooltip"] = out.tooltip
    return {"display_name": schema.display_name, "description": schema.description, "inputs": inputs,
            "outputs": outputs}


def english(root: Path = REPO) -> dict[str, dict]:
    """{node id: its text} of the pack in ``root``, in node id order."""
    from tests.support.comfy_pack import load_pack
    from tests.support.node_specs import fresh_install

    nodes = load_pack(root).nodes.NODES
    with fresh_install():
        schemas = [cls.define_schema() for cls in nodes]
    return {schema.node_id: node_text(schema) for schema in sorted(schemas, key=lambda s: s.node_id)}


def render(text: dict) -> str:
    return json.dumps(text, indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    ENGLISH.parent.mkdir(parents=True, exist_ok=True)
    ENGLISH.write_text(render(english()), encoding="utf-8")
    print(f"wrote {ENGLISH}")
