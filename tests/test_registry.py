"""Ready for the Comfy Registry: pyproject.toml holds what it requires, the package it builds holds what a user's
ComfyUI needs and not the tests or benchmarks, and a workflow publishes each new version.

The Registry builds the package the way ``comfy node pack`` (comfy-cli) does: the git-tracked files minus the
patterns of .comfyignore. comfy-cli is too heavy for the test requirements (about 340 MB with its dependencies), so
the selection is emulated here; .comfyignore holds only anchored paths, for which the emulation is exact.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess

import pytest
import tomllib
from tests.support.golden import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
PACKAGE_LIMIT = 3_000_000
"""Bytes, unpacked. Today's package is about 2.4 MB; with the tests' fixtures it was 20 MB."""


def test_pyproject_holds_what_the_registry_requires():
    project, comfy = PYPROJECT["project"], PYPROJECT["tool"]["comfy"]
    name = project["name"]  # the node id in the Registry's URLs and `comfy node install <name>`
    assert len(name) < 100 and re.fullmatch(r"[A-Za-z][A-Za-z0-9]*([-_.][A-Za-z0-9]+)*", name)
    assert "comfyui" not in name.lower()
    assert re.fullmatch(r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)", project["version"])  # semantic, X.Y.Z
    assert project["license"] == "Apache-2.0" and (REPO / project["license-files"][0]).is_file()
    assert project["description"] and project["urls"]["Repository"].startswith("https://github.com/")
    assert re.fullmatch(r"[a-z][a-z0-9-]*", comfy["PublisherId"]) and comfy["DisplayName"]
    assert comfy["requires-comfyui"].startswith(">=")


def test_the_icon_is_in_the_repository_and_at_most_800_by_400():
    """The Registry shows the image the Icon URL serves: this repository's file on its main branch."""
    from PIL import Image

    icon, repository = PYPROJECT["tool"]["comfy"]["Icon"], PYPROJECT["project"]["urls"]["Repository"]
    prefix = repository.replace("https://github.com/", "https://raw.githubusercontent.com/") + "/main/"
    assert icon.startswith(prefix)
    local = REPO / icon.removeprefix(prefix)
    assert local.is_file(), f"{local.relative_to(REPO)} is missing"
    with Image.open(local) as im:
        assert im.format in ("PNG", "JPEG", "GIF") and im.width <= 800 and im.height <= 400


def ignore_patterns() -> list[str]:
    lines = (REPO / ".comfyignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def package_files() -> list[str]:
    """What ``comfy node pack`` would zip once the working tree is committed: the files git tracks or would track
    (not ignored), minus .comfyignore's patterns."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout: the package is built from the files git tracks")
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode().split("\0")
    patterns = ignore_patterns()
    files = []
    for path in filter(None, listed):
        if not (REPO / path).is_file():  # deleted in the working tree
            continue
        if any(path == p.strip("/") or path.startswith(p.lstrip("/")) for p in patterns if p.endswith("/")):
            continue
        if any(path == p.lstrip("/") for p in patterns if not p.endswith("/")):
            continue
        files.append(path)
    return files


def test_comfyignore_holds_anchored_paths_only():
    """Paths from the repository root, which the emulation above matches exactly as gitwildmatch does."""
    for pattern in ignore_patterns():
        assert re.fullmatch(r"/[\w.-]+(/[\w.-]+)*/?", pattern), pattern


def test_the_package_holds_what_comfyui_needs_and_not_the_tests_or_benchmarks():
    files = package_files()
    tops = {path.split("/")[0] for path in files}
    assert not tops & {"tests", "bench", ".ci", ".github", "docs"}, sorted(tops)
    needed = ["__init__.py", "pyproject.toml", "requirements.txt", "LICENSE", "README.md", "web/anitalker.js",
              "locales/en/nodeDefs.json", "locales/zh/nodeDefs.json", "nodes/__init__.py", "nodes/sample_inputs.py",
              "anitalker_core/__init__.py", "anitalker_core/pipeline.py"]
    specs = json.loads((REPO / "workflows" / "specs" / "node_specs.json").read_text())
    needed += [f"web/docs/{node_id}.md" for node_id in specs]  # the help pages
    needed += [p.relative_to(REPO).as_posix() for p in (REPO / "example_workflows").iterdir()]  # the templates
    spec = importlib.util.spec_from_file_location("anitalker_samples_listed", REPO / "nodes" / "sample_inputs.py")
    samples = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(samples)
    needed += [f"examples/{name}" for name in samples.SAMPLES.values()]  # copied into ComfyUI's input folder
    missing = sorted(set(needed) - set(files))
    assert not missing, f"the package would lack {missing}"
    size = sum((REPO / path).stat().st_size for path in files)
    assert size < PACKAGE_LIMIT, f"the package would hold {size / 1e6:.1f} MB"


def test_a_new_version_on_main_is_published_with_the_registry_token():
    import yaml

    workflow = yaml.safe_load((REPO / ".github" / "workflows" / "publish.yml").read_text())
    trigger = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert trigger["push"]["branches"] == ["main"] and trigger["push"]["paths"] == ["pyproject.toml"]
    publish = workflow["jobs"]["publish"]
    assert "needs.version.outputs.changed == 'true'" in publish["if"]  # only when the version changed
    (step,) = [s for s in publish["steps"] if s.get("uses", "").startswith("Comfy-Org/publish-node-action@")]
    assert step["with"]["personal_access_token"] == "${{ secrets.REGISTRY_ACCESS_TOKEN }}"
    compare = workflow["jobs"]["version"]["steps"][-1]["run"]
    assert 'project"]["version"]' in compare and "github.event.before" in json.dumps(workflow["jobs"]["version"])
