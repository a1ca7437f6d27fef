"""The house: the core's imports run one way, down its layers, with no circle anywhere (lazy and type-checking
imports count too: they are the same knot, tied later), and the nodes reach ComfyUI through its public API only."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

from tests.support.golden import REPO

CORE = REPO / "anitalker_core"

LAYERS = (
    ("errors", "types", "memory"),
    ("device_policy",),
    ("weights",),
    ("audio", "image", "diffusion", "motion"),
    ("models",),
    ("video",),
    ("stages",),
    ("options",),
    ("pipeline",),
    ("app", "__main__"),
)
"""From the bottom up: what each module needs lies in its own layer or below. Weight files sit under everything that
reads them; the networks (models) compose speech features and the DDIM loop; video renders with the networks;
stages time and run video, pipeline strings stages together, and the command (app) comes last."""


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """The core modules ``path`` imports, wherever in the file (top, inside functions, under TYPE_CHECKING)."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                names = [target] if node.module else [f"{target}.{a.name}" for a in node.names]
            else:
                names = [node.module or ""]
            found |= {n for n in names if n.startswith("anitalker_core")}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("anitalker_core")}
    return found


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in CORE.rglob("*.py")}
    edges: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        for target in imports(path):
            while target not in modules and "." in target:  # "from .x import name": the module is x
                target = target.rsplit(".", 1)[0]
            if target in modules and target != name:
                edges[name].add(target)
    return edges


def layer_of(module: str) -> int:
    top = module.split(".")[1] if "." in module else ""
    return next(i for i, layer in enumerate(LAYERS) if top in layer) if top else 0


def test_core_imports_only_run_down_its_layers():
    upward = sorted(f"{a} -> {b}" for a, targets in graph().items() for b in targets if layer_of(b) > layer_of(a))
    assert not upward, upward


def test_every_core_module_sits_in_a_layer():
    tops = {p.relative_to(CORE).parts[0].removesuffix(".py") for p in CORE.glob("*") if p.name != "__pycache__"}
    placed = {name for layer in LAYERS for name in layer}
    assert tops - {"__init__"} <= placed, tops - placed - {"__init__"}


def test_no_import_circle_in_the_core():
    edges = graph()
    state: dict[str, int] = {}
    circles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                circles.append(path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for start in sorted(edges):
        if start not in state:
            visit(start, [start])
    assert not circles, circles


def test_nodes_reach_comfyui_through_its_public_api():
    private = []
    for path in sorted((REPO / "nodes").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else
                     [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            private += [f"{path.name}: {n}" for n in names
                        if n.startswith("comfy_api") and any(part.startswith("_") for part in n.split("."))]
    assert not private, private
