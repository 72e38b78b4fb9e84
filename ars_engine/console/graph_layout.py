"""A layered (top-down) layout of a small directed graph, in the manner of Sugiyama et al.

Pure geometry, no SVG: :func:`layout` takes box sizes and edges and returns where every box goes
and the path of every edge.

1. Cycles: a depth-first search from the roots marks the edges that close a loop (back edges,
   self-loops included). They are left out of the layering and routed around the drawing.
2. Layers: longest path from the roots over the remaining edges, so that every forward edge
   points down. An edge spanning several layers gets a thin placeholder in each layer between,
   so that it is routed around the boxes it passes.
3. Order within layers: a few barycentre sweeps, down and up, keeping the order with the fewest
   crossings.
4. Horizontal positions: each box moves towards the mean position of its neighbours, with order
   and spacing kept (an exact 1-D quadratic placement by merging blocks), a few sweeps.
5. Back edges leave the bottom of their box, run in a channel of the gap below it to a lane beside
   the drawing (left or right, whichever is nearer), climb, and run in a channel of the gap above
   their target into its top. Each back edge has its own lane and its own channels.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

Point = tuple[float, float]

NODE_GAP = 36.0  # horizontal space between two boxes of a layer
DUMMY_WIDTH = 14.0  # horizontal room kept for an edge passing through a layer
LAYER_GAP = 64.0  # vertical space between layers (before back-edge channels)
CHANNEL_STEP = 11.0  # vertical distance between two back-edge channels in a gap
LANE_MARGIN = 22.0  # between the outermost box and the first back-edge lane
LANE_PAD = 12.0  # between two lanes, beyond half of their labels' widths
SWEEPS = 4


@dataclass(frozen=True, slots=True)
class Box:
    """A placed box: top-left corner and size."""

    x: float
    y: float
    w: float
    h: float

    @property
    def cx(self) -> float:
        return self.x + self.w / 2


@dataclass(frozen=True, slots=True)
class Route:
    """An edge's path: ``points`` from source to target. For a forward edge consecutive points
    alternate between crossing a gap (drawn as a curve) and crossing a layer (straight); a back
    edge is a polyline with right angles (drawn with rounded corners)."""

    points: tuple[Point, ...]
    back: bool
    lane_x: float | None = None  # back edges: the x of their lane


@dataclass(slots=True)
class Layout:
    boxes: dict[str, Box]
    routes: list[Route]
    layers: list[list[str]]
    left: float
    right: float
    bottom: float
    back_edges: set[int] = field(default_factory=set)


def find_back_edges(nodes: Sequence[str], edges: Sequence[tuple[str, str]],
                    roots: Sequence[str]) -> set[int]:
    """Indexes of the edges that close a cycle in a depth-first search from ``roots`` (then from
    any node not reached), in the order given."""
    out: dict[str, list[int]] = {n: [] for n in nodes}
    for i, (source, _) in enumerate(edges):
        out[source].append(i)
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    back: set[int] = set()
    for root in [*roots, *nodes]:
        if root in state:
            continue
        state[root] = 1
        stack = [(root, iter(out[root]))]
        while stack:
            node, pending = stack[-1]
            for i in pending:
                target = edges[i][1]
                if state.get(target) == 1:
                    back.add(i)
                elif target not in state:
                    state[target] = 1
                    stack.append((target, iter(out[target])))
                    break
            else:
                state[node] = 2
                stack.pop()
    return back


def assign_layers(nodes: Sequence[str], forward: Sequence[tuple[str, str]]) -> dict[str, int]:
    """Longest-path layering of an acyclic graph: sources on layer 0, every edge pointing down."""
    preds: dict[str, list[str]] = {n: [] for n in nodes}
    succs: dict[str, list[str]] = {n: [] for n in nodes}
    for source, target in forward:
        preds[target].append(source)
        succs[source].append(target)
    indegree = {n: len(preds[n]) for n in nodes}
    ready = [n for n in nodes if indegree[n] == 0]
    layer = {n: 0 for n in nodes}
    while ready:
        node = ready.pop(0)
        for target in succs[node]:
            layer[target] = max(layer[target], layer[node] + 1)
            indegree[target] -= 1
            if indegree[target] == 0:
                ready.append(target)
    return layer


def count_crossings(upper: list[str], lower: list[str], links: Sequence[tuple[str, str]]) -> int:
    """Crossings between two adjacent layers of the links (upper node, lower node)."""
    up = {n: i for i, n in enumerate(upper)}
    low = {n: i for i, n in enumerate(lower)}
    pairs = sorted((up[a], low[b]) for a, b in links if a in up and b in low)
    crossings = 0
    for i, (a1, b1) in enumerate(pairs):
        for a2, b2 in pairs[i + 1:]:
            if a2 > a1 and b2 < b1:
                crossings += 1
    return crossings


def order_layers(layers: list[list[str]], links: Sequence[tuple[str, str]]) -> list[list[str]]:
    """Barycentre sweeps (down, up, …); returns the ordering with the fewest crossings."""
    up: dict[str, list[str]] = {}
    down: dict[str, list[str]] = {}
    for a, b in links:
        down.setdefault(a, []).append(b)
        up.setdefault(b, []).append(a)

    def total(order: list[list[str]]) -> int:
        return sum(count_crossings(order[i], order[i + 1], links) for i in range(len(order) - 1))

    best = [list(layer) for layer in layers]
    best_count = total(best)
    current = [list(layer) for layer in layers]
    for sweep in range(SWEEPS):
        downward = sweep % 2 == 0
        indexes = range(1, len(current)) if downward else range(len(current) - 2, -1, -1)
        for i in indexes:
            fixed = current[i - 1] if downward else current[i + 1]
            pos = {n: j for j, n in enumerate(fixed)}
            neighbours = up if downward else down
            keyed = []
            for j, node in enumerate(current[i]):
                near = [pos[n] for n in neighbours.get(node, []) if n in pos]
                keyed.append((sum(near) / len(near) if near else float(j), j, node))
            current[i] = [node for _, _, node in sorted(keyed)]
        count = total(current)
        if count < best_count:
            best, best_count = [list(layer) for layer in current], count
    return best


def place_row(order: list[str], widths: dict[str, float], desired: dict[str, float]) -> dict[
        str, float]:
    """Centres for one layer: as near ``desired`` as possible (least squares) with the order
    kept and boxes :data:`NODE_GAP` apart. Blocks of touching boxes are merged while they
    overlap (the pool-adjacent-violators idea)."""
    offsets: list[float] = []  # each node's centre offset from the first centre
    for i, node in enumerate(order):
        offsets.append(0.0 if i == 0 else offsets[-1] + (widths[order[i - 1]] + widths[node]) / 2
                       + NODE_GAP)
    # blocks of boxes kept touching: (first index, last index, sum of desired - offset, count)
    blocks: list[tuple[int, int, float, int]] = []
    for i, node in enumerate(order):
        blocks.append((i, i, desired[node] - offsets[i], 1))
        while len(blocks) > 1:
            (a_first, _, a_sum, a_count), (_, b_last, b_sum, b_count) = blocks[-2:]
            if b_sum / b_count >= a_sum / a_count:  # offsets keep the spacing from one start
                break
            blocks[-2:] = [(a_first, b_last, a_sum + b_sum, a_count + b_count)]
    centres: dict[str, float] = {}
    for first, last, total, count in blocks:
        for i in range(first, last + 1):
            centres[order[i]] = total / count + offsets[i]
    return centres


def layout(nodes: Sequence[str], sizes: dict[str, tuple[float, float]],
           edges: Sequence[tuple[str, str]], roots: Sequence[str],
           label_widths: Sequence[float], *, top: float = 0.0) -> Layout:
    """Place ``nodes`` (sizes: width, height) and route ``edges``; ``label_widths`` (one per
    edge) reserve room for back-edge labels beside their lanes."""
    back = find_back_edges(nodes, edges, roots)
    forward = [e for i, e in enumerate(edges) if i not in back]
    layer_of = assign_layers(nodes, forward)
    layers: list[list[str]] = [[] for _ in range(max(layer_of.values(), default=0) + 1)]
    for node in _discovery_order(nodes, edges, roots):
        layers[layer_of[node]].append(node)
    widths = {n: sizes[n][0] for n in nodes}
    chains, links = _placeholders(edges, back, layer_of, layers, widths)
    layers = order_layers(layers, links)
    centres = _positions(layers, widths, links)
    rows = _rows(layers, sizes, edges, back, layer_of, top)
    boxes = {n: Box(centres[n] - sizes[n][0] / 2, rows.tops[layer_of[n]], *sizes[n])
             for n in nodes}
    xs = [(b.x, b.x + b.w) for b in boxes.values()] + [
        (centres[d] - DUMMY_WIDTH / 2, centres[d] + DUMMY_WIDTH / 2)
        for chain in chains.values() for d in chain]
    left, right = min(a for a, _ in xs), max(b for _, b in xs)
    middle = (left + right) / 2
    side_of = {i: "left" if (boxes[edges[i][0]].cx + boxes[edges[i][1]].cx) / 2 < middle
               else "right" for i in back}
    ports = _ports(edges, side_of, boxes, chains, centres)
    routes: dict[int, Route] = {}
    for i, chain in chains.items():
        points: list[Point] = [ports[i][0]]
        for dummy in chain:
            k = int(dummy.rsplit(".", 1)[1])
            x = centres[dummy]
            points.extend([(x, rows.tops[k]), (x, rows.tops[k] + rows.heights[k])])
        points.append(ports[i][1])
        routes[i] = Route(tuple(points), back=False)
    # lanes: shorter loops inside, on the side nearer to both ends
    lane_edge = {"left": left - LANE_MARGIN, "right": right + LANE_MARGIN}
    last_label = {"left": 0.0, "right": 0.0}
    for i in sorted(back, key=lambda i: (layer_of[edges[i][0]] - layer_of[edges[i][1]], i)):
        source, target = edges[i]
        side = side_of[i]
        step = label_widths[i] / 2 if last_label[side] == 0.0 else (
            (last_label[side] + label_widths[i]) / 2 + LANE_PAD)
        lane = lane_edge[side] + (step if side == "right" else -step)
        lane_edge[side], last_label[side] = lane, label_widths[i]
        below, above = rows.channel_of[i]
        low, high = layer_of[source], layer_of[target]
        below_y = rows.tops[low] + rows.heights[low] + CHANNEL_STEP * (below + 1)
        above_y = rows.tops[high] - CHANNEL_STEP * (above + 1)
        (sx, sy), (tx, ty) = ports[i]
        routes[i] = Route(((sx, sy), (sx, below_y), (lane, below_y), (lane, above_y),
                           (tx, above_y), (tx, ty)), back=True, lane_x=lane)
        left, right = min(left, lane), max(right, lane)
    return Layout(boxes, [routes[i] for i in range(len(edges))],
                  [[n for n in layer if not n.startswith("\0")] for layer in layers],
                  left, right, rows.bottom, back)


def _placeholders(edges: Sequence[tuple[str, str]], back: set[int], layer_of: dict[str, int],
                  layers: list[list[str]], widths: dict[str, float]
                  ) -> tuple[dict[int, list[str]], list[tuple[str, str]]]:
    """Add a placeholder to every layer a forward edge crosses (to ``layers`` and ``widths``);
    returns each forward edge's placeholders and the links between adjacent layers."""
    chains: dict[int, list[str]] = {}
    links: list[tuple[str, str]] = []
    for i, (source, target) in enumerate(edges):
        if i in back:
            continue
        chain = [source]
        for k in range(layer_of[source] + 1, layer_of[target]):
            dummy = f"\0{i}.{k}"
            widths[dummy] = DUMMY_WIDTH
            layers[k].append(dummy)
            chain.append(dummy)
        chain.append(target)
        chains[i] = chain[1:-1]
        links.extend(itertools.pairwise(chain))
    return chains, links


@dataclass(frozen=True, slots=True)
class _Rows:
    tops: list[float]  # y of each layer's top
    heights: list[float]
    bottom: float
    channel_of: dict[int, tuple[int, int]]  # back edge → (channel below source, above target)


def _rows(layers: list[list[str]], sizes: dict[str, tuple[float, float]],
          edges: Sequence[tuple[str, str]], back: set[int], layer_of: dict[str, int],
          top: float) -> _Rows:
    """Vertical positions: gap g lies above layer g and grows by one channel per back edge
    leaving the layer above it or entering the layer below it."""
    below: dict[int, int] = {}
    above: dict[int, int] = {}
    channel_of: dict[int, tuple[int, int]] = {}
    for i in sorted(back, key=lambda i: layer_of[edges[i][0]] - layer_of[edges[i][1]]):
        low, high = layer_of[edges[i][0]] + 1, layer_of[edges[i][1]]
        channel_of[i] = (below.get(low, 0), above.get(high, 0))
        below[low] = below.get(low, 0) + 1
        above[high] = above.get(high, 0) + 1
    heights = [max((sizes[n][1] for n in layer if not n.startswith("\0")), default=20.0)
               for layer in layers]
    tops: list[float] = []
    y = top
    for g in range(len(layers) + 1):
        channels = below.get(g, 0) + above.get(g, 0)
        y += (LAYER_GAP if 0 < g < len(layers) else 0.0) + channels * CHANNEL_STEP
        if g == 0 and channels:
            y += CHANNEL_STEP
        if g < len(layers):
            tops.append(y)
            y += heights[g]
    return _Rows(tops, heights, y, channel_of)


def _discovery_order(nodes: Sequence[str], edges: Sequence[tuple[str, str]],
                     roots: Sequence[str]) -> list[str]:
    """Breadth-first order from the roots (then the rest): a good first ordering of layers."""
    out: dict[str, list[str]] = {n: [] for n in nodes}
    for source, target in edges:
        out[source].append(target)
    seen: dict[str, None] = {}
    for root in [*roots, *nodes]:
        if root in seen:
            continue
        queue = [root]
        seen[root] = None
        while queue:
            node = queue.pop(0)
            for target in out[node]:
                if target not in seen:
                    seen[target] = None
                    queue.append(target)
    return list(seen)


def _positions(layers: list[list[str]], widths: dict[str, float],
               links: Sequence[tuple[str, str]]) -> dict[str, float]:
    up: dict[str, list[str]] = {}
    down: dict[str, list[str]] = {}
    for a, b in links:
        down.setdefault(a, []).append(b)
        up.setdefault(b, []).append(a)
    centres: dict[str, float] = {}
    for layer in layers:
        centres.update(place_row(layer, widths, dict.fromkeys(layer, 0.0)))
    for sweep in range(2 * SWEEPS):
        downward = sweep % 2 == 0
        neighbours = up if downward else down
        indexes = range(len(layers)) if downward else range(len(layers) - 1, -1, -1)
        for i in indexes:
            desired = {}
            for node in layers[i]:
                near = [centres[n] for n in neighbours.get(node, [])]
                desired[node] = sum(near) / len(near) if near else centres[node]
            centres.update(place_row(layers[i], widths, desired))
    return centres


def _ports(edges: Sequence[tuple[str, str]], side_of: dict[int, str], boxes: dict[str, Box],
           chains: dict[int, list[str]], centres: dict[str, float]
           ) -> dict[int, tuple[Point, Point]]:
    """Where each edge leaves its source (bottom side) and enters its target (top side): the
    edges of a side are spread along it in the order of where they come from or go to."""
    leaving: dict[str, list[tuple[float, int]]] = {}
    entering: dict[str, list[tuple[float, int]]] = {}
    for i, (source, target) in enumerate(edges):
        chain = chains.get(i, [])
        if i in side_of:  # lanes are outside: back edges take the end of the side nearer theirs
            away = boxes[source].cx + (10_000.0 if side_of[i] == "right" else -10_000.0)
            leaving.setdefault(source, []).append((away, i))
            entering.setdefault(target, []).append((away, i))
            continue
        after = centres[chain[0]] if chain else boxes[target].cx
        before = centres[chain[-1]] if chain else boxes[source].cx
        leaving.setdefault(source, []).append((after, i))
        entering.setdefault(target, []).append((before, i))
    start: dict[int, Point] = {}
    end: dict[int, Point] = {}
    for node, items in leaving.items():
        box = boxes[node]
        for x, i in _spread(box, items):
            start[i] = (x, box.y + box.h)
    for node, items in entering.items():
        box = boxes[node]
        for x, i in _spread(box, items):
            end[i] = (x, box.y)
    return {i: (start[i], end[i]) for i in range(len(edges))}


def _spread(box: Box, items: list[tuple[float, int]]) -> list[tuple[float, int]]:
    items = sorted(items)
    n = len(items)
    if n == 1:
        return [(box.cx, items[0][1])]
    step = min(18.0, (box.w - 24) / (n - 1))
    first = box.cx - step * (n - 1) / 2
    return [(first + k * step, i) for k, (_, i) in enumerate(items)]
