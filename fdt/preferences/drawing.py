"""The sort tree drawn as SVG (rl-teacher-atari's app draws its tree; ours too, and the report).

Each node is a box in its red-black colour, in the column of its in-order position (worst clips
left, best right) and the row of its depth, joined to its parent by a line. A box names the node,
its clips (the first is the one shown in comparisons, the others are bound to it as equal) and,
where a thumbnail address is given, shows the representative clip's image. Plain SVG: the app
inlines it in its page and the report links the file, with no script.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass

from fdt.preferences.tree import SortTree

COLUMN = 100  # px per in-order position
ROW_WITH_IMAGE, ROW_TEXT_ONLY = 140, 70  # px per depth level
BOX_WIDTH = 92
THUMBNAIL = 64
RED, BLACK = "#aa0000", "#111111"  # rl-teacher-atari's node colours
MARGIN = 10


@dataclass(frozen=True)
class PlacedNode:
    """Where a node is drawn: its column (in-order position), row (depth) and parent's node."""

    index: int
    column: int
    depth: int
    parent: int | None


def place_nodes(tree: SortTree) -> list[PlacedNode]:
    """Every node's column and depth, in in-order (worst first)."""
    order = tree.in_order()
    depths: dict[int, int] = {}
    for index in order:
        parent = tree.nodes[index].parent
        depth, up = 0, parent
        while up is not None:
            depth, up = depth + 1, tree.nodes[up].parent
        depths[index] = depth
    return [PlacedNode(index, column, depths[index], tree.nodes[index].parent)
            for column, index in enumerate(order)]


def clips_label(clips: list[int], shown: int = 4) -> str:
    """"clip 3" for one clip; "clips 3 = 7 = 9" for an equal class, cut after `shown`."""
    if len(clips) == 1:
        return f"clip {clips[0]}"
    names = " = ".join(str(c) for c in clips[:shown])
    more = f" (+{len(clips) - shown})" if len(clips) > shown else ""
    return f"clips {names}{more}"


def tree_svg(tree: SortTree, thumbnail: Callable[[int], str] | None = None) -> str:
    """The tree as one <svg> element; `thumbnail(clip)` gives an image address for each node's
    representative clip (none: the boxes show ids only)."""
    placed = place_nodes(tree)
    row = ROW_WITH_IMAGE if thumbnail is not None else ROW_TEXT_ONLY
    box_height = row - 20
    depth = max((p.depth for p in placed), default=-1) + 1
    width = max(len(placed), 1) * COLUMN + 2 * MARGIN
    height = max(depth, 1) * row + 2 * MARGIN + 20
    centre = {p.index: (MARGIN + p.column * COLUMN + COLUMN // 2, MARGIN + p.depth * row)
              for p in placed}
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' xmlns:xlink='http://www.w3.org/1999/xlink' "
             f"id='sort-tree' class='sort-tree' width='{width}' height='{height}' "
             f"viewBox='0 0 {width} {height}' font-family='sans-serif' font-size='11'>",
             f"<title>Sort tree: {tree.clip_count} clips in {tree.size} nodes, depth "
             f"{tree.depth()}, {len(tree.set_aside)} set aside</title>"]
    for p in placed:  # edges first, so the boxes cover their ends
        if p.parent is not None:
            (x, y), (px, py) = centre[p.index], centre[p.parent]
            parts.append(f"<line class='edge' x1='{px}' y1='{py + box_height}' x2='{x}' y2='{y}' "
                         "stroke='grey' stroke-width='3'/>")
    for p in placed:
        node = tree.nodes[p.index]
        x, y = centre[p.index]
        colour = RED if node.red else BLACK
        parts.append(f"<g class='node' id='node-{p.index}' data-node='{p.index}' "
                     f"data-depth='{p.depth}' data-colour='{'red' if node.red else 'black'}' "
                     f"data-clips='{' '.join(str(c) for c in node.clips)}'>")
        parts.append(f"<rect x='{x - BOX_WIDTH // 2}' y='{y}' width='{BOX_WIDTH}' "
                     f"height='{box_height}' rx='10' fill='{colour}'/>")
        parts.append(f"<text x='{x}' y='{y + 14}' fill='white' text-anchor='middle'>"
                     f"node {p.index}</text>")
        if thumbnail is not None:
            href = html.escape(thumbnail(node.clips[0]), quote=True)
            parts.append(f"<image x='{x - THUMBNAIL // 2}' y='{y + 20}' width='{THUMBNAIL}' "
                         f"height='{THUMBNAIL}' href='{href}' xlink:href='{href}'/>")
        parts.append(f"<text x='{x}' y='{y + box_height - 8}' fill='white' text-anchor='middle'>"
                     f"{html.escape(clips_label(node.clips))}</text></g>")
    parts.append(f"<text x='{MARGIN}' y='{height - 8}' fill='black'>worse clips to the left, "
                 f"better to the right; {len(tree.set_aside)} set aside (can't tell)</text>")
    parts.append("</svg>")
    return "\n".join(parts)
