"""The node help pages ComfyUI's help panel shows (web/docs/<NodeId>.md, web/docs/<NodeId>/zh.md) and the README's
node table: one for every node, their generated parts in step with the schemas, the hand-written parts written.
"""

from __future__ import annotations

import json
import re

import pytest
from tests.support.by_path import module_at
from tests.support.golden import REPO

HAN = re.compile(r"[\u4e00-\u9fff]")
ZH_SECTIONS = ("## 何时使用", "## 示例", "## 注意事项")
MAIN_WORKFLOW = "anitalker_audio_hubert"
"""Its nodes have Chinese pages too."""


@pytest.fixture(scope="module")
def build():
    with module_at("anitalker_docs_build", REPO / "docs" / "build.py") as module:
        yield module


@pytest.fixture(scope="module")
def node_ids(build) -> list[str]:
    return sorted(json.loads(build.SPECS.read_text(encoding="utf-8")))


def sections(text: str) -> dict[str, str]:
    """Level-2 heading -> the text under it, up to the next heading or generated block."""
    found = {}
    for match in re.finditer(r"^(## [^\n]+)\n(.*?)(?=^## |^<!-- |\Z)", text, re.S | re.M):
        found[match.group(1)] = match.group(2).strip()
    return found


def test_every_node_has_an_english_page_with_every_section_written(build, node_ids):
    for node_id in node_ids:
        path = build.page_path(node_id, "en")
        assert path.is_file(), f"{path.name} is missing: run python docs/build.py, then write its sections"
        text = path.read_text(encoding="utf-8")
        assert build.block_pattern("head").search(text) and build.block_pattern("reference").search(text)
        found = sections(text)
        for title in build.HAND_WRITTEN:
            body = found.get(title, "")
            assert body and body != "To be written.", f"{path.name}: write its '{title}' section"
        assert list(found).index(build.HAND_WRITTEN[-1]) < list(found).index("## Inputs")  # tables come last


def test_the_generated_parts_and_the_readme_table_are_in_step_with_the_schemas(build):
    for path, text in build.render_all().items():
        assert path.read_text(encoding="utf-8") == text, f"{path.relative_to(REPO)} is stale: run python docs/build.py"


def test_the_readme_table_lists_every_node_with_a_link_to_its_page(build, node_ids):
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| \[(.+?)\]\((web/docs/(\w+)\.md)\) \(`(\w+)`\)", readme, re.M)
    assert sorted(row[3] for row in rows) == node_ids
    english = json.loads((REPO / "locales" / "en" / "nodeDefs.json").read_text(encoding="utf-8"))
    for name, link, page, node_id in rows:
        assert page == node_id and name == english[node_id]["display_name"] and (REPO / link).is_file()


def test_the_main_workflows_nodes_have_chinese_pages(build):
    graph = json.loads((REPO / "workflows" / "api" / f"{MAIN_WORKFLOW}.json").read_text())
    pack_nodes = sorted({node["class_type"] for node in graph.values() if node["class_type"].startswith("AniTalker")})
    assert len(pack_nodes) >= 8
    for node_id in pack_nodes:
        path = build.page_path(node_id, "zh")
        assert path.is_file(), f"{node_id} has no Chinese page ({path.relative_to(REPO)})"
        found = sections(path.read_text(encoding="utf-8"))
        for title in ZH_SECTIONS:
            assert HAN.search(found.get(title, "")), f"{path.relative_to(REPO)}: write its '{title}' section"


def test_pictures_are_there_small_and_each_used(build):
    pages = sorted(build.PAGES.rglob("*.md"))
    used = {name for page in pages for name in re.findall(r"\]\(img/([^)]+)\)", page.read_text(encoding="utf-8"))}
    pictures = {p.name: p for p in (build.PAGES / "img").iterdir()}
    assert used and used == set(pictures), "every picture a page shows is in web/docs/img, and every one there is shown"
    for path in pictures.values():
        assert path.stat().st_size < 60_000, f"{path.name} is {path.stat().st_size // 1000} kB"
    # ComfyUI loads every .js under WEB_DIRECTORY as an extension: the docs folder holds none
    assert not list(build.PAGES.rglob("*.js"))


def test_a_new_node_gets_a_page_to_fill_in_and_a_page_without_its_blocks_is_refused(build):
    spec = {"display_name": "New", "category": "AniTalker/edit", "output_node": False,
            "inputs": [{"name": "motion", "type": "ANITALKER_MOTION", "widget": False},
                       {"name": "amount", "type": "FLOAT", "widget": True, "default": 0.5, "min": 0.0, "max": 1.0,
                        "optional": True}],
            "outputs": [["motion", "ANITALKER_MOTION"]]}
    text = {"display_name": "New", "description": "Does *new* things to <motion> | more.",
            "inputs": {"motion": {"name": "motion", "tooltip": "In."},
                       "amount": {"name": "amount (0 = none)", "tooltip": "How much."}},
            "outputs": {"0": {"name": "motion"}}}
    page = build.new_page("AniTalkerNew", spec, text)
    assert sections(page)["## When to use it"] == "To be written."  # fails the page test until written
    assert "Does \\*new\\* things to \\<motion\\> \\| more." in page  # schema text shown literally
    assert "| **amount (0 = none)** `amount` (optional) | `FLOAT` | `0.5` | `0.0` … `1.0` | How much. |" in page
    assert build.refreshed(page, "AniTalkerNew", spec, text, "en") == page
    with pytest.raises(ValueError, match="has no reference block"):
        build.refreshed(page.split(build.marker("reference"))[0], "AniTalkerNew", spec, text, "en")
