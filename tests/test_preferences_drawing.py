"""The sort tree drawn as SVG (issue 29, item 12): each node's column, depth, colour, clips and
thumbnail, its edge to its parent; and the drawing as a figure of the preferences report."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd

from fdt.preferences.drawing import PlacedNode, clips_label, place_nodes, tree_svg
from fdt.preferences.report import TREE_FIGURE, write_section
from fdt.preferences.tree import SortTree, sort_clips
from tests.test_preferences import order_labeller

SVG = "{http://www.w3.org/2000/svg}"
BALANCED = [3, 1, 5, 0, 2, 4, 6]  # node i holds clip BALANCED[i]


def balanced_tree() -> SortTree:
    tree, _ = sort_clips(BALANCED, order_labeller({c: float(c) for c in BALANCED}))
    return tree


def drawn_nodes(svg: str) -> dict[str, dict[str, str]]:
    root = ET.fromstring(svg)
    return {g.get("data-clips"): {"node": g.get("data-node"), "depth": g.get("data-depth"),
                                  "colour": g.get("data-colour"),
                                  "fill": g.find(f"{SVG}rect").get("fill"),
                                  "x": g.find(f"{SVG}rect").get("x"),
                                  "y": g.find(f"{SVG}rect").get("y")}
            for g in root.iter(f"{SVG}g")}


def test_nodes_sit_in_their_in_order_column_and_depth_row() -> None:
    tree = balanced_tree()
    # 3 the black root; 1 and 5 black (recoloured when 0 arrived); 0, 2, 4, 6 red leaves
    assert place_nodes(tree) == [PlacedNode(3, 0, 2, 1), PlacedNode(1, 1, 1, 0),
                                 PlacedNode(4, 2, 2, 1), PlacedNode(0, 3, 0, None),
                                 PlacedNode(5, 4, 2, 2), PlacedNode(2, 5, 1, 0),
                                 PlacedNode(6, 6, 2, 2)]
    drawn = drawn_nodes(tree_svg(tree))
    assert drawn == {
        "0": {"node": "3", "depth": "2", "colour": "red", "fill": "#aa0000", "x": "14", "y": "150"},
        "1": {"node": "1", "depth": "1", "colour": "black", "fill": "#111111", "x": "114", "y": "80"},
        "2": {"node": "4", "depth": "2", "colour": "red", "fill": "#aa0000", "x": "214", "y": "150"},
        "3": {"node": "0", "depth": "0", "colour": "black", "fill": "#111111", "x": "314", "y": "10"},
        "4": {"node": "5", "depth": "2", "colour": "red", "fill": "#aa0000", "x": "414", "y": "150"},
        "5": {"node": "2", "depth": "1", "colour": "black", "fill": "#111111", "x": "514", "y": "80"},
        "6": {"node": "6", "depth": "2", "colour": "red", "fill": "#aa0000", "x": "614", "y": "150"}}
    root = ET.fromstring(tree_svg(tree))
    # 7 columns of 100 px and 3 rows of 70 px, 10 px margins and a 20 px caption line
    assert (root.get("width"), root.get("height")) == ("720", "250")
    # six edges, each from the bottom of a parent's box (50 px high) to the top of its child's
    edges = sorted((e.get("x1"), e.get("y1"), e.get("x2"), e.get("y2")) for e in root.iter(f"{SVG}line"))
    assert edges == sorted([("360", "60", "160", "80"), ("360", "60", "560", "80"),
                            ("160", "130", "60", "150"), ("160", "130", "260", "150"),
                            ("560", "130", "460", "150"), ("560", "130", "660", "150")])


def test_equal_clips_share_a_box_and_thumbnails_show_the_representative() -> None:
    tree = SortTree()
    tree.insert(7, order_labeller({7: 1.0}))
    tree.insert(9, order_labeller({7: 1.0, 9: 1.0}))  # equal: bound to node 0
    svg = tree_svg(tree, lambda clip: f"/pref-media/{clip}.gif")
    root = ET.fromstring(svg)
    assert [i.get("href") for i in root.iter(f"{SVG}image")] == ["/pref-media/7.gif"]
    assert "clips 7 = 9" in [t.text for t in root.iter(f"{SVG}text")]
    assert clips_label(list(range(6))) == "clips 0 = 1 = 2 = 3 (+2)"
    assert ET.fromstring(tree_svg(SortTree())).find(f"{SVG}g") is None  # empty: no node


def test_the_report_section_draws_the_sort_tree(tmp_path: Path) -> None:
    comparisons = tmp_path / "comparisons" / "seed7"
    comparisons.mkdir(parents=True)
    (comparisons / "tree.json").write_text(json.dumps(balanced_tree().to_dict()))
    run = {"game": "Breakout", "budget": 15, "seed": 7,
           "comparisons": str(comparisons / "comparisons.json")}
    table = pd.DataFrame([{"game": "Breakout", "budget": 15, "comparisons": 15.0,
                           "heldout_accuracy": 0.5, "heldout_rank_accuracy": 0.5,
                           "dt_pref_return": 1.0, "dt_pref_return_std": 0.0, "dt_return": float("nan")}])
    settings = {"budget": 15, "clips": 7, "clip_length": 4, "source": "synthetic", "noise": 0.0,
                "mode": "tree", "reward_model": {"loss": "ordinal", "ensemble": 1}}
    out = tmp_path / "section"
    write_section(out, table, settings, [run])
    section = json.loads((out / "section.json").read_text())
    figure = section["figures"][1]
    assert figure["png"] == TREE_FIGURE and figure["title"] == (
        "The sort tree of Breakout, 15 comparisons, seed 7")
    assert figure["caption"].startswith("7 clips in 7 nodes, depth 3, 0 set aside.")
    assert len(drawn_nodes((out / TREE_FIGURE).read_text())) == 7
    pairs_mode = tmp_path / "pairs"
    write_section(pairs_mode, table, settings, [{**run, "comparisons": str(tmp_path / "x.json")}])
    assert len(json.loads((pairs_mode / "section.json").read_text())["figures"]) == 1
