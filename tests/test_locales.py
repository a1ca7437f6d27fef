"""The nodes' text in English and Chinese, in the locale files ComfyUI serves to its frontend (GET /i18n).

English is the schemas' own text (locales/en/nodeDefs.json is their snapshot, refreshed by
``python -m tests.support.node_locale``); Chinese is written by hand. A node, input or output added without both
fails here, and so does a file ComfyUI's loader would drop.
"""

from __future__ import annotations

import json
import re

import pytest
from tests.support.node_locale import ENGLISH, LOCALES, english, render

CHINESE = LOCALES / "zh" / "nodeDefs.json"
HAN = re.compile(r"[\u4e00-\u9fff]")
LOADED = ("main.json", "nodeDefs.json", "commands.json", "settings.json")
"""The files ComfyUI 0.3.64's custom_node_manager reads from each locales/<lang>/ folder."""


@pytest.fixture(scope="module")
def schemas() -> dict:
    return english()


@pytest.fixture(scope="module")
def chinese() -> dict:
    return json.loads(CHINESE.read_text(encoding="utf-8"))


def test_the_english_locale_is_the_schemas_text(schemas):
    assert ENGLISH.read_text(encoding="utf-8") == render(schemas), (
        "locales/en/nodeDefs.json is stale: run python -m tests.support.node_locale, then python docs/build.py")


def test_every_node_input_and_output_has_english_text(schemas):
    for node_id, node in schemas.items():
        assert node["display_name"] and node["description"], node_id
        for name, text in node["inputs"].items():
            assert text["name"] and text["tooltip"], f"{node_id}.{name} has no tooltip in its schema"
        assert all(text["name"] for text in node["outputs"].values()), node_id


def test_every_node_input_and_output_has_chinese_text(schemas, chinese):
    """The same nodes, inputs and outputs as the schemas, none missing and none left over, each in Chinese."""
    assert sorted(chinese) == sorted(schemas), "locales/zh/nodeDefs.json lacks or has extra nodes"
    for node_id, node in schemas.items():
        zh = chinese[node_id]
        assert set(zh) == {"display_name", "description", "inputs", "outputs"}, node_id
        assert HAN.search(zh["display_name"]) and HAN.search(zh["description"]), node_id
        assert list(zh["inputs"]) == list(node["inputs"]), f"{node_id}: inputs differ from the schema's"
        for name, text in zh["inputs"].items():
            assert set(text) == {"name", "tooltip"} and text["name"].strip(), (node_id, name)
            assert HAN.search(text["tooltip"]), f"{node_id}.{name}: the tooltip is not in Chinese"
        assert list(zh["outputs"]) == list(node["outputs"]), f"{node_id}: outputs differ from the schema's"
        for index, text in zh["outputs"].items():
            assert text["name"].strip(), (node_id, index)
            assert ("tooltip" in text) == ("tooltip" in node["outputs"][index]), (node_id, index)
            assert "tooltip" not in text or HAN.search(text["tooltip"]), (node_id, index)


def test_translated_names_keep_the_hints_of_the_english_labels(schemas, chinese):
    """A label that says what 0 means ("batch_size (0 = auto)") says it in Chinese too: the locale's name replaces
    the label on the widget."""
    for node_id, node in schemas.items():
        for name, text in node["inputs"].items():
            if "(0 = " in text["name"]:
                assert "0 =" in chinese[node_id]["inputs"][name]["name"], (node_id, name)


def test_the_locale_folders_hold_what_comfyui_loads():
    """ComfyUI reads locales/<lang>/{main,nodeDefs,commands,settings}.json and drops a file that is not a JSON
    object (it logs an error): every file here is one of those, a valid object of strings and objects."""

    def strings_only(value) -> bool:
        if isinstance(value, dict):
            return all(isinstance(k, str) and strings_only(v) for k, v in value.items())
        return isinstance(value, str)

    langs = sorted(p.name for p in LOCALES.iterdir())
    assert langs == ["en", "zh"]
    for lang in langs:
        files = sorted(p.name for p in (LOCALES / lang).iterdir())
        assert files and set(files) <= set(LOADED), (lang, files)
        for name in files:
            data = json.loads((LOCALES / lang / name).read_text(encoding="utf-8"))
            assert isinstance(data, dict) and strings_only(data), (lang, name)
