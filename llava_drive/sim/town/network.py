"""
Seeded procedural town road networks: junctions, two-way roads, a lane graph, scenery.

A town is a jittered grid of nodes joined by two-way roads (one lane each way, driving on the
right, a parking shoulder and a sidewalk on both sides). Some grid edges are dropped, so nodes
have 2, 3 or 4 arms: a node with 3 or 4 arms is a **junction** (a square box of plain asphalt
without centre line, a zebra crossing and a stop line on each arm); a node with 2 arms is a
**bend** (the road simply curves through). Roads between nodes may bow sideways, so they curve.

The lane graph: every road has two :class:`Lane` objects (one per direction, resampled every
``spacing_m``); at every node, :class:`Connector` lanes join each incoming lane to each
outgoing lane of another road (no U-turns), tagged with the CARLA ``RoadOption`` a global
planner gives them: LEFT, RIGHT or STRAIGHT in a junction (from the heading change), LANEFOLLOW
through a bend. At a junction one pair of arms is the priority road (``major``); signalised
junctions have a traffic light per incoming lane (:mod:`llava_drive.sim.town.lights`).

Scenery: parked cars on the shoulders away from junctions, buildings set back behind the
sidewalks, trees in the gaps. Frame: REP-103 ``map``, x east, y north, yaw counter-clockwise.
"""
from dataclasses import dataclass, field
import math
from typing import Dict, List, Optional, Tuple

import cv2
from llava_drive.config_checks import number_in_range
from llava_drive.planning import RoadOption
from llava_drive.sim.obstacles import CAR_COLOURS_BGR, PARKED_CAR_LENGTH_M, \
    PARKED_CAR_WIDTH_M, ParkedCar, Tree
from llava_drive.sim.road import wrap_angle
from llava_drive.sim.town.geometry import bezier, offset, resample
import numpy as np

# Heading changes smaller than this through a junction count as going straight.
STRAIGHT_TOLERANCE_DEG = 40.0
# Facade colours (BGR): plaster, brick, concrete, sandstone, pale blue, green-grey.
FACADE_COLOURS_BGR = (
    (175, 195, 210), (60, 80, 150), (150, 150, 150), (120, 170, 200), (190, 170, 140),
    (140, 160, 150), (95, 110, 130), (200, 205, 210),
)


@dataclass
class TownConfig:
    """
    Parameters of town generation (lengths in metres).

    :param columns: grid nodes west to east
    :param rows: grid nodes south to north
    :param min_block_m: shortest distance between neighbouring grid nodes
    :param max_block_m: longest distance between neighbouring grid nodes
    :param jitter_m: random displacement of each node, so roads are not all axis-aligned
    :param drop_edge_probability: chance to drop a grid edge (keeping every node at >= 2 arms
        and the network connected), which turns 4-way junctions into 3-way ones
    :param curve_probability: chance that a road bows sideways between its nodes
    :param min_curve_radius_m: bows are limited so no curve is tighter than this
    :param lane_width_m: width of one lane
    :param shoulder_width_m: parking strip outside each edge line
    :param sidewalk_width_m: sidewalk outside the shoulder
    :param junction_half_size_m: half the side of a junction's box
    :param crosswalk_width_m: zebra crossing between the box and the stop line
    :param signal_probability: chance that a junction has traffic lights
    :param spacing_m: distance between lane samples
    :param parked_car_mean_gap_m: mean gap between parked cars along a shoulder
    :param building_setback_m: free ground between the sidewalk and a building, at least
    :param tree_mean_gap_m: mean gap between trees along a road side
    """

    columns: int = 4
    rows: int = 3
    min_block_m: float = 85.0
    max_block_m: float = 125.0
    jitter_m: float = 5.0
    drop_edge_probability: float = 0.1
    curve_probability: float = 0.5
    min_curve_radius_m: float = 35.0
    lane_width_m: float = 3.5
    shoulder_width_m: float = 2.2
    sidewalk_width_m: float = 2.5
    junction_half_size_m: float = 9.0
    crosswalk_width_m: float = 3.0
    signal_probability: float = 0.6
    spacing_m: float = 1.0
    parked_car_mean_gap_m: float = 35.0
    building_setback_m: float = 2.0
    tree_mean_gap_m: float = 14.0

    def __post_init__(self):
        """Check every field, naming the bad value."""
        for name in ('columns', 'rows'):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 2 <= value <= 12:
                raise ValueError(f'TownConfig.{name} must be an integer in [2, 12], '
                                 f'got {value!r}')
        for name in ('min_block_m', 'max_block_m', 'min_curve_radius_m', 'lane_width_m',
                     'junction_half_size_m', 'spacing_m', 'parked_car_mean_gap_m',
                     'tree_mean_gap_m'):
            number_in_range(f'TownConfig.{name}', getattr(self, name), 0, low_open=True)
        for name in ('jitter_m', 'shoulder_width_m', 'sidewalk_width_m', 'crosswalk_width_m',
                     'building_setback_m'):
            number_in_range(f'TownConfig.{name}', getattr(self, name), 0)
        for name in ('drop_edge_probability', 'curve_probability', 'signal_probability'):
            number_in_range(f'TownConfig.{name}', getattr(self, name), 0, 1)
        if self.min_block_m > self.max_block_m:
            raise ValueError(f'TownConfig.min_block_m={self.min_block_m} is larger than '
                             f'max_block_m={self.max_block_m}')
        if self.min_block_m < 2 * self.arm_start_m + 30.0:
            raise ValueError(f'TownConfig.min_block_m={self.min_block_m} leaves less than 30 m '
                             'of road between two junctions')
        if self.junction_half_size_m < self.asphalt_half_width_m:
            raise ValueError(f'TownConfig.junction_half_size_m={self.junction_half_size_m} is '
                             'narrower than the road')
        if self.spacing_m > 2.0:
            raise ValueError(f'TownConfig.spacing_m={self.spacing_m} is too coarse (max 2 m)')

    @property
    def asphalt_half_width_m(self) -> float:
        """Return the distance from a road's centreline to its kerb."""
        return self.lane_width_m + self.shoulder_width_m

    @property
    def outer_half_width_m(self) -> float:
        """Return the distance from a road's centreline to the back of its sidewalk."""
        return self.asphalt_half_width_m + self.sidewalk_width_m

    @property
    def arm_start_m(self) -> float:
        """Return the distance from a node's centre to where its roads (and stop lines) begin."""
        return self.junction_half_size_m + self.crosswalk_width_m


@dataclass
class Node:
    """
    A grid node: a junction (3-4 arms) or a bend (2 arms).

    :param index: position in :attr:`TownMap.nodes`
    :param x: centre x (m)
    :param y: centre y (m)
    :param roads: indices of the roads meeting here
    :param signalised: whether it has traffic lights
    :param major: the roads of the priority direction (unsignalised junctions)
    """

    index: int
    x: float
    y: float
    roads: List[int] = field(default_factory=list)
    signalised: bool = False
    major: Tuple[int, ...] = ()

    @property
    def is_junction(self) -> bool:
        """Return whether this node is a junction (3 or more arms)."""
        return len(self.roads) >= 3


@dataclass
class Road:
    """
    A two-way road between two nodes.

    :param index: position in :attr:`TownMap.roads`
    :param a: start node
    :param b: end node
    :param centre: ``(N, 4)`` centreline rows ``x, y, yaw, s`` from node ``a``'s arm start to
        node ``b``'s
    :param lanes: ``(forward, backward)`` lane indices (forward runs from ``a`` to ``b``)
    """

    index: int
    a: int
    b: int
    centre: np.ndarray
    lanes: Tuple[int, int] = (-1, -1)

    @property
    def length(self) -> float:
        """Return the length of the centreline (m)."""
        return float(self.centre[-1, 3])


@dataclass
class Lane:
    """
    One direction of a road, or a connector through a node.

    :param index: position in :attr:`TownMap.lanes`
    :param points: ``(N, 4)`` lane-centre rows ``x, y, yaw, s``
    :param start_node: node where it begins
    :param end_node: node where it ends
    :param road: the road it belongs to (-1 for a connector)
    :param option: CARLA RoadOption of its points (LANEFOLLOW on roads)
    :param successors: lanes it continues into
    :param source: for a connector, the incoming lane (-1 for a road lane)
    :param target: for a connector, the outgoing lane (-1 for a road lane)
    """

    index: int
    points: np.ndarray
    start_node: int
    end_node: int
    road: int = -1
    option: RoadOption = RoadOption.LANEFOLLOW
    successors: List[int] = field(default_factory=list)
    source: int = -1
    target: int = -1

    @property
    def length(self) -> float:
        """Return the length of the lane (m)."""
        return float(self.points[-1, 3])

    @property
    def is_connector(self) -> bool:
        """Return whether this lane crosses a node."""
        return self.road < 0


@dataclass(frozen=True)
class Building:
    """
    A building: a box standing on the ground.

    :param x: footprint centre x (m)
    :param y: footprint centre y (m)
    :param yaw: heading of its length axis (rad)
    :param length: extent along ``yaw`` (m)
    :param width: extent across (m)
    :param height: height (m)
    :param colour_bgr: facade colour
    """

    x: float
    y: float
    yaw: float
    length: float
    width: float
    height: float
    colour_bgr: Tuple[int, int, int]

    def corners(self) -> np.ndarray:
        """Return the ``(4, 2)`` footprint corners, counter-clockwise."""
        from llava_drive.sim.obstacles import box_corners
        return box_corners(self.x, self.y, self.yaw, self.length, self.width)


@dataclass
class TownMap:
    """
    A generated town (build with :meth:`generate`).

    :param seed: the generating seed
    :param config: generation parameters
    :param nodes: junctions and bends
    :param roads: two-way roads between nodes
    :param lanes: road lanes and connectors; connectors come after all road lanes
    :param parked_cars: parked cars on the shoulders
    :param trees: trees
    :param buildings: buildings
    """

    seed: int
    config: TownConfig
    nodes: List[Node]
    roads: List[Road]
    lanes: List[Lane]
    parked_cars: List[ParkedCar] = field(default_factory=list)
    trees: List[Tree] = field(default_factory=list)
    buildings: List[Building] = field(default_factory=list)

    @classmethod
    def generate(cls, seed: int, config: Optional[TownConfig] = None) -> 'TownMap':
        """
        Generate the town of ``seed`` (the same seed always gives the same town).

        :param seed: non-negative integer
        :param config: generation parameters
        """
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f'town seed must be a non-negative integer, got {seed!r}')
        config = config or TownConfig()
        rng = np.random.default_rng([int(seed), 0x70E1])
        nodes, edges = _grid(rng, config)
        town = cls(int(seed), config, nodes, [], [])
        for a, b in edges:
            town._add_road(rng, a, b)
        for node in nodes:
            node.roads.sort(key=lambda r: town.arm_angle(node.index, r))
        town._connect()
        for node in nodes:
            if node.is_junction:
                node.signalised = bool(rng.random() < config.signal_probability)
                node.major = town._major_roads(node, rng)
        town.parked_cars = town._place_parked_cars(np.random.default_rng([int(seed), 7]))
        town.buildings, town.trees = town._place_scenery(np.random.default_rng([int(seed), 11]))
        return town

    # -- queries ---------------------------------------------------------------------------

    @property
    def road_lane_count(self) -> int:
        """Return how many lanes are road lanes (the rest are connectors)."""
        return 2 * len(self.roads)

    def arm_angle(self, node: int, road: int) -> float:
        """Return the heading (rad) from ``node`` along ``road`` (away from the node)."""
        r = self.roads[road]
        if r.a == node:
            return float(r.centre[0, 2])
        return float(wrap_angle(r.centre[-1, 2] + math.pi))

    def incoming_lanes(self, node: int) -> List[int]:
        """Return the road lanes that end at ``node``."""
        return [lane.index for lane in self.lanes[:self.road_lane_count]
                if lane.end_node == node]

    def bounds(self, margin: float = 0.0) -> Tuple[float, float, float, float]:
        """Return ``(x_min, y_min, x_max, y_max)`` of all roads plus ``margin``."""
        pts = np.vstack([road.centre[:, :2] for road in self.roads]
                        + [[(n.x, n.y)] for n in self.nodes])
        pad = self.config.outer_half_width_m + margin
        return (float(pts[:, 0].min() - pad), float(pts[:, 1].min() - pad),
                float(pts[:, 0].max() + pad), float(pts[:, 1].max() + pad))

    def in_junction(self, x: float, y: float) -> int:
        """Return the junction whose box contains ``(x, y)``, or -1 (bends do not count)."""
        half = self.config.junction_half_size_m + 0.5
        for node in self.nodes:
            if node.is_junction and abs(x - node.x) < half and abs(y - node.y) < half:
                return node.index
        return -1

    # -- construction ----------------------------------------------------------------------

    def _add_road(self, rng: np.random.Generator, a: int, b: int):
        cfg = self.config
        na, nb = self.nodes[a], self.nodes[b]
        delta = np.array((nb.x - na.x, nb.y - na.y))
        distance = float(np.hypot(*delta))
        u = delta / distance
        normal = np.array((-u[1], u[0]))
        start = np.array((na.x, na.y)) + cfg.arm_start_m * u
        length = distance - 2 * cfg.arm_start_m
        t = np.linspace(0.0, length, max(3, int(length / 0.5)))
        bow = np.zeros_like(t)
        stub = 10.0
        if rng.random() < cfg.curve_probability and length > 2 * stub + 20:
            span = length - 2 * stub
            # Largest bow whose curvature 2 pi^2 h / span^2 keeps the radius limit.
            limit = span ** 2 / (2 * math.pi ** 2 * cfg.min_curve_radius_m)
            height = float(rng.uniform(0.5, 1.0)) * limit * (1 if rng.random() < 0.5 else -1)
            inside = (t > stub) & (t < length - stub)
            bow[inside] = height * np.sin(math.pi * (t[inside] - stub) / span) ** 2
        xy = start + t[:, None] * u + bow[:, None] * normal
        centre = resample(xy, cfg.spacing_m)
        road = Road(len(self.roads), a, b, centre)
        forward = offset(centre, -0.5 * cfg.lane_width_m)
        reverse = centre[::-1].copy()
        reverse[:, 2] = wrap_angle(reverse[:, 2] + math.pi)
        backward = offset(reverse, -0.5 * cfg.lane_width_m)
        lanes = []
        for points, s_node, e_node in ((forward, a, b), (backward, b, a)):
            points = resample(points[:, :2], cfg.spacing_m)
            lane = Lane(len(self.lanes), points, s_node, e_node, road=road.index)
            self.lanes.append(lane)
            lanes.append(lane.index)
        road.lanes = tuple(lanes)
        self.roads.append(road)
        na.roads.append(road.index)
        nb.roads.append(road.index)

    def _connect(self):
        cfg = self.config
        for node in self.nodes:
            incoming = self.incoming_lanes(node.index)
            outgoing = [lane.index for lane in self.lanes[:self.road_lane_count]
                        if lane.start_node == node.index]
            for i in incoming:
                src = self.lanes[i]
                for o in outgoing:
                    dst = self.lanes[o]
                    if dst.road == src.road:
                        continue  # no U-turns
                    x0, y0, yaw0 = src.points[-1, :3]
                    x1, y1, yaw1 = dst.points[0, :3]
                    turn = math.degrees(float(wrap_angle(yaw1 - yaw0)))
                    if not node.is_junction:
                        option = RoadOption.LANEFOLLOW
                    elif abs(turn) < STRAIGHT_TOLERANCE_DEG:
                        option = RoadOption.STRAIGHT
                    else:
                        option = RoadOption.LEFT if turn > 0 else RoadOption.RIGHT
                    xy = bezier((x0, y0), yaw0, (x1, y1), yaw1, count=60)
                    points = resample(xy, cfg.spacing_m)
                    points[0, 2], points[-1, 2] = yaw0, yaw1
                    lane = Lane(len(self.lanes), points, node.index, node.index, -1, option,
                                [o], i, o)
                    self.lanes.append(lane)
                    src.successors.append(lane.index)

    def _major_roads(self, node: Node, rng: np.random.Generator) -> Tuple[int, ...]:
        """Return the two arms that are closest to a straight line through the node."""
        best = None
        roads = node.roads
        for i in range(len(roads)):
            for j in range(i + 1, len(roads)):
                bend = abs(float(wrap_angle(self.arm_angle(node.index, roads[i])
                                            - self.arm_angle(node.index, roads[j]) + math.pi)))
                bend += 0.05 * float(rng.random())  # break ties of a regular 4-way at random
                if best is None or bend < best[0]:
                    best = (bend, (roads[i], roads[j]))
        return best[1]

    def _place_parked_cars(self, rng: np.random.Generator) -> List[ParkedCar]:
        cfg = self.config
        if cfg.shoulder_width_m < PARKED_CAR_WIDTH_M + 0.1:
            return []
        side = cfg.lane_width_m + 0.25 + 0.5 * PARKED_CAR_WIDTH_M
        cars = []
        for road in self.roads:
            for sign in (-1.0, 1.0):
                s = 18.0 + rng.exponential(cfg.parked_car_mean_gap_m)
                while s < road.length - 18.0:
                    i = int(s / cfg.spacing_m)
                    x, y, yaw = offset(road.centre[i:i + 1], sign * side)[0, :3]
                    if sign > 0:
                        yaw = float(wrap_angle(yaw + math.pi))  # parked facing its lane's way
                    colour = CAR_COLOURS_BGR[int(rng.integers(len(CAR_COLOURS_BGR)))]
                    cars.append(ParkedCar(float(x), float(y), float(yaw), s=float(s),
                                          lateral=sign * side, colour_bgr=colour))
                    s += PARKED_CAR_LENGTH_M + 2.0 + rng.exponential(cfg.parked_car_mean_gap_m)
        return cars

    def _place_scenery(self, rng: np.random.Generator):
        """Place buildings behind the sidewalks and trees in the gaps, never on a road."""
        cfg = self.config
        res = 0.5
        x_min, y_min, x_max, y_max = self.bounds(60.0)
        shape = (int((y_max - y_min) / res) + 1, int((x_max - x_min) / res) + 1)
        taken = np.zeros(shape, np.uint8)
        roads_only = np.zeros(shape, np.uint8)

        def px(xy):
            xy = np.atleast_2d(xy)
            return np.round(np.stack(((xy[:, 0] - x_min) / res, (y_max - xy[:, 1]) / res),
                                     axis=1)).astype(np.int32)

        keep_out = cfg.outer_half_width_m + cfg.building_setback_m
        for mask, margin in ((taken, keep_out), (roads_only, cfg.outer_half_width_m + 0.3)):
            for road in self.roads:
                cv2.polylines(mask, [px(road.centre[:, :2])], False, 1,
                              int(2 * margin / res) + 1)
            for node in self.nodes:
                cv2.circle(mask, tuple(px((node.x, node.y))[0]),
                           int((cfg.arm_start_m + margin) / res), 1, -1)
            for lane in self.lanes[self.road_lane_count:]:
                cv2.polylines(mask, [px(lane.points[:, :2])], False, 1,
                              int(2 * (margin + 1.0) / res) + 1)
            for light in _light_poles(self):
                cv2.circle(mask, tuple(px(light)[0]), int(1.5 / res), 1, -1)

        def free(corners, against) -> bool:
            mask = np.zeros_like(against)
            cv2.fillConvexPoly(mask, px(corners), 1)
            return not (mask & against).any()

        buildings, trees = [], []
        trees_taken = np.zeros_like(taken)
        for road in self.roads:
            for sign in (-1.0, 1.0):
                s = float(rng.uniform(0.0, 8.0))
                while s < road.length:
                    i = min(int(s / cfg.spacing_m), len(road.centre) - 1)
                    length = float(rng.uniform(9.0, 22.0))
                    depth = float(rng.uniform(8.0, 16.0))
                    setback = keep_out + float(rng.uniform(0.3, 3.0)) + 0.5 * depth
                    x, y, yaw = offset(road.centre[i:i + 1], sign * setback)[0, :3]
                    tall = rng.random() < 0.4
                    height = float(rng.uniform(10.0, 24.0) if tall else rng.uniform(5.0, 10.0))
                    colour = FACADE_COLOURS_BGR[int(rng.integers(len(FACADE_COLOURS_BGR)))]
                    # Centred half a length further on, so it starts at s.
                    x += 0.5 * length * math.cos(yaw)
                    y += 0.5 * length * math.sin(yaw)
                    building = Building(float(x), float(y), float(yaw), length, depth, height,
                                        colour)
                    if free(building.corners(), taken):
                        buildings.append(building)
                        cv2.fillConvexPoly(taken, px(building.corners()), 1)
                        cv2.fillConvexPoly(trees_taken, px(building.corners()), 1)
                        s += length + float(rng.uniform(1.0, 8.0))
                    else:
                        s += 3.0
        for road in self.roads:
            for sign in (-1.0, 1.0):
                s = float(rng.exponential(cfg.tree_mean_gap_m))
                while s < road.length:
                    i = min(int(s / cfg.spacing_m), len(road.centre) - 1)
                    # At the back of the sidewalk, between the buildings.
                    tx, ty, _ = offset(road.centre[i:i + 1], sign * (keep_out - 0.3))[0, :3]
                    corners = np.array(((tx - .6, ty - .6), (tx + .6, ty - .6),
                                        (tx + .6, ty + .6), (tx - .6, ty + .6)))
                    if free(corners, roads_only) and free(corners, trees_taken):
                        green = (int(rng.integers(25, 60)), int(rng.integers(80, 130)),
                                 int(rng.integers(30, 75)))
                        trees.append(Tree(float(tx), float(ty), float(rng.uniform(4.0, 7.5)),
                                          float(rng.uniform(2.0, 3.4)), green))
                        cv2.circle(trees_taken, tuple(px((tx, ty))[0]), int(2.5 / res), 1, -1)
                    s += float(rng.exponential(cfg.tree_mean_gap_m)) + 2.0
        return buildings, trees


def light_pose(town: TownMap, lane_index: int) -> Tuple[float, float, float]:
    """
    Return ``(x, y, yaw)`` of the pole of the traffic light for an incoming lane.

    The pole stands on the far side of the junction, right of the lane's straight-on line,
    with its arm reaching over the lane; ``yaw`` is the lane's heading (the lamps face the
    approaching traffic, i.e. look along ``yaw + pi``).

    :param town: the town
    :param lane_index: an incoming road lane of a junction
    """
    cfg = town.config
    lane = town.lanes[lane_index]
    x, y, yaw = lane.points[-1, :3]
    node = town.nodes[lane.end_node]
    # Distance along the lane heading from the stop line to the node centre, then beyond it.
    along = (node.x - x) * math.cos(yaw) + (node.y - y) * math.sin(yaw)
    ahead = along + cfg.arm_start_m
    right = cfg.asphalt_half_width_m - 0.5 * cfg.lane_width_m + 0.8
    return (float(x + ahead * math.cos(yaw) + right * math.sin(yaw)),
            float(y + ahead * math.sin(yaw) - right * math.cos(yaw)), float(yaw))


def _light_poles(town: TownMap) -> List[Tuple[float, float]]:
    """Return where light poles could stand (every junction approach), for keep-out."""
    poles = []
    for node in town.nodes:
        if node.is_junction:
            for lane in town.incoming_lanes(node.index):
                poles.append(light_pose(town, lane)[:2])
    return poles


def _grid(rng: np.random.Generator, cfg: TownConfig):
    """Return jittered grid nodes and the kept edges (every node keeps >= 2, connected)."""
    xs = np.concatenate(([0.0], np.cumsum(rng.uniform(cfg.min_block_m, cfg.max_block_m,
                                                      cfg.columns - 1))))
    ys = np.concatenate(([0.0], np.cumsum(rng.uniform(cfg.min_block_m, cfg.max_block_m,
                                                      cfg.rows - 1))))
    nodes = []
    for j in range(cfg.rows):
        for i in range(cfg.columns):
            jitter = rng.uniform(-cfg.jitter_m, cfg.jitter_m, 2)
            nodes.append(Node(len(nodes), float(xs[i] + jitter[0]), float(ys[j] + jitter[1])))
    edges = []
    for j in range(cfg.rows):
        for i in range(cfg.columns):
            k = j * cfg.columns + i
            if i + 1 < cfg.columns:
                edges.append((k, k + 1))
            if j + 1 < cfg.rows:
                edges.append((k, k + cfg.columns))
    order = rng.permutation(len(edges))
    kept = set(range(len(edges)))
    for e in order:
        if rng.random() >= cfg.drop_edge_probability:
            continue
        trial = kept - {int(e)}
        degree: Dict[int, int] = {}
        for t in trial:
            for n in edges[t]:
                degree[n] = degree.get(n, 0) + 1
        if min(degree.get(n, 0) for n in range(len(nodes))) < 2:
            continue
        if _connected(len(nodes), [edges[t] for t in trial]):
            kept = trial
    return nodes, [edges[e] for e in sorted(kept)]


def _connected(count: int, edges) -> bool:
    neighbours = {n: [] for n in range(count)}
    for a, b in edges:
        neighbours[a].append(b)
        neighbours[b].append(a)
    seen, stack = {0}, [0]
    while stack:
        for m in neighbours[stack.pop()]:
            if m not in seen:
                seen.add(m)
                stack.append(m)
    return len(seen) == count
