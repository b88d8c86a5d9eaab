"""
Other road users of a town, and the scripted vehicles of a route's scenario.

Vehicles follow lanes, keep their gap, obey lights and give way.
Each vehicle moves along a chain of lanes (road lane, connector, road lane, ...; chosen at
random at every junction once its planned lanes run out) by arc length, with speed from the
intelligent driver model (Treiber's IDM): the free-road term towards its desired speed (lowered
before curves so the lateral acceleration stays below ``lateral_accel_mps2``) and the
interaction term for the nearest obstacle ahead: the next vehicle on its lanes (the ego
included) or a stop line it must not pass.

Junctions are entered under **reservation**: a vehicle about to enter reserves its connector,
which succeeds only when no reserved connector of that junction conflicts with it (paths that
cross, merge or share an entry) and its exit lane has room; it holds it until its rear has left
the box. Signalised junctions add the light (stop on red, and on yellow when there is room to
stop); at unsignalised ones, vehicles on a minor road stop at the line and then wait until no
vehicle on the priority road is coming (within ``priority_distance_m``). The ego takes part: its
connector is reserved for it once its front passes the stop line, or earlier when its driver
asks (:meth:`Traffic.request_for_ego`).
"""
from dataclasses import dataclass
import math
from typing import Dict, List, Optional, Tuple

from llava_drive.config_checks import number_in_range
from llava_drive.sim.obstacles import box_corners, CAR_COLOURS_BGR
from llava_drive.sim.town.lights import GREEN, RED, TrafficLights, YELLOW
from llava_drive.sim.town.network import TownMap
import numpy as np

EGO = -1
# Connectors whose paths come closer than this (m) conflict: two cars 1.9 m wide would touch.
CONFLICT_DISTANCE_M = 2.6
SCRIPTS = ('lead_brake', 'stopped_vehicle', 'crossing_traffic')


@dataclass
class TrafficConfig:
    """
    Traffic parameters (SI units).

    :param vehicles: how many vehicles drive the town besides the scenario's
    :param desired_speed_mps: cruise speed (each vehicle varies it by +-15 %)
    :param max_accel_mps2: IDM maximum acceleration ``a``
    :param comfort_decel_mps2: IDM comfortable deceleration ``b``
    :param max_decel_mps2: hardest braking a vehicle can do
    :param time_headway_s: IDM time headway ``T``
    :param min_gap_m: IDM standstill gap ``s0``
    :param lateral_accel_mps2: speed in curves is limited to ``sqrt(this / curvature)``
    :param priority_distance_m: a minor-road vehicle waits while a priority-road vehicle is
        this close to the junction
    :param lookahead_m: how far ahead a vehicle looks for obstacles
    """

    vehicles: int = 16
    desired_speed_mps: float = 8.0
    max_accel_mps2: float = 1.5
    comfort_decel_mps2: float = 2.5
    max_decel_mps2: float = 9.0
    time_headway_s: float = 1.4
    min_gap_m: float = 3.0
    lateral_accel_mps2: float = 2.0
    priority_distance_m: float = 35.0
    lookahead_m: float = 60.0

    def __post_init__(self):
        """Check every value."""
        if isinstance(self.vehicles, bool) or not isinstance(self.vehicles, int) or \
                not 0 <= self.vehicles <= 200:
            raise ValueError(f'TrafficConfig.vehicles must be an integer in [0, 200], '
                             f'got {self.vehicles!r}')
        for name in ('desired_speed_mps', 'max_accel_mps2', 'comfort_decel_mps2',
                     'max_decel_mps2', 'time_headway_s', 'min_gap_m', 'lateral_accel_mps2',
                     'priority_distance_m', 'lookahead_m'):
            number_in_range(f'TrafficConfig.{name}', getattr(self, name), 0, 1e4,
                            low_open=True)


@dataclass
class Agent:
    """
    One vehicle of the traffic.

    :param ident: its number (>= 0; the ego is :data:`EGO`)
    :param lanes: its lane chain
    :param k: index of its current lane in ``lanes``
    :param s: arc length of its centre on the current lane (m)
    :param speed: speed (m/s)
    :param desired_speed: cruise speed (m/s)
    :param colour_bgr: paint colour
    :param length: length (m)
    :param width: width (m)
    :param script: scenario role (one of :data:`SCRIPTS`) or ''
    :param trigger_s: for scripts, the arc length along ``lanes`` where it acts
    """

    ident: int
    lanes: List[int]
    k: int
    s: float
    speed: float
    desired_speed: float
    colour_bgr: Tuple[int, int, int]
    length: float = 4.5
    width: float = 1.85
    script: str = ''
    trigger_s: float = 0.0
    travelled: float = 0.0
    accel: float = 0.0
    reserved: Optional[Tuple[int, int]] = None
    stopped_at_line: bool = False
    phase: str = ''
    phase_time: float = 0.0
    x: float = 0.0
    y: float = 0.0
    yaw: float = 0.0
    active: bool = True

    @property
    def lane(self) -> int:
        """Return the current lane."""
        return self.lanes[self.k]

    def corners(self) -> np.ndarray:
        """Return the footprint corners."""
        return box_corners(self.x, self.y, self.yaw, self.length, self.width)


@dataclass
class EgoPlace:
    """
    Where the ego is in the lane graph, as the world tells the traffic each step.

    :param lane: lane it drives on (-1 when it is off its route's lanes)
    :param s: arc length on that lane (m)
    :param speed: speed (m/s)
    :param next_lanes: the route's lanes after ``lane`` (for its approach to junctions)
    :param length: its length (m)
    """

    lane: int
    s: float
    speed: float
    next_lanes: Tuple[int, ...]
    length: float


class Traffic:
    """
    The vehicles of a town (see the module docstring).

    :param town: the town
    :param lights: its traffic lights
    :param config: parameters
    :param rng: random generator for spawning and route choices
    """

    def __init__(self, town: TownMap, lights: TrafficLights, config: TrafficConfig,
                 rng: np.random.Generator):
        """Precompute lane speed limits and connector conflicts; no vehicles yet."""
        self.town = town
        self.lights = lights
        self.config = config
        self.rng = rng
        self.agents: List[Agent] = []
        self.reservations: Dict[int, Dict[int, int]] = {n.index: {} for n in town.nodes}
        self.ego: Optional[EgoPlace] = None
        self._ego_reserved: Optional[Tuple[int, int]] = None
        self.speed_limit = np.empty(len(town.lanes))
        for lane in town.lanes:
            pts = lane.points
            limit = config.desired_speed_mps * 1.2
            if lane.is_connector and len(pts) > 4:
                dyaw = np.abs(np.angle(np.exp(1j * np.diff(pts[1:-1, 2]))))
                curvature = float((dyaw / np.maximum(np.diff(pts[1:-1, 3]), 1e-6)).max())
                limit = min(limit, math.sqrt(config.lateral_accel_mps2 / max(curvature, 1e-6)))
            self.speed_limit[lane.index] = limit
        self.conflicts: Dict[int, set] = {}
        for node in town.nodes:
            connectors = [lane for lane in town.lanes if lane.is_connector
                          and lane.start_node == node.index]
            for a in connectors:
                self.conflicts[a.index] = set()
            for i, a in enumerate(connectors):
                for b in connectors[i + 1:]:
                    if _conflict(a, b):
                        self.conflicts[a.index].add(b.index)
                        self.conflicts[b.index].add(a.index)

    # -- spawning --------------------------------------------------------------------------

    def spawn_random(self, count: int, keep_clear: List[Tuple[int, float, float]]):
        """
        Place ``count`` vehicles on random road lanes, apart from each other.

        :param count: how many
        :param keep_clear: ``(lane, s_from, s_to)`` stretches where none may stand
        """
        town = self.town
        lengths = np.array([town.lanes[i].length for i in range(town.road_lane_count)])
        weights = lengths / lengths.sum()
        for _ in range(count * 20):
            if count <= 0:
                break
            lane_index = int(self.rng.choice(town.road_lane_count, p=weights))
            lane = town.lanes[lane_index]
            if lane.length < 30.0:
                continue
            s = float(self.rng.uniform(8.0, lane.length - 12.0))
            if any(lane_index == c and lo <= s <= hi for c, lo, hi in keep_clear):
                continue
            if any(a.lane == lane_index and abs(a.s - s) < 14.0 for a in self.agents):
                continue
            self.add(lane_index, s, float(self.rng.uniform(0.5, 1.0)) *
                     self.config.desired_speed_mps)
            count -= 1

    def add(self, lane: int, s: float, speed: float, lanes: Optional[List[int]] = None,
            script: str = '', trigger_s: float = 0.0, desired: Optional[float] = None) -> Agent:
        """
        Add a vehicle.

        :param lane: its lane (the first of ``lanes`` when given)
        :param s: arc length on that lane (m)
        :param speed: initial speed (m/s)
        :param lanes: planned lane chain (default: only ``lane``, then random)
        :param script: scenario role
        :param trigger_s: where the script acts, as distance travelled from the spawn (m)
        :param desired: cruise speed (default: the configured one +-15 %)
        """
        if desired is None:
            desired = self.config.desired_speed_mps * float(self.rng.uniform(0.85, 1.15))
        colour = CAR_COLOURS_BGR[int(self.rng.integers(len(CAR_COLOURS_BGR)))]
        agent = Agent(len(self.agents), list(lanes or [lane]), 0, float(s), float(speed),
                      float(desired), colour, script=script, trigger_s=float(trigger_s))
        self._extend(agent)
        self._place(agent)
        self.agents.append(agent)
        return agent

    # -- queries ---------------------------------------------------------------------------

    def clear_for(self, connector: int, holder: int) -> bool:
        """
        Return whether ``connector`` could be reserved by ``holder`` now.

        No conflicting connector is reserved by someone else, and its exit lane has room.

        :param connector: a connector lane
        :param holder: agent id or :data:`EGO`
        """
        town = self.town
        lane = town.lanes[connector]
        held = self.reservations[lane.start_node]
        for other, who in held.items():
            if who != holder and (other == connector or other in self.conflicts[connector]):
                return False
        room = 4.5 + 2.0
        for a in self.agents:
            if a.active and a.ident != holder and a.lane == lane.target and a.s < room:
                return False
        return True

    def priority_traffic_coming(self, connector: int, holder: int) -> bool:
        """
        Return whether a vehicle on the priority road approaches a conflicting path.

        :param connector: the connector the minor-road vehicle wants
        :param holder: agent id or :data:`EGO` (never counts itself)
        """
        town = self.town
        lane = town.lanes[connector]
        node = town.nodes[lane.start_node]
        conflicts = self.conflicts[connector]
        for a in self._occupants():
            ident, on_lane, s, speed, nxt = a
            if ident == holder or on_lane < 0:
                continue
            road_lane = town.lanes[on_lane]
            if road_lane.is_connector or road_lane.end_node != node.index or \
                    road_lane.road not in node.major:
                continue
            distance = road_lane.length - s
            if distance > self.config.priority_distance_m:
                continue
            if nxt is None or nxt in conflicts or nxt == connector or \
                    town.lanes[nxt].target == lane.target:
                return True
        return False

    def request_for_ego(self, connector: int, minor_must_yield: bool = True) -> bool:
        """
        Reserve ``connector`` for the ego if it is clear; return whether the ego may go.

        :param connector: the ego's next connector
        :param minor_must_yield: on a minor road, also wait for priority traffic
        """
        lane = self.town.lanes[connector]
        node = self.town.nodes[lane.start_node]
        if self._ego_reserved == (node.index, connector):
            return True
        if not self.clear_for(connector, EGO):
            return False
        if minor_must_yield and not node.signalised and \
                self.town.lanes[lane.source].road not in node.major and \
                self.priority_traffic_coming(connector, EGO):
            return False
        self._reserve_ego(node.index, connector)
        return True

    # -- stepping --------------------------------------------------------------------------

    def step(self, dt: float, time: float, ego: Optional[EgoPlace]):
        """
        Advance every vehicle by ``dt``.

        :param dt: step (s)
        :param time: simulated time after the step (for the lights) (s)
        :param ego: where the ego is now (None: it is not in the lane graph)
        """
        self.ego = ego
        self._index = self._by_lane()
        accels = [self._decide(a, dt, time) if a.active else 0.0 for a in self.agents]
        for a, accel in zip(self.agents, accels):
            if a.active:
                self._move(a, accel, dt)

    def update_ego(self, connector: int, front_past_stop: bool, rear_left: bool):
        """
        Keep the ego's reservation in step with where it is.

        :param connector: the connector the ego is entering or in (-1: none)
        :param front_past_stop: its front has passed that connector's stop line
        :param rear_left: its rear has left the connector
        """
        if self._ego_reserved is not None and (rear_left or
                                               self._ego_reserved[1] != connector):
            node, held = self._ego_reserved
            if self.reservations[node].get(held) == EGO:
                del self.reservations[node][held]
            self._ego_reserved = None
        if connector >= 0 and front_past_stop and not rear_left and \
                self._ego_reserved is None:
            self._reserve_ego(self.town.lanes[connector].start_node, connector)

    def _reserve_ego(self, node: int, connector: int):
        self.reservations[node][connector] = EGO
        self._ego_reserved = (node, connector)

    # -- internals -------------------------------------------------------------------------

    def _occupants(self):
        """Yield ``(ident, lane, s, speed, next connector)`` of every vehicle and the ego."""
        for a in self.agents:
            if a.active:
                nxt = a.lanes[a.k + 1] if a.k + 1 < len(a.lanes) else None
                yield a.ident, a.lane, a.s, a.speed, nxt
        ego = self.ego
        if ego is not None and ego.lane >= 0:
            nxt = ego.next_lanes[0] if ego.next_lanes else None
            yield EGO, ego.lane, ego.s, ego.speed, nxt

    def _by_lane(self) -> Dict[int, List[Tuple[float, float, float, int]]]:
        index: Dict[int, List[Tuple[float, float, float, int]]] = {}
        for a in self.agents:
            if a.active:
                index.setdefault(a.lane, []).append((a.s, a.speed, a.length, a.ident))
        ego = self.ego
        if ego is not None and ego.lane >= 0:
            index.setdefault(ego.lane, []).append((ego.s, ego.speed, ego.length, EGO))
        return index

    def _extend(self, a: Agent):
        """Make sure the agent has at least three lanes planned past its current one."""
        town = self.town
        while len(a.lanes) - a.k < 4:
            last = town.lanes[a.lanes[-1]]
            if last.is_connector:
                a.lanes.append(last.target)
            else:
                a.lanes.append(int(self.rng.choice(last.successors)))

    def _place(self, a: Agent):
        pts = self.town.lanes[a.lane].points
        s = pts[:, 3]
        a.x = float(np.interp(a.s, s, pts[:, 0]))
        a.y = float(np.interp(a.s, s, pts[:, 1]))
        i = min(int(np.searchsorted(s, a.s)), len(pts) - 1)
        a.yaw = float(pts[i, 2])

    def _decide(self, a: Agent, dt: float, time: float) -> float:
        cfg = self.config
        town = self.town
        lane = town.lanes[a.lane]
        v = a.speed
        desired = min(a.desired_speed, self.speed_limit[a.lane])
        # Leader: the nearest vehicle ahead along the agent's lanes.
        gap, lead_speed = math.inf, 0.0
        offset = -a.s
        for k in range(a.k, len(a.lanes)):
            index = a.lanes[k]
            for s_other, v_other, l_other, ident in self._index.get(index, ()):
                if ident == a.ident:
                    continue
                ahead = offset + s_other
                if ahead > 0.0 or (k > a.k and ahead >= 0.0):
                    g = ahead - 0.5 * (a.length + l_other)
                    if g < gap:
                        gap, lead_speed = g, v_other
            offset += town.lanes[index].length
            if k > a.k and town.lanes[index].is_connector:
                # Slow down in time for the curve of a connector ahead.
                distance = offset - town.lanes[index].length
                limit = self.speed_limit[index]
                desired = min(desired, math.sqrt(limit ** 2 + 2.0 * cfg.comfort_decel_mps2
                                                 * max(0.0, distance - 2.0)))
            if offset > cfg.lookahead_m or gap < math.inf:
                break
        accel = self._idm(v, desired, gap, lead_speed, cfg.min_gap_m)
        # Stop line at the end of a road lane, before a junction.
        if not lane.is_connector and town.nodes[lane.end_node].is_junction:
            connector = a.lanes[a.k + 1]
            to_line = lane.length - a.s - 0.5 * a.length
            if not self._may_enter(a, connector, to_line, time):
                accel = min(accel, self._idm(v, desired, max(to_line, 0.0), 0.0, 0.8))
        return self._script(a, accel, dt)

    def _may_enter(self, a: Agent, connector: int, to_line: float, time: float) -> bool:
        town = self.town
        lane = town.lanes[connector]
        node = town.nodes[lane.start_node]
        if a.reserved == (node.index, connector):
            return True
        v = a.speed
        if to_line > v * v / (2.0 * self.config.comfort_decel_mps2) + 6.0:
            return True  # far from the line: nothing to decide yet
        if node.signalised:
            light = self.lights.by_lane.get(lane.source)
            state = self.lights.state(light, time) if light is not None else GREEN
            if state == RED:
                return False
            if state == YELLOW and to_line > v * v / (2.0 * 4.0) + 0.5:
                return False
        elif town.lanes[lane.source].road not in node.major:
            if not a.stopped_at_line:
                if v < 0.3 and to_line < 3.0:
                    a.stopped_at_line = True
                else:
                    return False
            if self.priority_traffic_coming(connector, a.ident):
                return False
        if not self.clear_for(connector, a.ident):
            return False
        self.reservations[node.index][connector] = a.ident
        a.reserved = (node.index, connector)
        return True

    def _idm(self, v: float, desired: float, gap: float, lead_speed: float,
             min_gap: float) -> float:
        cfg = self.config
        free = 1.0 - (v / max(desired, 0.1)) ** 4
        interaction = 0.0
        if gap < math.inf:
            brake_scale = 2.0 * math.sqrt(cfg.max_accel_mps2 * cfg.comfort_decel_mps2)
            s_star = min_gap + max(0.0, v * cfg.time_headway_s
                                   + v * (v - lead_speed) / brake_scale)
            interaction = (s_star / max(gap, 0.05)) ** 2
        accel = cfg.max_accel_mps2 * (free - interaction)
        return max(-cfg.max_decel_mps2, min(cfg.max_accel_mps2, accel))

    def _script(self, a: Agent, accel: float, dt: float) -> float:
        if a.script == 'lead_brake':
            if a.phase == '' and a.travelled >= a.trigger_s:
                a.phase, a.phase_time = 'braking', 0.0
            if a.phase == 'braking':
                if a.speed > 0.0:
                    return min(accel, -7.0)
                a.phase, a.phase_time = 'holding', 0.0
            if a.phase == 'holding':
                a.phase_time += dt
                if a.phase_time < 3.0:
                    return min(accel, -7.0)
                a.phase = 'done'
        elif a.script == 'stopped_vehicle':
            if a.phase == '':
                ego = self.ego
                near = ego is not None and ego.lane == a.lane and 0.0 < a.s - ego.s < 25.0
                if near:
                    a.phase_time += dt
                if a.phase_time < 8.0:
                    return min(accel, -self.config.max_decel_mps2)
                a.phase, a.desired_speed = 'crawling', 4.0
        return accel

    def _move(self, a: Agent, accel: float, dt: float):
        town = self.town
        v_new = max(0.0, a.speed + accel * dt)
        distance = 0.5 * (a.speed + v_new) * dt
        a.accel = (v_new - a.speed) / dt
        a.speed = v_new
        a.s += distance
        a.travelled += distance
        while a.s > town.lanes[a.lane].length:
            a.s -= town.lanes[a.lane].length
            a.k += 1
            a.stopped_at_line = False
            self._extend(a)
            if a.k > 8:  # keep the plan short
                a.lanes = a.lanes[a.k - 1:]
                a.k = 1
        if a.reserved is not None:
            node, connector = a.reserved
            previous = a.lanes[a.k - 1] if a.k > 0 else -1
            if a.lane != connector and (previous != connector or a.s > 0.5 * a.length + 0.5):
                if self.reservations[node].get(connector) == a.ident:
                    del self.reservations[node][connector]
                a.reserved = None
        self._place(a)


def _conflict(a, b) -> bool:
    """Return whether two connectors of one junction conflict."""
    if a.source == b.source or a.target == b.target:
        return True
    pa, pb = a.points[:, :2], b.points[:, :2]
    d2 = ((pa[:, None, :] - pb[None, :, :]) ** 2).sum(axis=2)
    return bool(d2.min() < CONFLICT_DISTANCE_M ** 2)


__all__ = ['Agent', 'EGO', 'EgoPlace', 'GREEN', 'RED', 'Traffic', 'TrafficConfig', 'YELLOW']
