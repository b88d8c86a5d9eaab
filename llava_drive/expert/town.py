"""
Town expert: the lane follower of :mod:`llava_drive.expert.driver` plus traffic rules.

Steering is the pure pursuit of :class:`~llava_drive.expert.driver.ExpertDriver` on the route's
lane centre, and its curve-aware target speed is the cruise speed; the longitudinal command is
an intelligent-driver-model acceleration (the same law the traffic uses) towards the nearest of:

* the vehicle ahead on the route path (any vehicle whose centre lies within
  ``corridor_half_width_m`` of the path ahead, so a car crossing the junction counts too);
* the stop line of the next junction when the ego may not enter: red light, yellow light with
  room to stop, a minor road (stop first, then wait for priority traffic), or a junction the
  traffic manager will not reserve for the ego (a conflicting path is in use).

The acceleration becomes throttle or brake by the embedded vehicle's full-throttle and
full-brake accelerations. The obstacles come from privileged state of a
:class:`~llava_drive.sim.town.world.TownSimulator` (lights, vehicles, reservations), like
CARLA's rule-based autopilots read the world: :meth:`TownExpert.hazards` turns it into a
:class:`Hazards` record (in a ROS graph the sim bridge does this and publishes it), and
:meth:`TownExpert.command` maps pose, path and hazards to a control without the simulator.
"""
from dataclasses import asdict, dataclass
import math
from typing import Optional, Tuple

from llava_drive.config_checks import number_in_range
from llava_drive.control import Control, FULL_BRAKE
from llava_drive.expert.driver import ExpertConfig, ExpertDriver
from llava_drive.sim.town.lights import RED, YELLOW
import numpy as np


@dataclass
class TownExpertConfig:
    """
    Longitudinal rules of the town expert (SI units).

    :param max_accel_mps2: IDM maximum acceleration
    :param comfort_decel_mps2: IDM comfortable deceleration
    :param time_headway_s: IDM time headway to the vehicle ahead
    :param min_gap_m: standstill gap to the vehicle ahead
    :param stop_line_gap_m: standstill gap to a stop line
    :param yellow_decel_mps2: on yellow, stop when this deceleration suffices
    :param corridor_half_width_m: vehicles this close to the path ahead are obstacles
    :param lookahead_m: how far ahead along the route obstacles are looked for
    :param full_throttle_accel_mps2: acceleration at throttle 1 (the embedded car: about 4)
    :param full_brake_decel_mps2: deceleration at brake 1 (the embedded car: 8)
    :param start_accel_mps2: from standstill, move off only when the model asks for at least
        this acceleration, so the car waits at a stop line or in a queue instead of creeping
        forward and braking again (which would teach a policy throttle/brake chatter)
    """

    max_accel_mps2: float = 2.0
    comfort_decel_mps2: float = 3.0
    time_headway_s: float = 1.2
    min_gap_m: float = 2.5
    stop_line_gap_m: float = 0.8
    yellow_decel_mps2: float = 4.0
    corridor_half_width_m: float = 2.4
    lookahead_m: float = 60.0
    full_throttle_accel_mps2: float = 4.0
    full_brake_decel_mps2: float = 8.0
    start_accel_mps2: float = 0.5

    def __post_init__(self):
        """Check that every value is a positive finite number."""
        for name, value in vars(self).items():
            number_in_range(f'TownExpertConfig.{name}', value, 0, 1e4, low_open=True)


def idm_accel(speed: float, desired: float, gap: float, lead_speed: float, min_gap: float,
              config: TownExpertConfig) -> float:
    """
    Return the intelligent driver model's acceleration (m/s^2).

    :param speed: own speed (m/s)
    :param desired: cruise speed (m/s)
    :param gap: free distance to the obstacle (``inf``: none)
    :param lead_speed: the obstacle's speed along the path (m/s)
    :param min_gap: standstill gap (m)
    :param config: parameters
    """
    a, b = config.max_accel_mps2, config.comfort_decel_mps2
    free = 1.0 - (max(speed, 0.0) / max(desired, 0.1)) ** 4 if desired > 0.05 else -1.0
    interaction = 0.0
    if math.isfinite(gap):
        s_star = min_gap + max(0.0, speed * config.time_headway_s
                               + speed * (speed - lead_speed) / (2.0 * math.sqrt(a * b)))
        interaction = (s_star / max(gap, 0.05)) ** 2
    return a * (free - interaction)


@dataclass(frozen=True)
class Hazards:
    """
    What the expert must not run into, along its route.

    :param leader_gap: free distance to the vehicle ahead (m, ``inf``: none)
    :param leader_speed: its speed along the route (m/s)
    :param stop_distance: distance from the front bumper to a stop line it may not pass (m,
        ``inf``: none)
    :param stop_reason: why (``'red light'``, ``'yellow light'``, ``'give way: stop'``,
        ``'give way'``) or ``''``
    """

    leader_gap: float = math.inf
    leader_speed: float = 0.0
    stop_distance: float = math.inf
    stop_reason: str = ''

    def to_dict(self) -> dict:
        """Return JSON-safe data (``inf`` as None)."""
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> 'Hazards':
        """
        Rebuild from :meth:`to_dict` data.

        :param data: the dictionary
        :raises ValueError: on missing keys, wrong types or non-finite numbers
        """
        try:
            gap, speed, stop = (math.inf if data[k] is None else float(data[k])
                                for k in ('leader_gap', 'leader_speed', 'stop_distance'))
            reason = data['stop_reason']
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f'bad hazards record {data!r}: {error}') from None
        if not isinstance(reason, str) or math.isnan(gap) or math.isnan(stop) or \
                not math.isfinite(speed):
            raise ValueError(f'bad hazards record {data!r}')
        return cls(gap, speed, stop, reason)


class TownExpert:
    """
    Drive a town route: follow the lanes, keep the gap, obey lights, give way.

    :param config: longitudinal rules
    :param lane: lane follower parameters
    """

    def __init__(self, config: Optional[TownExpertConfig] = None,
                 lane: Optional[ExpertConfig] = None):
        """Create the expert."""
        self.config = config or TownExpertConfig()
        self.follower = ExpertDriver(lane or ExpertConfig())
        self.reset()

    def reset(self):
        """Forget the state of the previous route."""
        self.follower.reset()
        self._stopped_at: Optional[int] = None
        self.reason = ''

    def control(self, sim) -> Control:
        """
        Return the command for the current state of a town simulator.

        :param sim: a :class:`~llava_drive.sim.town.world.TownSimulator`
        """
        st = sim.state
        return self.command(st.x, st.y, st.yaw, st.speed, sim.waypoints_ahead(60),
                            self.hazards(sim), sim.config.dt)

    def hazards(self, sim) -> Hazards:
        """
        Return the obstacles ahead from the simulator's privileged state.

        May reserve the next junction for the ego in the simulator's traffic manager (the ego
        asks before entering, as the traffic does).

        :param sim: a :class:`~llava_drive.sim.town.world.TownSimulator`
        """
        gap, lead_speed = self._leader(sim)
        stop = self._stop_line(sim, max(0.0, sim.state.speed))
        if stop is None:
            return Hazards(gap, lead_speed)
        return Hazards(gap, lead_speed, stop[0], stop[1])

    def command(self, x: float, y: float, yaw: float, speed: float, waypoints,
                hazards: Hazards, dt: float = 0.05) -> Control:
        """
        Return the command for a pose, the lane path ahead and the hazards (pure).

        :param x: position x (m)
        :param y: position y (m)
        :param yaw: heading (rad)
        :param speed: speed (m/s)
        :param waypoints: lane-centre path ahead ``[(x, y, ...), ...]``
        :param hazards: obstacles along the route
        :param dt: time since the previous call (s)
        """
        if not all(math.isfinite(v) for v in (x, y, yaw, speed)):
            return FULL_BRAKE
        lane = self.follower.control(x, y, yaw, speed, waypoints, dt)
        if lane.brake >= 1.0 and lane.throttle == 0.0 and lane.steer == 0.0:
            return FULL_BRAKE  # the follower refused the input
        desired = self.follower.last_target_speed
        speed = max(0.0, speed)
        cfg = self.config
        accel = idm_accel(speed, desired, math.inf, 0.0, cfg.min_gap_m, cfg)
        self.reason = 'cruise'
        if math.isfinite(hazards.leader_gap):
            follow = idm_accel(speed, desired, hazards.leader_gap, hazards.leader_speed,
                               cfg.min_gap_m, cfg)
            if follow < accel:
                accel, self.reason = follow, 'vehicle ahead'
        if math.isfinite(hazards.stop_distance):
            halt = idm_accel(speed, desired, hazards.stop_distance, 0.0, cfg.stop_line_gap_m,
                             cfg)
            if halt < accel:
                accel, self.reason = halt, hazards.stop_reason
        if speed < 0.05 and accel < (cfg.start_accel_mps2 if self.reason != 'cruise' else 0.0):
            return Control(steer=lane.steer, throttle=0.0, brake=1.0)
        if accel >= 0.0:
            throttle = min(1.0, (accel + 0.15) / cfg.full_throttle_accel_mps2)
            return Control(steer=lane.steer, throttle=throttle, brake=0.0).clamped()
        brake = min(1.0, -accel / cfg.full_brake_decel_mps2)
        return Control(steer=lane.steer, throttle=0.0, brake=brake).clamped()

    def _leader(self, sim) -> Tuple[float, float]:
        """Return the gap to and speed of the nearest vehicle on the path ahead."""
        cfg = self.config
        s0 = sim._projection.s
        path = sim.route.points
        lo = sim.route.index_of(s0)
        hi = min(len(path), lo + int(cfg.lookahead_m) + 1)
        ahead = path[lo:hi]
        if len(ahead) < 2:
            return math.inf, 0.0
        half_ego = 0.5 * sim.config.vehicle.length_m
        best = (math.inf, 0.0)
        for v in sim.traffic.agents:
            if not v.active:
                continue
            if abs(v.x - ahead[0, 0]) > cfg.lookahead_m + 5 or \
                    abs(v.y - ahead[0, 1]) > cfg.lookahead_m + 5:
                continue
            d2 = (ahead[:, 0] - v.x) ** 2 + (ahead[:, 1] - v.y) ** 2
            i = int(np.argmin(d2))
            if d2[i] > cfg.corridor_half_width_m ** 2:
                continue
            along = ahead[i, 3] - s0
            gap = along - half_ego - 0.5 * v.length
            if along <= 0.0:
                continue
            lead_speed = max(0.0, v.speed * math.cos(v.yaw - ahead[i, 2]))
            if gap < best[0]:
                best = (gap, lead_speed)
        return best

    def _stop_line(self, sim, speed: float) -> Optional[Tuple[float, str]]:
        """Return ``(distance, reason)`` to a stop line the ego must not pass, or None."""
        cfg = self.config
        route = sim.town_route
        town = sim.town
        front = sim._projection.s + 0.5 * sim.config.vehicle.length_m
        for crossing in route.crossings:
            node = town.nodes[crossing.node]
            if not node.is_junction or crossing.s_entry < front - 0.3:
                continue
            distance = crossing.s_entry - front
            if distance > speed * speed / (2.0 * cfg.comfort_decel_mps2) + 15.0:
                return None
            if node.signalised:
                light = sim.lights.by_lane[crossing.source]
                state = sim.lights.state(light, sim.time)
                if state == RED:
                    return distance, 'red light'
                if state == YELLOW and \
                        distance > speed * speed / (2.0 * cfg.yellow_decel_mps2) + 0.5:
                    return distance, 'yellow light'
            elif town.lanes[crossing.source].road not in node.major:
                if self._stopped_at != crossing.node:
                    if speed < 0.3 and distance < 2.5:
                        self._stopped_at = crossing.node
                    else:
                        return distance, 'give way: stop'
            if not sim.traffic.request_for_ego(crossing.connector):
                return distance, 'give way'
            return None
        return None


def drive_route(seed: int, variation: int = 0, sim_config=None, expert=None):
    """
    Drive one town route with the expert, without rendering; return the finished simulator.

    :param seed: route seed
    :param variation: traffic, light and appearance draw (one per repetition)
    :param sim_config: a :class:`~llava_drive.sim.world.SimConfig` with ``map_kind='town'``
        (default: the default town configuration)
    :param expert: the expert (default: a new :class:`TownExpert`)
    """
    from llava_drive.sim.world import SimConfig, Simulator
    config = sim_config or SimConfig(map_kind='town', route_seed=seed)
    if config.map_kind != 'town':
        raise ValueError(f'drive_route needs map_kind town, got {config.map_kind!r}')
    sim = Simulator(config)
    sim.reset(seed, variation=variation)
    expert = expert or TownExpert()
    expert.reset()
    while not sim.done:
        sim.step(expert.control(sim))
    return sim
