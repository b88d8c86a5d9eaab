"""Polyline helpers for the town: resampling, offsets, Bezier connectors, projection."""
import math
from typing import Tuple

import numpy as np


def resample(xy: np.ndarray, spacing: float = 1.0) -> np.ndarray:
    """
    Return ``(N, 4)`` rows ``x, y, yaw, s`` every ``spacing`` metres along a polyline.

    The last row is the polyline's end (its gap to the row before may be shorter).

    :param xy: ``(M, 2)`` points, M >= 2, consecutive points distinct
    :param spacing: distance between rows (m)
    """
    xy = np.asarray(xy, float)
    step = np.hypot(*np.diff(xy, axis=0).T)
    keep = np.concatenate(([True], step > 1e-9))
    xy = xy[keep]
    arc = np.concatenate(([0.0], np.cumsum(np.hypot(*np.diff(xy, axis=0).T))))
    total = float(arc[-1])
    s = np.arange(0.0, total, spacing)
    if total - s[-1] > 1e-6:
        s = np.append(s, total)
    out = np.empty((len(s), 4))
    out[:, 0] = np.interp(s, arc, xy[:, 0])
    out[:, 1] = np.interp(s, arc, xy[:, 1])
    out[:, 3] = s
    out[:, 2] = headings(out[:, :2])
    return out


def headings(xy: np.ndarray) -> np.ndarray:
    """Return the heading (rad) at every point of a polyline (central differences)."""
    d = np.gradient(xy, axis=0) if len(xy) > 2 else np.repeat(np.diff(xy, axis=0), len(xy), 0)
    return np.arctan2(d[:, 1], d[:, 0])


def offset(path: np.ndarray, lateral: float) -> np.ndarray:
    """
    Return a copy of ``path`` (rows ``x, y, yaw, ...``) moved ``lateral`` metres to its left.

    :param path: ``(N, >=3)`` rows
    :param lateral: signed offset, positive left (REP-103)
    """
    out = np.array(path, float)
    out[:, 0] -= lateral * np.sin(path[:, 2])
    out[:, 1] += lateral * np.cos(path[:, 2])
    return out


def bezier(p0, yaw0: float, p1, yaw1: float, count: int = 40,
           handle: float = 0.55) -> np.ndarray:
    """
    Return ``(count, 2)`` points of the cubic Bezier leaving ``p0`` along ``yaw0``.

    It arrives at ``p1`` heading ``yaw1``; handles are ``handle`` times the chord long (0.55
    makes a right angle close to a circular arc).

    :param p0: start ``(x, y)``
    :param yaw0: start heading (rad)
    :param p1: end ``(x, y)``
    :param yaw1: end heading (rad)
    :param count: number of points
    :param handle: handle length over chord length
    """
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    length = handle * float(np.hypot(*(p1 - p0)))
    c0 = p0 + length * np.array((math.cos(yaw0), math.sin(yaw0)))
    c1 = p1 - length * np.array((math.cos(yaw1), math.sin(yaw1)))
    t = np.linspace(0.0, 1.0, count)[:, None]
    return ((1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * c0 + 3 * (1 - t) * t ** 2 * c1
            + t ** 3 * p1)


def project(points: np.ndarray, x: float, y: float) -> Tuple[int, float, float, float]:
    """
    Project a point on a polyline.

    :param points: ``(N, >=2)`` rows ``x, y, ...``, N >= 2
    :param x: point x (m)
    :param y: point y (m)
    :return: ``(index, t, distance, lateral)``: the segment ``index -> index + 1``, the
        clamped fraction along it, the distance and the signed offset (positive left)
    """
    start, end = points[:-1, :2], points[1:, :2]
    along = end - start
    length2 = np.maximum((along ** 2).sum(axis=1), 1e-12)
    rel = np.array((x, y)) - start
    t = np.clip((rel * along).sum(axis=1) / length2, 0.0, 1.0)
    nearest = start + t[:, None] * along
    dist2 = ((nearest - (x, y)) ** 2).sum(axis=1)
    i = int(np.argmin(dist2))
    lateral = (along[i, 0] * rel[i, 1] - along[i, 1] * rel[i, 0]) / math.sqrt(length2[i])
    return i, float(t[i]), math.sqrt(float(dist2[i])), float(lateral)
