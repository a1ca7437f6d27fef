"""The repository as a user meets it: a pip-installable package with an `anitalker` command, a ComfyUI
custom-node folder, and a README whose first command runs on media that ships with the clone."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from golden import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
SCRIPT = shutil.which("anitalker", path=str(Path(sys.executable).parent))


def requirements(lines) -> set[str]:
    return {str(Requirement(line)) for line in lines if line.strip() and not line.lstrip().startswith("#")}


def test_pyproject_declares_the_core_the_command_and_the_same_dependencies_as_requirements_txt():
    assert PYPROJECT["build-system"]["build-backend"] == "setuptools.build_meta"
    assert PYPROJECT["tool"]["setuptools"]["packages"] == ["anitalker_core"]  # never `nodes`: ComfyUI has one
    assert PYPROJECT["project"]["scripts"] == {"anitalker": "anitalker_core.cli:main"}
    assert requirements(PYPROJECT["project"]["dependencies"]) == requirements(
        (REPO / "requirements.txt").read_text().splitlines())


def test_comfy_registry_section_stays_valid():
    project, comfy = PYPROJECT["project"], PYPROJECT["tool"]["comfy"]
    assert re.fullmatch(r"[A-Za-z][A-Za-z0-9._-]{0,98}", project["name"]) and "comfyui" not in project["name"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", project["version"])
    assert project["license"] == "Apache-2.0" and (REPO / project["license-files"][0]).is_file()
    assert project["urls"]["Repository"].startswith("https://")
    assert comfy["PublisherId"] and comfy["DisplayName"] and "requires-comfyui" in comfy


def test_the_custom_node_folder_survives_being_imported_as_a_lone_module():
    """pytest imports the root __init__.py as a plain module named __init__ when the folder's name is no
    Python name (a clone called anitalker-comfy); ComfyUI imports it as a package, which test_nodes covers."""
    proc = subprocess.run([sys.executable, "-c", "import __init__ as m; assert not hasattr(m, 'comfy_entrypoint')"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def _setuptools_can_build() -> bool:
    try:
        import setuptools
    except ImportError:
        return False
    return int(setuptools.__version__.split(".")[0]) >= 77


@pytest.mark.skipif(not _setuptools_can_build(), reason="needs setuptools>=77 (requirements-test.txt) to build offline")
def test_the_wheel_holds_the_core_and_the_console_script_and_nothing_else(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, source)
    shutil.copytree(REPO / "anitalker_core", source / "anitalker_core", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "nodes", source / "nodes", ignore=shutil.ignore_patterns("__pycache__"))
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                           "-q", "-w", str(tmp_path / "dist"), str(source)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    (wheel,) = (tmp_path / "dist").glob("anitalker_comfy-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        entry_points = zf.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")} == {"anitalker_core"}
    assert "anitalker_core/cli.py" in names and "anitalker_core/__main__.py" in names
    assert "anitalker = anitalker_core.cli:main" in entry_points


@pytest.mark.skipif(SCRIPT is None, reason="the package is not installed in this environment (.ci/run installs it)")
def test_the_installed_command_runs_from_any_directory(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

    def anitalker(*args):
        return subprocess.run([SCRIPT, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)

    top = anitalker("--help")
    assert top.returncode == 0 and top.stdout.startswith("usage: anitalker") and "animate" in top.stdout
    animate = anitalker("animate", "--help")
    assert animate.returncode == 0 and "--seed" in animate.stdout and "start noise" in animate.stdout
    # main's return value is the exit status: 2 for a user error, with the message and no traceback
    missing = anitalker("animate", "--portrait", str(REPO / "examples" / "monalisa.jpg"),
                        "--audio", str(REPO / "examples" / "statue.wav"), "--out", "x.mp4", "--offline")
    assert missing.returncode == 2 and missing.stderr.startswith("error: AniTalker weights are missing")
    assert str(tmp_path / "models" / "anitalker") in missing.stderr  # ./models/anitalker of where it ran


def test_readme_first_command_runs_on_media_inside_the_repository():
    from anitalker_core.audio_io import load_audio_file
    from PIL import Image

    readme = (REPO / "README.md").read_text()
    first = re.search(r"```bash\n(.*?)```", readme, re.S).group(1)
    command = next(line for line in first.splitlines() if "animate" in line and not line.startswith("#"))
    assert "anitalker animate" in command and "../" not in command
    portrait = REPO / re.search(r"--portrait (\S+)", command).group(1)
    audio = REPO / re.search(r"--audio (\S+)", command).group(1)
    for path in (portrait, audio):
        assert path.is_file() and path.stat().st_size < 1_000_000, path
    with Image.open(portrait) as im:
        assert min(im.size) >= 256
    waveform, rate = load_audio_file(audio)
    assert waveform.shape[-1] / rate > 5  # a real sentence of speech
    credit = (portrait.parent / "README.md").read_text()
    assert "X-LANCE/AniTalker" in credit and "Apache" in credit and "public domain" in credit
