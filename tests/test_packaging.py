"""The repository as a user meets it: a wheel whose `anitalker` command runs, a ComfyUI custom-node folder, and a
README whose first command runs on media in the clone (the Comfy Registry's side: test_registry.py)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
import tomllib
from tests.support.golden import REPO
from packaging.requirements import Requirement


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The wheel built from a copy of the repository and installed into an empty folder: (folder, wheel)."""
    root = tmp_path_factory.mktemp("package")
    source = root / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, source)
    for folder in ("anitalker_core", "nodes"):  # nodes/ beside it: it must stay out of the wheel
        shutil.copytree(REPO / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    built = subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(root / "dist"),
                            str(source)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    (wheel,) = (root / "dist").glob("anitalker_comfy-*.whl")
    target = root / "site"
    done = subprocess.run([*pip, "install", "--no-deps", "--no-index", "--target", str(target), str(wheel)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return target, wheel


def in_empty_folder(tmp_path: Path, site: Path, *command: str) -> subprocess.CompletedProcess:
    """Run ``command`` where nothing but the installed wheel (and this environment's dependencies) is found."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PYTHONPATH=str(site), HF_HUB_OFFLINE="1")
    return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def test_the_wheel_holds_the_whole_core_and_only_the_core(installed):
    site, wheel = installed
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    assert {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")} == {"anitalker_core"}
    shipped = {n for n in names if n.endswith(".py")}
    sources = {p.relative_to(REPO).as_posix() for p in (REPO / "anitalker_core").rglob("*.py")}
    assert shipped == sources  # every module and subpackage, nothing else (never `nodes`: ComfyUI has one)


def test_the_installed_command_runs_from_any_directory(installed, tmp_path):
    site, _ = installed
    script = site / "bin" / "anitalker"
    # main's return value is the exit status: 2 for a user error, with the message and no traceback
    missing = in_empty_folder(tmp_path, site, sys.executable, str(script), "animate",
                              "--portrait", str(REPO / "examples" / "monalisa.jpg"),
                              "--audio", str(REPO / "examples" / "statue.wav"), "--out", "x.mp4", "--offline")
    assert missing.returncode == 2 and missing.stderr.startswith("error: ") and "Traceback" not in missing.stderr
    assert "stage1.ckpt" in missing.stderr and str(tmp_path / "models" / "anitalker") in missing.stderr


def test_every_module_imports_from_the_installed_package_alone(installed, tmp_path):
    site, _ = installed
    script = ("import importlib, pkgutil, anitalker_core as core\n"
              "assert core.__file__.startswith(%r), core.__file__\n"
              "for m in pkgutil.walk_packages(core.__path__, 'anitalker_core.'):\n"
              "    if not m.name.endswith('__main__'):  # that one runs the command\n"
              "        importlib.import_module(m.name)\n"
              "print('ok', core.__version__)\n") % str(site)
    proc = in_empty_folder(tmp_path, site, sys.executable, "-c", script)
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert proc.returncode == 0 and proc.stdout.split() == ["ok", version], proc.stderr  # from the wheel's metadata


def requirements(lines) -> set[str]:
    return {str(Requirement(line)) for line in lines if line.strip() and not line.lstrip().startswith("#")}


def test_pip_install_pulls_what_requirements_txt_lists(installed):
    """`pip install .` (the command line) and `pip install -r requirements.txt` (ComfyUI) get the same packages."""
    _, wheel = installed
    with zipfile.ZipFile(wheel) as zf:
        metadata = zf.read(next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    declared = Parser().parsestr(metadata).get_all("Requires-Dist")
    core = {r for r in requirements(declared) if "extra ==" not in r}
    assert core == requirements((REPO / "requirements.txt").read_text().splitlines())


def test_the_custom_node_folder_survives_being_imported_as_a_lone_module():
    """pytest imports the root __init__.py as a plain module named __init__ when the folder's name is no
    Python name (a clone called anitalker-comfy); ComfyUI imports it as a package, which test_nodes covers."""
    proc = subprocess.run([sys.executable, "-c", "import __init__ as m; assert not hasattr(m, 'comfy_entrypoint')"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_readme_first_command_runs_on_media_inside_the_repository():
    from PIL import Image

    from anitalker_core.audio.waveform import load_audio_file

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
