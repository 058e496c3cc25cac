"""Box arithmetic for tests: overlap of corner tuples ``(x1, y1, x2, y2)`` in pixels."""

from __future__ import annotations

from collections.abc import Sequence

from tasks.core.records import Box

Corners = Sequence[float]


def corners(box: Box) -> tuple[float, float, float, float]:
    """A record's box as ``(x1, y1, x2, y2)``."""
    return (box.x1, box.y1, box.x2, box.y2)


def _intersection(a: Corners, b: Corners) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return w * h


def _area(box: Corners) -> float:
    return (box[2] - box[0]) * (box[3] - box[1])


def iou(a: Corners, b: Corners) -> float:
    """Intersection over union (0 for boxes with no area)."""
    inter = _intersection(a, b)
    union = _area(a) + _area(b) - inter
    return inter / union if union > 0 else 0.0


def share_inside(box: Corners, region: Corners) -> float:
    """The share of ``box``'s area that lies inside ``region``."""
    return _intersection(box, region) / _area(box)
