"""The templates run on a fresh install: every input file an example workflow names is a sample the pack copies
into ComfyUI's input folder at start-up, once, never over a file that is already there."""

from __future__ import annotations

import json
import logging
import os

import pytest
from tests.support.by_path import module_at
from tests.support.golden import REPO

INPUT_WIDGETS = {"LoadImage": "image", "LoadAudio": "audio", "LoadVideo": "file"}


@pytest.fixture(scope="module")
def samples():
    """nodes/sample_inputs.py by path: it needs nothing of ComfyUI until it is asked for ComfyUI's input folder."""
    with module_at("anitalker_sample_inputs", REPO / "nodes" / "sample_inputs.py") as module:
        yield module


def test_every_input_an_example_workflow_names_is_a_shipped_sample(samples):
    named = set()
    for path in sorted((REPO / "workflows" / "api").glob("*.json")):
        for node in json.loads(path.read_text()).values():
            if node["class_type"] in INPUT_WIDGETS:
                named.add(node["inputs"][INPUT_WIDGETS[node["class_type"]]])
    assert named == set(samples.SAMPLES)
    credits = (REPO / "examples" / "README.md").read_text()
    for name, source in samples.SAMPLES.items():
        assert name.startswith("anitalker_") and (samples.EXAMPLES / source).is_file(), name
        assert f"`{source}`" in credits, f"examples/README.md does not say where {source} comes from"


def test_the_samples_are_copied_once_and_never_over_a_users_file(samples, tmp_path):
    (tmp_path / "anitalker_statue.wav").write_bytes(b"the user's own recording")
    copied = samples.copy_samples(tmp_path)
    assert sorted(copied) == sorted(set(samples.SAMPLES) - {"anitalker_statue.wav"})
    for name in copied:
        assert (tmp_path / name).read_bytes() == (samples.EXAMPLES / samples.SAMPLES[name]).read_bytes()
    assert (tmp_path / "anitalker_statue.wav").read_bytes() == b"the user's own recording"
    assert samples.copy_samples(tmp_path) == []  # the next start-up finds them all
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(samples.SAMPLES)  # no temporary files left


def test_a_file_that_appears_while_copying_is_kept(samples, tmp_path, monkeypatch):
    real_link = os.link

    def someone_else_first(src, dst):
        with open(dst, "wb") as f:
            f.write(b"written meanwhile")
        return real_link(src, dst)

    monkeypatch.setattr(samples.os, "link", someone_else_first)
    assert samples.copy_new(samples.EXAMPLES / "monalisa.jpg", tmp_path / "anitalker_monalisa.jpg") is False
    assert (tmp_path / "anitalker_monalisa.jpg").read_bytes() == b"written meanwhile"
    assert [p.name for p in tmp_path.iterdir()] == ["anitalker_monalisa.jpg"]


def test_no_input_folder_or_an_unwritable_one_costs_no_start_up(samples, tmp_path, monkeypatch, caplog):
    assert samples.copy_samples(tmp_path / "absent") == [] and not (tmp_path / "absent").exists()

    def disk_full(source, target):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(samples, "copy_new", disk_full)
    with caplog.at_level(logging.WARNING):
        assert samples.copy_samples(tmp_path) == []
    assert "could not copy the example inputs" in caplog.text and "No space left" in caplog.text
