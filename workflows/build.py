"""Writes the example workflows in both ComfyUI formats from one definition each.

    python workflows/build.py        # regenerates workflows/api/*.json, workflows/ui/*.json, example_workflows/*.json

API format (for scripts and the end-to-end test) maps node ids to {"class_type", "inputs"}; UI format is the
graph the editor opens (also served as templates from example_workflows/, named by their titles). The
definitions live in definitions.py, the placement of their nodes in layout.py; this file only puts them together
and writes. (No JSON sits directly in workflows/: ComfyUI would list it as a template.)

Everything is built in memory first; then every file is written beside its target and renamed into place, so
a failure leaves all files as they were.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def sibling(name: str):
    """workflows/<name>.py as a module. workflows/ is not a package (the command runs it as a script and the tests
    load this file by path), so siblings are loaded by path too, each once per process."""
    module_name = f"anitalker_workflow_{name}"
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, HERE / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module  # dataclasses look their module up while a class is made
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[module_name]
            raise
    return sys.modules[module_name]


definitions = sibling("definitions")
layout = sibling("layout")


def dump(data: dict) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def render_all() -> dict[Path, str]:
    """Every generated file and its text, built in memory; nothing is written here."""
    files: dict[Path, str] = {}
    for name, wf in definitions.WORKFLOWS.items():
        ui = dump(layout.to_ui(wf, definitions.SPECS, definitions.MODELS))
        files[ROOT / "workflows" / "api" / f"{name}.json"] = dump(layout.to_api(wf.graph))
        files[ROOT / "workflows" / "ui" / f"{name}.json"] = ui
        files[ROOT / "example_workflows" / f"{wf.title}.json"] = ui
    return files


def write_all(files: dict[Path, str]) -> None:
    """All files or none: each goes to a temporary file beside its target; only when every one is written are
    they renamed into place (a rename within one folder replaces the file in one step)."""
    staged: list[tuple[Path, Path]] = []
    try:
        for path, text in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
            staged.append((Path(tmp), path))
            os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o644)  # mkstemp makes it private
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
                f.write(text)
    except BaseException:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        raise
    for tmp, path in staged:
        os.replace(tmp, path)


def main() -> None:
    write_all(render_all())


if __name__ == "__main__":
    main()
