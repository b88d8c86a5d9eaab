"""
Seeded routes through a town's lane graph, with CARLA route commands and one scenario.

A :class:`TownRoute` starts in a road lane, crosses 1 to 3 junctions (bends do not count) and
ends in a road lane, 150-400 m further. Its dense path (one point per ``spacing_m``) carries
the ``RoadOption`` of the lane each point lies on: LEFT, RIGHT or STRAIGHT on junction
connectors, LANEFOLLOW elsewhere, as CARLA's global route planner labels a route;
:meth:`TownRoute.global_plan` gives the :class:`~llava_drive.planning.GlobalPlan` (sparse
targets downsampled as the leaderboard does, plus the dense points).

Every route names one scenario (:data:`SCENARIOS`), chosen by ``seed % 4`` and placed where the
route allows it:

* ``lead_brake``: a vehicle drives ahead in the ego lane and brakes hard on a straight;
* ``crossing_traffic``: at an unsignalised junction that the ego enters from a minor road, a
  vehicle on the priority road crosses just as the ego arrives (the ego must give way);
* ``red_light``: a signalised junction whose light is red as the ego arrives;
* ``stopped_vehicle``: a vehicle stands in the ego lane and moves off slowly later.
"""
from dataclasses import dataclass, field
import math
from typing import List, Optional, Tuple

from llava_drive.planning import GlobalPlan, RoadOption
from llava_drive.sim.road import Route, RouteConfig
from llava_drive.sim.town.geometry import resample
from llava_drive.sim.town.network import TownMap
import numpy as np

SCENARIOS = ('lead_brake', 'crossing_traffic', 'red_light', 'stopped_vehicle')
MIN_ROUTE_M = 150.0
MAX_ROUTE_M = 400.0
# Drawn (not driven) path before the start and after the goal.
LEAD_IN_M = 30.0
LEAD_OUT_M = 80.0


@dataclass(frozen=True)
class JunctionCrossing:
    """
    One junction (or bend) on a route.

    :param node: the node
    :param connector: the connector lane driven through it
    :param option: its :class:`~llava_drive.planning.RoadOption`
    :param s_entry: route arc length of the connector's start (the stop line)
    :param s_exit: route arc length of its end
    :param source: the incoming road lane
    """

    node: int
    connector: int
    option: RoadOption
    s_entry: float
    s_exit: float
    source: int


@dataclass
class TownRoute:
    """
    A route through a town.

    :param seed: route seed
    :param town: the town it runs in
    :param lanes: lane indices in driving order (road lane, connector, road lane, ...)
    :param start_s: where the route starts on its first lane (m)
    :param end_s: where it ends on its last lane (m)
    :param path: ``(N, 4)`` dense rows ``x, y, yaw, s`` with s = 0 at the start, from
        ``-LEAD_IN_M`` to ``length + LEAD_OUT_M`` (the lead-out continues straight on)
    :param options: RoadOption per row of ``path``
    :param crossings: the nodes crossed (junctions and bends) in order
    :param scenario: one of :data:`SCENARIOS`
    :param scenario_s: route arc length where the scenario happens (stop line, brake point,
        or stopped vehicle)
    :param scenario_node: the junction of a junction scenario, else -1
    :param lead_out_lanes: lanes after the goal that the lead-out follows
    """

    seed: int
    town: TownMap
    lanes: List[int]
    start_s: float
    end_s: float
    path: np.ndarray = None
    options: np.ndarray = None
    crossings: List[JunctionCrossing] = field(default_factory=list)
    scenario: str = ''
    scenario_s: float = 0.0
    scenario_node: int = -1
    lead_out_lanes: List[int] = field(default_factory=list)
    length: float = 0.0

    @classmethod
    def generate(cls, seed: int, town: TownMap, scenario: Optional[str] = None) -> 'TownRoute':
        """
        Draw the route of ``seed`` in ``town``.

        :param seed: non-negative integer
        :param town: the town
        :param scenario: force a scenario (default ``SCENARIOS[seed % 4]``)
        :raises ValueError: when no route with the scenario fits the town after many draws
        """
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f'route seed must be a non-negative integer, got {seed!r}')
        scenario = SCENARIOS[int(seed) % len(SCENARIOS)] if scenario is None else scenario
        if scenario not in SCENARIOS:
            raise ValueError(f'scenario must be one of {SCENARIOS}, got {scenario!r}')
        rng = np.random.default_rng([int(seed), 0x2017])
        for _ in range(2000):
            route = cls._draw(int(seed), town, rng)
            if route is not None and route._place_scenario(scenario, rng):
                return route
        raise ValueError(f'no {scenario} route found in town {town.seed} for seed {seed}')

    @classmethod
    def _draw(cls, seed: int, town: TownMap, rng) -> Optional['TownRoute']:
        first = int(rng.integers(town.road_lane_count))
        lane = town.lanes[first]
        if lane.length < 50.0:
            return None
        start_s = float(rng.uniform(5.0, lane.length - 40.0))
        target = float(rng.uniform(MIN_ROUTE_M + 30.0, MAX_ROUTE_M - 30.0))
        lanes = [first]
        total = lane.length - start_s
        while True:
            current = town.lanes[lanes[-1]]
            connector = town.lanes[int(rng.choice(current.successors))]
            after = town.lanes[connector.target]
            lanes += [connector.index, after.index]
            if total + connector.length + after.length - 20.0 >= target:
                end_s = target - total - connector.length
                end_s = min(max(end_s, 15.0), after.length - 20.0)
                break
            total += connector.length + after.length
        route = cls(seed, town, lanes, start_s, end_s)
        route._build()
        junctions = sum(1 for c in route.crossings if town.nodes[c.node].is_junction)
        if not (1 <= junctions <= 3 and MIN_ROUTE_M <= route.length <= MAX_ROUTE_M):
            return None
        return route

    def _build(self):
        town = self.town
        pieces, options, crossings = [], [], []
        s = 0.0
        for k, index in enumerate(self.lanes):
            lane = town.lanes[index]
            pts = lane.points
            lo = self.start_s if k == 0 else 0.0
            hi = self.end_s if k == len(self.lanes) - 1 else lane.length
            mask = (pts[:, 3] >= lo - 1e-9) & (pts[:, 3] <= hi + 1e-9)
            piece = pts[mask, :2]
            if lane.is_connector:
                crossings.append(JunctionCrossing(lane.start_node, index, lane.option, s,
                                                  s + lane.length, lane.source))
            pieces.append(piece)
            options.append(np.full(len(piece), lane.option))
            s += hi - lo
        self.crossings = crossings
        self.length = s
        # Lead-in: the first lane before the start (or straight back), lead-out: straight on.
        first = town.lanes[self.lanes[0]]
        before = first.points[first.points[:, 3] < self.start_s - 1e-9, :2]
        x0, y0, yaw0 = first.points[0, :3]
        back = np.array([(x0 - d * math.cos(yaw0), y0 - d * math.sin(yaw0))
                         for d in np.arange(LEAD_IN_M, 0.0, -1.0)])
        lead_in = np.vstack((back, before)) if len(before) else back
        last = town.lanes[self.lanes[-1]]
        after = [last.points[last.points[:, 3] > self.end_s + 1e-9, :2]]
        remaining = LEAD_OUT_M - (last.length - self.end_s)
        current = last
        self.lead_out_lanes = []
        while remaining > 0:
            # Prefer going straight (or following a bend) after the goal.
            successors = [town.lanes[i] for i in current.successors]
            onward = (RoadOption.STRAIGHT, RoadOption.LANEFOLLOW)
            successors.sort(key=lambda c: (c.option not in onward, c.index))
            connector = successors[0]
            current = town.lanes[connector.target]
            self.lead_out_lanes += [connector.index, current.index]
            after += [connector.points[:, :2], current.points[:, :2]]
            remaining -= connector.length + current.length
        driven = np.vstack(pieces)
        tail = np.vstack(after)
        full = resample(np.vstack((lead_in, driven, tail)), 1.0)
        # s = 0 at the start: the lead-in's length, measured on the resampled path.
        lead = float(np.hypot(*np.diff(np.vstack((lead_in, driven[:1])), axis=0).T).sum())
        full[:, 3] -= lead
        keep = (full[:, 3] >= -LEAD_IN_M - 1e-6) & (full[:, 3] <= self.length + LEAD_OUT_M)
        full = full[keep]
        # Uniform spacing from -LEAD_IN_M: what Route.pose_at expects.
        s_values = np.arange(-LEAD_IN_M, self.length + LEAD_OUT_M + 1e-9, 1.0)
        rows = np.empty((len(s_values), 4))
        for col in (0, 1):
            rows[:, col] = np.interp(s_values, full[:, 3], full[:, col])
        rows[:, 3] = s_values
        d = np.gradient(rows[:, :2], axis=0)
        rows[:, 2] = np.arctan2(d[:, 1], d[:, 0])
        self.path = rows
        opts = np.full(len(rows), int(RoadOption.LANEFOLLOW))
        for c in crossings:
            opts[(s_values >= c.s_entry) & (s_values < c.s_exit)] = int(c.option)
        self.options = opts

    def _place_scenario(self, scenario: str, rng) -> bool:
        town = self.town
        junctions = [c for c in self.crossings if town.nodes[c.node].is_junction]
        self.scenario = scenario
        if scenario == 'red_light':
            signalised = [c for c in junctions if town.nodes[c.node].signalised]
            if not signalised or signalised[0].s_entry < 50.0:
                return False
            self.scenario_node, self.scenario_s = signalised[0].node, signalised[0].s_entry
            return True
        if scenario == 'crossing_traffic':
            for c in junctions:
                node = town.nodes[c.node]
                if node.signalised or town.lanes[c.source].road in node.major or \
                        c.s_entry < 50.0:
                    continue
                self.scenario_node, self.scenario_s = c.node, c.s_entry
                return True
            return False
        # lead_brake / stopped_vehicle: a stretch of road lane, clear of junctions.
        lo = 60.0 if scenario == 'lead_brake' else 50.0
        blocked = [(c.s_entry - 25.0, c.s_exit + 10.0) for c in self.crossings]
        candidates = [s for s in np.arange(lo, min(self.length - 30.0, 160.0), 5.0)
                      if all(not a <= s <= b for a, b in blocked)]
        if not candidates:
            return False
        self.scenario_s = float(candidates[int(rng.integers(len(candidates)))])
        return True

    # -- views ---------------------------------------------------------------------------

    def ego_route(self) -> Route:
        """Return the dense path as a :class:`~llava_drive.sim.road.Route` (no scenery)."""
        config = RouteConfig(length_m=self.length, lead_in_m=LEAD_IN_M,
                             lead_out_m=float(self.path[-1, 3] - self.length), spacing_m=1.0,
                             parked_cars=False, trees=False)
        return Route(self.seed, config, [], self.path.copy())

    def dense(self) -> Tuple[np.ndarray, List[RoadOption]]:
        """Return the driven part of the path ``(x, y, yaw)`` rows and their options."""
        mask = (self.path[:, 3] >= 0.0) & (self.path[:, 3] <= self.length + 1e-9)
        return self.path[mask, :3].copy(), [RoadOption(int(o)) for o in self.options[mask]]

    def global_plan(self) -> GlobalPlan:
        """Return the plan: dense waypoints and the sparse targets the leaderboard keeps."""
        return GlobalPlan.from_dense(*self.dense())

    def junction_count(self) -> int:
        """Return how many junctions (not bends) the route crosses."""
        return sum(1 for c in self.crossings if self.town.nodes[c.node].is_junction)

    def describe(self) -> dict:
        """Return a plain summary: length, junction moves, scenario."""
        return {'seed': self.seed, 'town': self.town.seed, 'length_m': round(self.length, 1),
                'junctions': [RoadOption(c.option).name for c in self.crossings
                              if self.town.nodes[c.node].is_junction],
                'scenario': self.scenario, 'scenario_s': round(self.scenario_s, 1)}
