"""
Seeded procedural routes: straights and constant-radius curves, sampled every metre.

A route is a two-lane road (one lane per direction) whose centreline is the line between the
lanes. Lateral offsets are measured from that centreline, positive to the **left** (REP-103).
The ego car drives in the right lane, centred at ``-lane_width / 2``.

Cross-section (distance from the centreline, either side): lanes up to ``lane_width`` (solid
edge line there, dashed centre line at 0), a parking shoulder of asphalt up to
``lane_width + shoulder_width``, a sidewalk of ``sidewalk_width`` beyond, then grass.

Besides the driven distance ``[0, length]`` the centreline has a straight lead-in before 0 and
a lead-out after ``length``, so the camera sees road behind the start and past the finish.
Seeds below ``llava_drive.nodes.interfaces.FIRST_EVALUATION_SEED`` are for recording, the
others are held-out evaluation routes (the evaluator enforces it, not this module).
"""
from dataclasses import dataclass, field
import math
from typing import List, Optional, Tuple

from llava_drive.config_checks import number_in_range
import numpy as np


def wrap_angle(angle):
    """
    Wrap an angle (or array of angles) to ``[-pi, pi)``.

    :param angle: angle in radians, scalar or numpy array
    :return: the wrapped angle, same type as the input
    """
    return (angle + math.pi) % (2.0 * math.pi) - math.pi


@dataclass
class RouteConfig:
    """
    Parameters of procedural route generation (lengths in metres, angles in degrees).

    :param length_m: driven route length from start to finish
    :param min_radius_m: smallest curve radius of the centreline
    :param max_radius_m: largest curve radius
    :param min_turn_deg: smallest heading change of one curve
    :param max_turn_deg: largest heading change of one curve
    :param min_straight_m: shortest straight between curves
    :param max_straight_m: longest straight between curves
    :param max_heading_deg: the heading stays within this of the start heading, which keeps
        the road from crossing itself
    :param lane_width_m: width of one lane
    :param shoulder_width_m: asphalt parking strip outside each edge line
    :param sidewalk_width_m: sidewalk outside the shoulder
    :param lead_in_m: straight road drawn before the start
    :param lead_out_m: straight road drawn after the finish
    :param spacing_m: distance between centreline samples
    :param parked_cars: place parked cars on the shoulders
    :param parked_car_mean_gap_m: mean gap between parked cars (exponential)
    :param trees: scatter trees in the grass beside the road
    :param tree_mean_gap_m: mean gap between trees along the road, both sides together
    """

    length_m: float = 500.0
    min_radius_m: float = 30.0
    max_radius_m: float = 120.0
    min_turn_deg: float = 25.0
    max_turn_deg: float = 75.0
    min_straight_m: float = 15.0
    max_straight_m: float = 70.0
    max_heading_deg: float = 80.0
    lane_width_m: float = 3.5
    shoulder_width_m: float = 2.5
    sidewalk_width_m: float = 2.0
    lead_in_m: float = 30.0
    lead_out_m: float = 150.0
    spacing_m: float = 1.0
    parked_cars: bool = True
    parked_car_mean_gap_m: float = 45.0
    trees: bool = True
    tree_mean_gap_m: float = 9.0

    def __post_init__(self):
        """Check that every length is positive and every range is ordered."""
        for name in ('length_m', 'min_radius_m', 'max_radius_m', 'min_turn_deg', 'max_turn_deg',
                     'min_straight_m', 'max_straight_m', 'max_heading_deg', 'lane_width_m',
                     'spacing_m', 'parked_car_mean_gap_m', 'tree_mean_gap_m'):
            number_in_range(f'RouteConfig.{name}', getattr(self, name), 0, low_open=True)
        for name in ('shoulder_width_m', 'sidewalk_width_m', 'lead_in_m', 'lead_out_m'):
            number_in_range(f'RouteConfig.{name}', getattr(self, name), 0)
        if self.min_radius_m <= self.lane_width_m + self.shoulder_width_m + \
                self.sidewalk_width_m:
            raise ValueError(f'RouteConfig.min_radius_m={self.min_radius_m} must exceed the '
                             'road half-width (lane + shoulder + sidewalk)')
        for low, high in (('min_radius_m', 'max_radius_m'), ('min_turn_deg', 'max_turn_deg'),
                          ('min_straight_m', 'max_straight_m')):
            if getattr(self, low) > getattr(self, high):
                raise ValueError(f'RouteConfig.{low}={getattr(self, low)} is larger than '
                                 f'{high}={getattr(self, high)}')
        if self.max_turn_deg > self.max_heading_deg:
            raise ValueError(f'RouteConfig.max_turn_deg={self.max_turn_deg} must not exceed '
                             f'max_heading_deg={self.max_heading_deg}')
        if self.spacing_m > 5.0:
            raise ValueError(f'RouteConfig.spacing_m={self.spacing_m} is too coarse (max 5 m)')


@dataclass(frozen=True)
class Segment:
    """
    One piece of centreline: a straight (``curvature == 0``) or a constant-radius arc.

    :param length: arc length in metres
    :param curvature: signed curvature in 1/m, positive turns left (yaw increases)
    """

    length: float
    curvature: float = 0.0

    @property
    def radius(self) -> float:
        """Return the curve radius in metres (``inf`` for a straight)."""
        return math.inf if self.curvature == 0.0 else 1.0 / abs(self.curvature)

    @property
    def direction(self) -> str:
        """Return ``'straight'``, ``'left'`` or ``'right'``."""
        if self.curvature == 0.0:
            return 'straight'
        return 'left' if self.curvature > 0 else 'right'


@dataclass(frozen=True)
class Projection:
    """
    Where a point lies relative to the route centreline.

    :param s: arc length of the closest centreline point (m, may be < 0 or > length)
    :param lateral: signed offset from the centreline, positive left (m)
    :param distance: unsigned distance to the centreline polyline (m)
    :param route_yaw: centreline heading at ``s`` (rad)
    :param index: index of the centreline sample just before ``s`` (a hint for the next call)
    """

    s: float
    lateral: float
    distance: float
    route_yaw: float
    index: int

    def heading_error(self, yaw: float) -> float:
        """
        Return ``yaw`` minus the route heading, wrapped to ``[-pi, pi)``.

        :param yaw: the vehicle heading in radians
        :return: positive when the vehicle points to the left of the route
        """
        return float(wrap_angle(yaw - self.route_yaw))


def _sample_segments(segments: List[Segment], s_values: np.ndarray,
                     start_s: float) -> np.ndarray:
    """
    Return ``(N, 4)`` samples ``x, y, yaw, s`` of a chain of segments starting at the origin.

    :param segments: the chain, starting at ``(0, 0)`` with yaw 0 at arc length ``start_s``
    :param s_values: increasing arc lengths to sample, within the chain
    :param start_s: arc length of the chain's first point
    """
    out = np.zeros((len(s_values), 4))
    out[:, 3] = s_values
    x0 = y0 = yaw0 = 0.0
    seg_start = start_s
    for index, seg in enumerate(segments):
        seg_end = seg_start + seg.length
        last = index == len(segments) - 1
        # The last segment takes everything after its start (float rounding at the very end).
        mask = (s_values >= seg_start) if last else \
            ((s_values >= seg_start) & (s_values < seg_end))
        if index == 0:
            mask |= s_values < seg_start
        t = s_values[mask] - seg_start
        k = seg.curvature
        if k == 0.0:
            out[mask, 0] = x0 + t * math.cos(yaw0)
            out[mask, 1] = y0 + t * math.sin(yaw0)
            out[mask, 2] = yaw0
            x0, y0 = x0 + seg.length * math.cos(yaw0), y0 + seg.length * math.sin(yaw0)
        else:
            yaw = yaw0 + k * t
            out[mask, 0] = x0 + (np.sin(yaw) - math.sin(yaw0)) / k
            out[mask, 1] = y0 - (np.cos(yaw) - math.cos(yaw0)) / k
            out[mask, 2] = yaw
            yaw_end = yaw0 + k * seg.length
            x0 = x0 + (math.sin(yaw_end) - math.sin(yaw0)) / k
            y0 = y0 - (math.cos(yaw_end) - math.cos(yaw0)) / k
            yaw0 = yaw_end
        seg_start = seg_end
    out[:, 2] = wrap_angle(out[:, 2])
    return out


def generate_segments(rng: np.random.Generator, config: RouteConfig) -> List[Segment]:
    """
    Draw the segments of a route: lead-in, alternating straights and curves, lead-out.

    The first two curves turn in opposite directions, so every route has both a left and a
    right curve once it is long enough for two curves.

    :param rng: the random generator (seeded by the caller)
    :param config: generation parameters
    :return: segments covering ``lead_in_m + length_m + lead_out_m``
    """
    max_heading = math.radians(config.max_heading_deg)
    segments = [Segment(config.lead_in_m)] if config.lead_in_m > 0 else []
    # A short straight start, so the car begins on a straight road.
    driven = [Segment(min(config.length_m, float(rng.uniform(20.0, 40.0))))]
    total = driven[0].length
    heading = 0.0
    first_sign = 0
    curve_count = 0
    while total < config.length_m:
        turn = math.radians(rng.uniform(config.min_turn_deg, config.max_turn_deg))
        radius = config.min_radius_m * math.exp(
            rng.uniform(0.0, math.log(config.max_radius_m / config.min_radius_m)))
        sign = 1 if rng.random() < 0.5 else -1
        if curve_count == 1:
            sign = -first_sign
        elif abs(heading + sign * turn) > max_heading:
            sign = -sign
        if abs(heading + sign * turn) > max_heading:
            turn = max_heading - abs(heading)  # the flipped side is still too far: turn less
            sign = -1 if heading > 0 else 1
        if curve_count == 0:
            first_sign = sign
        curve_count += 1
        heading += sign * turn
        driven.append(Segment(radius * turn, sign / radius))
        driven.append(Segment(float(rng.uniform(config.min_straight_m, config.max_straight_m))))
        total += driven[-2].length + driven[-1].length
    # Cut the last segment(s) so the driven part is exactly length_m long.
    excess = total - config.length_m
    while excess > 0 and driven:
        last = driven.pop()
        if last.length > excess:
            driven.append(Segment(last.length - excess, last.curvature))
            excess = 0.0
        else:
            excess -= last.length
    segments.extend(driven)
    if config.lead_out_m > 0:
        segments.append(Segment(config.lead_out_m))
    return segments


@dataclass
class Route:
    """
    A generated route: centreline samples, road cross-section and parked cars.

    Build with :meth:`generate`. ``points`` holds ``x, y, yaw, s`` rows every ``spacing_m``
    from ``-lead_in_m`` to ``length + lead_out_m``; the driven route is ``0 <= s <= length``.

    :param seed: the generating seed
    :param config: the generation parameters
    :param segments: the geometric segments, lead-in and lead-out included
    :param points: ``(N, 4)`` float64 centreline samples ``x, y, yaw, s``
    :param parked_cars: parked cars along the shoulders (see :mod:`llava_drive.sim.obstacles`)
    :param trees: trees in the grass beside the road
    """

    seed: int
    config: RouteConfig
    segments: List[Segment]
    points: np.ndarray
    parked_cars: list = field(default_factory=list)
    trees: list = field(default_factory=list)

    @classmethod
    def generate(cls, seed: int, config: Optional[RouteConfig] = None) -> 'Route':
        """
        Generate the route for ``seed`` (the same seed always gives the same route).

        :param seed: non-negative integer route seed
        :param config: generation parameters, defaults to :class:`RouteConfig()`
        :return: the route, with parked cars and trees as configured
        """
        # Imported here: obstacles works on routes.
        from llava_drive.sim.obstacles import place_parked_cars, place_trees

        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f'route seed must be a non-negative integer, got {seed!r}')
        config = config or RouteConfig()
        rng = np.random.default_rng([int(seed), 0x5EED])
        segments = generate_segments(rng, config)
        total = sum(seg.length for seg in segments)
        count = int(math.floor(total / config.spacing_m + 1e-9)) + 1
        s_values = -config.lead_in_m + config.spacing_m * np.arange(count)
        points = _sample_segments(segments, s_values, -config.lead_in_m)
        # Shift so the driven start (s = 0) is the map origin, heading along +x.
        start = points[int(round(config.lead_in_m / config.spacing_m))]
        points[:, 0] -= start[0]
        points[:, 1] -= start[1]
        route = cls(int(seed), config, segments, points)
        if config.parked_cars:
            route.parked_cars = place_parked_cars(route, np.random.default_rng([int(seed), 7]))
        if config.trees:
            route.trees = place_trees(route, np.random.default_rng([int(seed), 11]))
        return route

    @property
    def length(self) -> float:
        """Return the driven route length in metres."""
        return self.config.length_m

    @property
    def lane_width(self) -> float:
        """Return the width of one lane in metres."""
        return self.config.lane_width_m

    @property
    def right_lane_offset(self) -> float:
        """Return the lateral offset of the right lane centre (negative: right of centre)."""
        return -0.5 * self.config.lane_width_m

    def driven_segments(self) -> List[Segment]:
        """Return the segments between start and finish (lead-in and lead-out excluded)."""
        segments = list(self.segments)
        if self.config.lead_in_m > 0:
            segments = segments[1:]
        if self.config.lead_out_m > 0:
            segments = segments[:-1]
        return segments

    def index_of(self, s: float) -> int:
        """
        Return the index of the centreline sample at or just before arc length ``s``.

        :param s: arc length in metres (clamped to the sampled range)
        """
        index = int(math.floor((s - self.points[0, 3]) / self.config.spacing_m))
        return min(max(index, 0), len(self.points) - 2)

    def pose_at(self, s: float, lateral: float = 0.0) -> Tuple[float, float, float]:
        """
        Return ``(x, y, yaw)`` at arc length ``s`` and ``lateral`` metres left of centre.

        :param s: arc length in metres
        :param lateral: signed offset, positive left
        """
        index = self.index_of(s)
        p0, p1 = self.points[index], self.points[index + 1]
        t = (s - p0[3]) / (p1[3] - p0[3])
        x = p0[0] + t * (p1[0] - p0[0])
        y = p0[1] + t * (p1[1] - p0[1])
        yaw = p0[2] + t * wrap_angle(p1[2] - p0[2])
        return (float(x - lateral * math.sin(yaw)), float(y + lateral * math.cos(yaw)),
                float(wrap_angle(yaw)))

    def poses_at(self, s_values, lateral: float = 0.0) -> np.ndarray:
        """
        Return ``(N, 3)`` rows ``x, y, yaw`` at many arc lengths (vectorised :meth:`pose_at`).

        :param s_values: arc lengths in metres (clamped to the sampled range)
        :param lateral: signed offset, positive left
        """
        pts = self.points
        s = np.asarray(s_values, dtype=float)
        index = np.clip(np.floor((s - pts[0, 3]) / self.config.spacing_m).astype(int),
                        0, len(pts) - 2)
        p0, p1 = pts[index], pts[index + 1]
        t = ((s - p0[:, 3]) / (p1[:, 3] - p0[:, 3]))[:, None]
        xy = p0[:, :2] + t * (p1[:, :2] - p0[:, :2])
        yaw = p0[:, 2] + t[:, 0] * wrap_angle(p1[:, 2] - p0[:, 2])
        out = np.empty((len(s), 3))
        out[:, 0] = xy[:, 0] - lateral * np.sin(yaw)
        out[:, 1] = xy[:, 1] + lateral * np.cos(yaw)
        out[:, 2] = wrap_angle(yaw)
        return out

    def offset_path(self, lateral: float, s_from: Optional[float] = None,
                    s_to: Optional[float] = None) -> np.ndarray:
        """
        Return ``(N, 3)`` samples ``x, y, yaw`` of the line ``lateral`` metres left of centre.

        :param lateral: signed offset, positive left (use :attr:`right_lane_offset` for the
            ego lane)
        :param s_from: first arc length (default: start of the lead-in)
        :param s_to: last arc length (default: end of the lead-out)
        """
        s = self.points[:, 3]
        mask = np.ones(len(s), bool)
        if s_from is not None:
            mask &= s >= s_from - 1e-9
        if s_to is not None:
            mask &= s <= s_to + 1e-9
        pts = self.points[mask]
        out = np.empty((len(pts), 3))
        out[:, 0] = pts[:, 0] - lateral * np.sin(pts[:, 2])
        out[:, 1] = pts[:, 1] + lateral * np.cos(pts[:, 2])
        out[:, 2] = pts[:, 2]
        return out

    def project(self, x: float, y: float, hint: Optional[int] = None,
                window: int = 40) -> Projection:
        """
        Project a point onto the centreline polyline.

        With ``hint`` (the ``index`` of the previous projection) only ``window`` samples either
        side are searched, so a vehicle cannot jump to another part of the road; the search
        falls back to the whole route when the best match sits on the window's border.

        :param x: map x in metres
        :param y: map y in metres
        :param hint: index from the previous :class:`Projection`, or None
        :param window: samples searched either side of ``hint``
        :return: the projection
        """
        pts = self.points
        count = len(pts)
        if hint is None:
            lo, hi = 0, count
        else:
            lo, hi = max(0, hint - window), min(count, hint + window + 1)
        dx = pts[lo:hi, 0] - x
        dy = pts[lo:hi, 1] - y
        nearest = int(np.argmin(dx * dx + dy * dy)) + lo
        if hint is not None and (nearest == lo and lo > 0 or nearest == hi - 1 and hi < count):
            return self.project(x, y, None)
        best = None
        # The closest point of the polyline lies on one of the two segments at ``nearest``.
        for index in (nearest - 1, nearest):
            if index < 0 or index >= count - 1:
                continue
            x0, y0, _, s0 = pts[index]
            x1, y1, _, s1 = pts[index + 1]
            ex, ey = x1 - x0, y1 - y0
            seg_len2 = ex * ex + ey * ey
            t = ((x - x0) * ex + (y - y0) * ey) / seg_len2
            t_clamped = min(1.0, max(0.0, t))
            px, py = x0 + t_clamped * ex, y0 + t_clamped * ey
            dist = math.hypot(x - px, y - py)
            if best is None or dist < best[0]:
                best = (dist, index, t, t_clamped, ex, ey, seg_len2)
        dist, index, t, t_clamped, ex, ey, seg_len2 = best
        x0, y0, _, s0 = pts[index]
        seg_len = math.sqrt(seg_len2)
        # Signed lateral: cross product of the segment direction with the offset.
        lateral = (ex * (y - y0) - ey * (x - x0)) / seg_len
        # Beyond either end of the polyline, extrapolate s along the end segment.
        at_end = (index == 0 and t < 0) or (index == count - 2 and t > 1)
        t_s = t if at_end else t_clamped
        s = s0 + t_s * seg_len
        yaw0, yaw1 = pts[index, 2], pts[index + 1, 2]
        yaw = yaw0 + t_clamped * float(wrap_angle(yaw1 - yaw0))
        return Projection(float(s), float(lateral), float(dist), float(yaw), int(index))
