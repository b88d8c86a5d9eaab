"""Static obstacles (parked cars on the shoulders) and oriented-box collision tests."""
from dataclasses import dataclass
import math
from typing import List, Tuple

import numpy as np

PARKED_CAR_LENGTH_M = 4.5
PARKED_CAR_WIDTH_M = 1.85
PARKED_CAR_HEIGHT_M = 1.5
# Free road at the start, so the ego car never spawns next to an obstacle.
FIRST_PARKED_CAR_S_M = 25.0

# Paint colours (BGR) of parked cars: white, silver, black, red, blue, dark green, yellow.
CAR_COLOURS_BGR = (
    (225, 225, 225), (170, 170, 165), (40, 40, 40), (30, 30, 170), (150, 70, 30),
    (50, 90, 40), (40, 190, 220),
)


@dataclass(frozen=True)
class ParkedCar:
    """
    A parked car: an oriented box standing on the ground.

    :param x: centre x in the map frame (m)
    :param y: centre y in the map frame (m)
    :param yaw: heading (rad, REP-103)
    :param length: box length (m)
    :param width: box width (m)
    :param height: box height (m)
    :param s: arc length along the route where it stands (m)
    :param lateral: offset from the centreline, positive left (m)
    :param colour_bgr: paint colour
    """

    x: float
    y: float
    yaw: float
    length: float = PARKED_CAR_LENGTH_M
    width: float = PARKED_CAR_WIDTH_M
    height: float = PARKED_CAR_HEIGHT_M
    s: float = 0.0
    lateral: float = 0.0
    colour_bgr: Tuple[int, int, int] = CAR_COLOURS_BGR[0]

    def corners(self) -> np.ndarray:
        """Return the ``(4, 2)`` footprint corners in the map frame, counter-clockwise."""
        return box_corners(self.x, self.y, self.yaw, self.length, self.width)


@dataclass(frozen=True)
class Tree:
    """
    A roadside tree: a trunk (the solid part) under a two-tier crown.

    :param x: trunk centre x in the map frame (m)
    :param y: trunk centre y in the map frame (m)
    :param height: total height (m)
    :param crown_width: width of the lower crown tier (m)
    :param colour_bgr: crown colour
    """

    x: float
    y: float
    height: float = 5.0
    crown_width: float = 2.6
    colour_bgr: Tuple[int, int, int] = (40, 100, 45)

    TRUNK_WIDTH = 0.4

    def corners(self) -> np.ndarray:
        """Return the ``(4, 2)`` footprint corners of the trunk, counter-clockwise."""
        return box_corners(self.x, self.y, 0.0, self.TRUNK_WIDTH, self.TRUNK_WIDTH)


def box_corners(x: float, y: float, yaw: float, length: float, width: float) -> np.ndarray:
    """
    Return the ``(4, 2)`` corners of an oriented rectangle, counter-clockwise.

    :param x: centre x (m)
    :param y: centre y (m)
    :param yaw: heading of the length axis (rad)
    :param length: extent along the heading (m)
    :param width: extent across the heading (m)
    """
    c, s = math.cos(yaw), math.sin(yaw)
    hl, hw = 0.5 * length, 0.5 * width
    local = ((hl, -hw), (hl, hw), (-hl, hw), (-hl, -hw))
    return np.array([(x + c * a - s * b, y + s * a + c * b) for a, b in local])


def boxes_overlap(corners_a: np.ndarray, corners_b: np.ndarray) -> bool:
    """
    Return whether two convex quadrilaterals overlap (separating axis test).

    :param corners_a: ``(4, 2)`` corners in order
    :param corners_b: ``(4, 2)`` corners in order
    """
    for corners in (corners_a, corners_b):
        for i in range(4):
            edge = corners[(i + 1) % 4] - corners[i]
            axis = np.array((-edge[1], edge[0]))
            pa = corners_a @ axis
            pb = corners_b @ axis
            if pa.max() < pb.min() or pb.max() < pa.min():
                return False
    return True


def place_parked_cars(route, rng: np.random.Generator) -> List[ParkedCar]:
    """
    Place parked cars on both shoulders of ``route`` with exponential gaps.

    Cars stand in the parking shoulder just outside the edge lines, parallel to the road, so a
    car that keeps its lane never touches them; one that drifts out does.

    :param route: a :class:`~llava_drive.sim.road.Route` (its config gives widths and the gap)
    :param rng: random generator for positions, sides and colours
    :return: the cars, sorted by arc length
    """
    config = route.config
    if config.shoulder_width_m < PARKED_CAR_WIDTH_M + 0.1:
        return []
    offset = config.lane_width_m + 0.4 + 0.5 * PARKED_CAR_WIDTH_M
    cars = []
    s = FIRST_PARKED_CAR_S_M + rng.exponential(config.parked_car_mean_gap_m)
    end = route.length + config.lead_out_m - PARKED_CAR_LENGTH_M
    while s < end:
        side = 1.0 if rng.random() < 0.5 else -1.0
        lateral = side * offset
        x, y, yaw = route.pose_at(s, lateral)
        if side > 0:
            yaw = math.atan2(-math.sin(yaw), -math.cos(yaw))  # parked facing the traffic
        colour = CAR_COLOURS_BGR[int(rng.integers(len(CAR_COLOURS_BGR)))]
        cars.append(ParkedCar(x, y, yaw, s=float(s), lateral=lateral, colour_bgr=colour))
        s += PARKED_CAR_LENGTH_M + 2.0 + rng.exponential(config.parked_car_mean_gap_m)
    return cars


def place_trees(route, rng: np.random.Generator) -> List[Tree]:
    """
    Scatter trees in the grass on both sides of ``route``, never near any part of the road.

    :param route: a :class:`~llava_drive.sim.road.Route`
    :param rng: random generator for positions, sizes and colours
    :return: the trees, sorted by the arc length they were placed at
    """
    config = route.config
    outer = config.lane_width_m + config.shoulder_width_m + config.sidewalk_width_m
    trees = []
    s = float(route.points[0, 3]) + rng.exponential(config.tree_mean_gap_m)
    end = float(route.points[-1, 3])
    while s < end:
        lateral = float(rng.choice((-1.0, 1.0))) * (outer + 2.0 + rng.exponential(8.0))
        x, y, _ = route.pose_at(s, lateral)
        # On the inside of a curve a tree could land near another part of the road.
        if route.project(x, y).distance >= outer + 2.0:
            green = (int(rng.integers(25, 60)), int(rng.integers(80, 130)),
                     int(rng.integers(30, 75)))
            trees.append(Tree(x, y, float(rng.uniform(4.0, 7.5)), float(rng.uniform(2.0, 3.4)),
                              green))
        s += rng.exponential(config.tree_mean_gap_m)
    return trees
