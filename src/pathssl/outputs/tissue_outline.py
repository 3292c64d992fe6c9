"""The tissue mask as polygons: the exact outline of its pixels (no smoothing), one polygon per
4-connected tissue region with its holes, in level-0 pixels.

Each tissue pixel contributes its edges that border background, directed so that tissue lies on
the left in (x, y) coordinates; chained into rings, exteriors come out with positive (shoelace)
area and holes negative. Where two tissue pixels meet only at a corner the walk turns left,
keeping them apart, and a cycle that passes one corner twice is split there, so every ring is
simple (valid as OGC and GeoJSON geometry: rings may touch at points, not cross)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

Ring = list[tuple[float, float]]
Vertex = tuple[int, int]
Edge = tuple[Vertex, Vertex]


def _directed_edges(mask: np.ndarray) -> dict[Vertex, list[Vertex]]:
    """start vertex -> end vertices of the boundary edges, tissue on the left."""
    m = np.pad(mask.astype(bool), 1)
    rows, cols = mask.shape
    inner = m[1 : rows + 1, 1 : cols + 1]
    out: dict[Vertex, list[Vertex]] = {}
    # (neighbour offset (row, col), edge start and end relative to the pixel's top-left corner)
    sides = (
        ((-1, 0), (0, 0), (1, 0)),  # top, walked towards +x
        ((0, 1), (1, 0), (1, 1)),  # right, towards +y
        ((1, 0), (1, 1), (0, 1)),  # bottom, towards -x
        ((0, -1), (0, 1), (0, 0)),  # left, towards -y
    )
    for (dr, dc), (sx, sy), (ex, ey) in sides:
        neighbour = m[1 + dr : 1 + dr + rows, 1 + dc : 1 + dc + cols]
        r, c = np.nonzero(inner & ~neighbour)
        for y, x in zip(r.tolist(), c.tolist(), strict=True):
            out.setdefault((x + sx, y + sy), []).append((x + ex, y + ey))
    return out


def _successor(edge: Edge, ends: list[Vertex]) -> Edge:
    """The next edge from edge's end: left (towards the tissue) first, then straight, then
    right; at a corner where two tissue pixels touch diagonally this keeps them apart."""
    (ax, ay), (bx, by) = edge
    dx, dy = bx - ax, by - ay
    for tx, ty in ((-dy, dx), (dx, dy), (dy, -dx)):
        if (bx + tx, by + ty) in ends:
            return (edge[1], (bx + tx, by + ty))
    raise AssertionError("an open tissue boundary")  # every vertex has as many in as out


def _rings(edges: dict[Vertex, list[Vertex]]) -> list[list[Vertex]]:
    """The boundary's cycles, each as its vertices, collinear ones dropped."""
    succ = {}
    for a, ends in edges.items():
        for b in ends:
            succ[(a, b)] = _successor((a, b), edges[b])
    rings, seen = [], set()
    for first in succ:
        if first in seen:
            continue
        ring, edge = [], first
        while edge not in seen:
            seen.add(edge)
            ring.append(edge[0])
            edge = succ[edge]
        rings.extend(_drop_collinear(r) for r in _split_at_touches(ring))
    return rings


def _split_at_touches(ring: list[Vertex]) -> list[list[Vertex]]:
    """A cycle that passes a vertex twice (two tissue or two background pixels meeting at a
    corner) as simple rings touching there: OGC allows rings to touch, not a ring itself."""
    out, stack, at = [], [], {}
    for v in ring:
        if v in at:
            i = at[v]
            loop = stack[i:]
            out.append(loop)
            for u in loop[1:]:
                del at[u]
            del stack[i + 1 :]
            continue
        at[v] = len(stack)
        stack.append(v)
    out.append(stack)
    return [r for r in out if len(r) >= 4]


def _drop_collinear(ring: list[Vertex]) -> list[Vertex]:
    n = len(ring)
    keep = []
    for i in range(n):
        a, b, c = ring[i - 1], ring[i], ring[(i + 1) % n]
        if (b[0] - a[0]) * (c[1] - b[1]) != (b[1] - a[1]) * (c[0] - b[0]):
            keep.append(b)
    return keep


def _signed_area(ring: list[Vertex]) -> float:
    xs = np.array([p[0] for p in ring], float)
    ys = np.array([p[1] for p in ring], float)
    return 0.5 * float(np.dot(xs, np.roll(ys, -1)) - np.dot(np.roll(xs, -1), ys))


def _region_of(ring: list[Vertex], labels: np.ndarray) -> int:
    """The label of the tissue pixel left of the ring's first edge."""
    (x0, y0), (x1, y1) = ring[0], ring[1]
    dx, dy = np.sign(x1 - x0), np.sign(y1 - y0)
    cx, cy = x0 + 0.5 * (dx - dy), y0 + 0.5 * (dy + dx)  # that pixel's centre
    return int(labels[int(np.floor(cy)), int(np.floor(cx))])


def mask_polygons(mask: np.ndarray, level0_px_per_mask_px: tuple[float, float]) -> list[list[Ring]]:
    """[[exterior, hole, ...], ...] closed rings in level-0 px, one list per tissue region."""
    labels, _ = ndimage.label(mask.astype(bool))  # 4-connectivity, as the walk
    exteriors: dict[int, list] = {}
    holes: dict[int, list] = {}
    for ring in _rings(_directed_edges(mask)):
        if len(ring) < 4:
            continue
        region = _region_of(ring, labels)
        (exteriors if _signed_area(ring) > 0 else holes).setdefault(region, []).append(ring)
    sx, sy = level0_px_per_mask_px
    polygons = []
    for region in sorted(exteriors):
        rings = exteriors[region][:1] + holes.get(region, [])
        polygons.append([_closed_l0(r, sx, sy) for r in rings])
    return polygons


def _closed_l0(ring: list[tuple[int, int]], sx: float, sy: float) -> Ring:
    pts = [(round(x * sx, 3), round(y * sy, 3)) for x, y in ring]
    return pts + pts[:1]
