"""
The embedded simulator: one car on a procedural route, fixed-step, with CARLA-style scoring.

Usage::

    sim = Simulator(SimConfig(route_seed=3))
    sim.reset(seed=3)
    result = sim.step(Control(throttle=0.5))
    image = sim.render()          # H x W x 4 uint8, bgra8 like CARLA's camera
    summary = sim.summary()       # route completion, penalty, driving score, events

Frame: ROS REP-103 ``map`` (x forward at the start, y left, yaw counter-clockwise). The car
starts at ``s = 0`` in the right lane (``lane_offset_m``, negative = right of the centreline),
heading along the route. Scoring is CARLA Leaderboard 2.0's (:mod:`llava_drive.sim.scoring`,
which also holds the route ends and time limit); this world measures, each step:

* outside the route lanes: the footprint centre more than 0.5 m beyond the two lanes (on the
  parking shoulder, the sidewalk or grass), or in the lane of the other direction (across the
  centre line). The route distance completed meanwhile multiplies the penalty by
  ``1 - outside share``; an ``outside_route_lanes`` event marks each excursion.
* ``collision_static`` (0.65): the footprint overlaps a parked car or a tree trunk. The car is
  put back where it was and stopped, as a solid obstacle would; contacts are filtered as the
  leaderboard does (not at a standstill, not within 5 m of the last one).
* ``lane_crossing`` (no penalty, counted): the footprint starts touching a lane marking (the
  dashed centre line or an edge line), like CARLA's lane invasion sensor.
* route completion, route deviation (``off_route``), ``blocked`` and the route ``timeout``
  (300 s plus 1 / (10 % of ``speed_limit_mps``) seconds per metre completed, unless
  ``time_budget_s`` fixes it), none of them penalised; ``route_finished`` at the goal.

Route completion is the furthest arc length reached (as a percentage of the route length), so
it never decreases. After the route has ended the car can still be stepped, but the score and
the events are frozen.
"""
from dataclasses import dataclass, field
import math
from typing import List, Optional, Tuple

from llava_drive.config_checks import number_in_range
from llava_drive.control import Control
from llava_drive.nodes.interfaces import CAMERA_HEIGHT, CAMERA_WIDTH
from llava_drive.sim.appearance import Appearance
from llava_drive.sim.obstacles import box_corners, boxes_overlap, Tree
from llava_drive.sim.road import Projection, Route, RouteConfig
from llava_drive.sim.scoring import EpisodeSummary, Event, RouteScorer, ScoringConfig
from llava_drive.sim.vehicle import Vehicle, VehicleParams, VehicleState
import numpy as np

# CARLA's OutsideRouteLanesTest allows 0.5 m beyond a lane (the mini-shoulder to the sidewalk).
OUTSIDE_LANE_TOLERANCE_M = 0.5


MAP_KINDS = ('road', 'town')


@dataclass
class SimConfig:
    """
    Simulator configuration (SI units; angles in degrees).

    :param width: camera image width in pixels
    :param height: camera image height in pixels
    :param fov_deg: horizontal field of view of the camera
    :param dt: fixed simulation step (s)
    :param route_seed: route used when :meth:`Simulator.reset` gets no seed
    :param route_length_m: driven route length
    :param obstacles: place parked cars along the shoulders
    :param randomize: randomize colours, lighting and camera mount per seed
    :param lane_offset_m: lateral offset of the driven lane centre (negative: right lane)
    :param camera_height_m: camera height above the ground
    :param camera_forward_m: camera position ahead of the rear axle
    :param camera_pitch_deg: downward camera pitch
    :param initial_speed_mps: speed at reset
    :param time_budget_s: fixed route time limit; None uses the leaderboard's, which grows
        with progress (see ``speed_limit_mps``)
    :param speed_limit_mps: the road's speed limit (30 km/h); the leaderboard's route time
        limit adds 1 / (10 % of it) seconds per metre completed to 300 s
    :param blocked_speed_mps: slower than this counts as standing still
    :param blocked_time_s: standing still this long ends the route
    :param off_route_distance_m: further than this from the route ends it
    :param progress_distance_m: route completion only counts route points reached within this
        distance of the route (CARLA's RouteCompletionTest uses 10 m), so driving across the
        grass does not complete a curve
    :param raster_resolution_m: metres per pixel of the top-down world picture
    :param vehicle: vehicle parameters
    :param map_kind: ``'road'`` (one two-lane road with curves, lane keeping) or ``'town'``
        (junctions, traffic, lights and a scenario: :mod:`llava_drive.sim.town`)
    :param traffic_vehicles: vehicles driving a town besides the scenario's
    """

    width: int = CAMERA_WIDTH
    height: int = CAMERA_HEIGHT
    fov_deg: float = 90.0
    dt: float = 0.05
    route_seed: int = 1
    route_length_m: float = RouteConfig.length_m
    obstacles: bool = True
    randomize: bool = True
    lane_offset_m: float = -1.75
    camera_height_m: float = 1.6
    camera_forward_m: float = 1.5
    camera_pitch_deg: float = 5.0
    initial_speed_mps: float = 0.0
    time_budget_s: Optional[float] = None
    speed_limit_mps: float = 30.0 / 3.6
    blocked_speed_mps: float = 0.1
    blocked_time_s: float = 180.0
    off_route_distance_m: float = 30.0
    progress_distance_m: float = 10.0
    raster_resolution_m: float = 0.08
    vehicle: VehicleParams = field(default_factory=VehicleParams)
    map_kind: str = 'road'
    traffic_vehicles: int = 16

    def __post_init__(self):
        """Check every field, naming the bad value."""
        if self.map_kind not in MAP_KINDS:
            raise ValueError(f'SimConfig.map_kind must be one of {MAP_KINDS}, '
                             f'got {self.map_kind!r}')
        if isinstance(self.traffic_vehicles, bool) or \
                not isinstance(self.traffic_vehicles, int) or \
                not 0 <= self.traffic_vehicles <= 200:
            raise ValueError(f'SimConfig.traffic_vehicles must be an integer in [0, 200], '
                             f'got {self.traffic_vehicles!r}')
        for name in ('width', 'height'):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 16 <= value <= 8192:
                raise ValueError(f'SimConfig.{name} must be an integer in [16, 8192], '
                                 f'got {value!r}')
        if isinstance(self.route_seed, bool) or not isinstance(self.route_seed, int) or \
                self.route_seed < 0:
            raise ValueError(f'SimConfig.route_seed must be a non-negative integer, '
                             f'got {self.route_seed!r}')
        checks = {
            'fov_deg': (1.0, 170.0), 'dt': (1e-4, 1.0), 'route_length_m': (10.0, 1e5),
            'camera_height_m': (0.5, 5.0), 'camera_forward_m': (-5.0, 5.0),
            'camera_pitch_deg': (-30.0, 45.0), 'initial_speed_mps': (0.0, 40.0),
            'speed_limit_mps': (0.1, 200.0),
            'blocked_speed_mps': (0.0, 10.0), 'blocked_time_s': (0.0, 1e5),
            'off_route_distance_m': (1.0, 1e4), 'progress_distance_m': (0.5, 1e4),
            'raster_resolution_m': (0.02, 1.0), 'lane_offset_m': (-3.5, 3.5),
        }
        for name, (low, high) in checks.items():
            number_in_range(f'SimConfig.{name}', getattr(self, name), low, high)
        if self.time_budget_s is not None and not (
                isinstance(self.time_budget_s, (int, float)) and self.time_budget_s > 0):
            raise ValueError(f'SimConfig.time_budget_s must be positive or None, '
                             f'got {self.time_budget_s!r}')
        if not isinstance(self.vehicle, VehicleParams):
            raise ValueError(f'SimConfig.vehicle must be VehicleParams, got {self.vehicle!r}')

    def scoring_config(self) -> ScoringConfig:
        """Return the leaderboard route criteria with this configuration's values."""
        return ScoringConfig(
            time_limit_s=self.time_budget_s, speed_limit_mps=self.speed_limit_mps,
            blocked_speed_mps=self.blocked_speed_mps, blocked_time_s=self.blocked_time_s,
            off_route_distance_m=self.off_route_distance_m,
            progress_distance_m=self.progress_distance_m)

    def route_config(self) -> RouteConfig:
        """Return the route generation parameters implied by this configuration."""
        return RouteConfig(length_m=float(self.route_length_m), parked_cars=self.obstacles)


@dataclass(frozen=True)
class StepResult:
    """
    State after a step (or a reset).

    :param time: simulated time (s)
    :param state: vehicle state (footprint centre, yaw, speed, wheel angle)
    :param events: events raised during this step
    :param done: whether the route has ended
    :param done_reason: why it ended, or None
    :param route_completion: percentage completed, 0..100, never decreasing
    :param s: arc length of the vehicle along the route (m)
    :param lateral_error: offset from the driven lane centre, positive left (m)
    :param heading_error: vehicle yaw minus route yaw (rad)
    :param off_road: whether the footprint centre is off the two lanes now
    :param in_collision: whether the car touches an obstacle now
    :param outside_lanes: whether the car is outside the route lanes now (scored)
    """

    time: float
    state: VehicleState
    events: Tuple[Event, ...]
    done: bool
    done_reason: Optional[str]
    route_completion: float
    s: float
    lateral_error: float
    heading_error: float
    off_road: bool
    in_collision: bool
    outside_lanes: bool = False


class Simulator:
    """
    A fixed-step driving simulator with a front camera (see the module docstring).

    :param config: configuration; ``reset`` is called with ``config.route_seed``. With
        ``map_kind='town'`` the instance is a
        :class:`~llava_drive.sim.town.world.TownSimulator`.
    """

    # Lateral offset of the driven lane from the route line (the town's route line is the
    # lane centre itself).
    lane_offset = None

    def __new__(cls, config: Optional[SimConfig] = None):
        """Return a town simulator for ``map_kind='town'`` so every caller gets either."""
        if cls is Simulator and config is not None and config.map_kind == 'town':
            from llava_drive.sim.town.world import TownSimulator
            cls = TownSimulator
        return super().__new__(cls)

    def __init__(self, config: Optional[SimConfig] = None):
        """Create the simulator and reset it to ``config.route_seed``."""
        self.config = config or SimConfig()
        self._camera = None
        self._raster = None
        self._raster_key = None
        self.reset()

    # -- episode -------------------------------------------------------------------------

    def reset(self, seed: Optional[int] = None, variation: int = 0) -> StepResult:
        """
        Start a new episode on the route of ``seed`` (also seeds the randomization).

        :param seed: route seed; None uses ``config.route_seed``
        :param variation: another draw of the appearance randomization (lighting, colours,
            camera jitter) on the same road, e.g. one per evaluation repetition; 0 is the
            route's own appearance
        :return: the initial state (time 0, no events)
        """
        seed = self.config.route_seed if seed is None else seed
        self.route = Route.generate(seed, self.config.route_config())
        self.seed = int(seed)
        if self.config.randomize:
            key = [self.seed, 0xA99] + ([int(variation)] if variation else [])
            self.appearance = Appearance.sample(np.random.default_rng(key))
        else:
            self.appearance = Appearance()
        x, y, yaw = self.route.pose_at(0.0, self.config.lane_offset_m)
        self.vehicle = Vehicle(self.config.vehicle,
                               VehicleState(x, y, yaw, float(self.config.initial_speed_mps)))
        self.time = 0.0
        self.scorer = RouteScorer(self.seed, self.route.length, self.config.scoring_config())
        self._off_road = False
        self._outside_lanes = False
        self._in_collision = False
        self._touching = set()
        self._projection: Projection = self.route.project(x, y)
        self._solids = list(self.route.parked_cars) + list(self.route.trees)
        # The painted world costs about a second: keep it when the same world comes back.
        key = (self.seed, self.appearance, self.config.raster_resolution_m)
        if getattr(self, '_raster_key', None) != key:
            self._camera = None
            self._raster = None
            self._raster_key = key
        self._update_contacts(record=False)
        return self._result(())

    def teleport(self, x: float, y: float, yaw: float, speed: float = 0.0) -> StepResult:
        """
        Move the car to a pose (for tests and tools); scoring continues from there.

        The jump itself counts as route completed (near the route), not as driven.

        :param x: footprint centre x (m)
        :param y: footprint centre y (m)
        :param yaw: heading (rad)
        :param speed: signed speed (m/s)
        """
        self.vehicle.state = VehicleState(float(x), float(y), float(yaw), float(speed))
        self._projection = self.route.project(x, y)
        self.scorer.relocate(self._projection.s, self._projection.distance)
        self._update_contacts(record=False)
        return self._result(())

    def step(self, control: Control) -> StepResult:
        """
        Advance one fixed step ``config.dt`` under ``control``; return the new state.

        :param control: the command; NaN or out-of-range values are clamped (NaN = full brake)
        """
        dt = self.config.dt
        before = self.vehicle.state
        self.vehicle.step(control, dt)
        self.time += dt
        hit = self._collides()
        moving = self.vehicle.state.speed
        if hit is not None:
            # Parked cars are solid: undo the move and stop, then count the contact.
            self.vehicle.state = VehicleState(before.x, before.y, before.yaw, 0.0,
                                              self.vehicle.state.steer_angle)
        state = self.vehicle.state
        self._projection = self.route.project(state.x, state.y, self._projection.index)
        if self.done:
            return self._result(())
        known = len(self.scorer.events)
        self._update_contacts(record=True, hit=hit, speed=moving)
        proj = self._projection
        goal_x, goal_y, _ = self.route.pose_at(self.route.length, self._lane_offset())
        self.scorer.update(self.time, state.x, state.y, proj.s, proj.distance,
                           self._outside_lanes, state.speed,
                           math.hypot(goal_x - state.x, goal_y - state.y))
        return self._result(tuple(self.scorer.events[known:]))

    def summary(self) -> EpisodeSummary:
        """Return route completion, penalty, driving score and events of this episode."""
        return self.scorer.summary()

    @property
    def events(self) -> List[Event]:
        """Return every event of this episode so far."""
        return self.scorer.events

    @property
    def done(self) -> bool:
        """Return whether the route has ended."""
        return self.scorer.done

    @property
    def done_reason(self) -> Optional[str]:
        """Return why the route ended (see ``scoring.DONE_REASONS``), or None."""
        return self.scorer.done_reason

    @property
    def time_budget_s(self) -> float:
        """Return the route time limit now (the leaderboard's grows with progress)."""
        return self.scorer.time_limit_s

    @property
    def state(self) -> VehicleState:
        """Return the current vehicle state."""
        return self.vehicle.state

    @property
    def route_completion(self) -> float:
        """Return the completed percentage of the route, 0..100, never decreasing."""
        return self.scorer.route_completion

    # -- route for the ROS side ----------------------------------------------------------------

    def waypoints_ahead(self, n: int = 50, spacing_m: float = 1.0) -> List[Tuple[float, ...]]:
        """
        Return ``n`` points ``(x, y, yaw)`` of the lane centre ahead of the car.

        The first point is the lane point at the car's arc length; points continue past the
        finish into the lead-out, so a follower always has a path.

        :param n: number of points (>= 1)
        :param spacing_m: distance between points along the route (> 0)
        """
        if n < 1 or not spacing_m > 0:
            raise ValueError(f'waypoints_ahead needs n >= 1 and spacing_m > 0, got {n}, '
                             f'{spacing_m}')
        s_values = self._projection.s + spacing_m * np.arange(n)
        return [tuple(row) for row in self.route.poses_at(s_values, self._lane_offset())
                .tolist()]

    def route_waypoints(self, spacing_m: float = 1.0) -> List[Tuple[float, float, float]]:
        """
        Return the whole driven lane ``(x, y, yaw)`` from start to past the finish.

        This is what CARLA's waypoint publisher sends once per route on
        ``/carla/<role>/waypoints``; the lead-out is included so the path does not end at the
        finish line.

        :param spacing_m: distance between points (> 0)
        """
        if not spacing_m > 0:
            raise ValueError(f'spacing_m must be positive, got {spacing_m}')
        end = self.route.length + self.route.config.lead_out_m
        s_values = spacing_m * np.arange(int(end / spacing_m) + 1)
        return [tuple(row) for row in self.route.poses_at(s_values, self._lane_offset())
                .tolist()]

    def _lane_offset(self) -> float:
        return self.config.lane_offset_m if self.lane_offset is None else self.lane_offset

    # -- camera ------------------------------------------------------------------------------

    def camera_config(self):
        """Return the :class:`~llava_drive.sim.camera.CameraConfig` of this episode."""
        from llava_drive.sim.camera import CameraConfig
        c = self.config
        return CameraConfig(
            width=c.width, height=c.height, fov_deg=c.fov_deg,
            mount_height_m=c.camera_height_m + self.appearance.camera_height_offset_m,
            mount_forward_m=c.camera_forward_m,
            pitch_deg=c.camera_pitch_deg + self.appearance.camera_pitch_offset_deg)

    def camera_intrinsics(self) -> Tuple[float, float, float, float]:
        """Return ``(fx, fy, cx, cy)``: ``fx = fy = W / (2 tan(fov / 2))``, centre ``W/2, H/2``."""
        return self.camera_config().intrinsics()

    def render(self) -> np.ndarray:
        """Return the front camera image at the current pose, ``H x W x 4`` uint8 bgra8."""
        from llava_drive.sim.camera import Camera
        from llava_drive.sim.raster import TopDownRaster
        if self._raster is None:
            # Built lazily: stepping without rendering (expert tests) never pays for it.
            self._raster = TopDownRaster(self.route, self.appearance,
                                         self.config.raster_resolution_m)
            self._camera = Camera(self.camera_config(), self._raster, self.route.parked_cars,
                                  self.route.trees)
        rx, ry = self.vehicle.rear_axle()
        return self._camera.render(rx, ry, self.vehicle.state.yaw)

    # -- internals ---------------------------------------------------------------------------

    def _collides(self, grow_length: float = 0.0, grow_width: float = 0.0):
        """Return the obstacle the (optionally grown) footprint overlaps, or None."""
        st = self.vehicle.state
        footprint = None
        for solid in self._solids:
            if abs(solid.x - st.x) > 6.0 or abs(solid.y - st.y) > 6.0:
                continue
            if footprint is None:
                p = self.config.vehicle
                footprint = box_corners(st.x, st.y, st.yaw, p.length_m + grow_length,
                                        p.width_m + grow_width)
            if boxes_overlap(footprint, solid.corners()):
                return solid
        return None

    def _update_contacts(self, record: bool, hit=None, speed: float = 0.0) -> None:
        """Update off-lane, collision and lane-marking contact; score the new ones."""
        proj = self._projection
        st = self.vehicle.state
        p = self.config.vehicle
        lane = self.route.lane_width
        self._off_road = abs(proj.lateral) > lane
        # The leaderboard's OutsideRouteLanesTest: beyond the driving lanes by more than 0.5 m,
        # or on the other direction's side of the centre line.
        self._outside_lanes = (abs(proj.lateral) > lane + OUTSIDE_LANE_TOLERANCE_M
                               or proj.lateral * self._lane_offset() < 0.0)
        # A car put back after a hit sits right at the obstacle: a small margin keeps pushing
        # against it from counting as new collisions.
        touched = hit or self._collides(0.6, 0.3)
        collision = touched is not None
        if collision and not self._in_collision and record:
            kind = 'tree' if isinstance(touched, Tree) else 'parked car'
            self.scorer.collision('collision_static', st.x, st.y, speed, proj.s, kind,
                                  time=self.time)
        self._in_collision = collision
        # Lateral extent of the footprint around its centre, given the heading error.
        heading_error = proj.heading_error(st.yaw)
        half = 0.5 * (p.length_m * abs(math.sin(heading_error))
                      + p.width_m * abs(math.cos(heading_error)))
        touching = {name for name, offset in (('right_edge', -lane), ('centre', 0.0),
                                              ('left_edge', lane))
                    if proj.lateral - half <= offset <= proj.lateral + half}
        if record:
            for name in sorted(touching - self._touching):
                self.scorer.note('lane_crossing', st.x, st.y, proj.s, name, self.time)
        self._touching = touching

    def _result(self, events) -> StepResult:
        proj = self._projection
        st = self.vehicle.state
        return StepResult(
            time=self.time, state=st, events=tuple(events), done=self.done,
            done_reason=self.done_reason, route_completion=self.route_completion, s=proj.s,
            lateral_error=proj.lateral - self._lane_offset(),
            heading_error=proj.heading_error(st.yaw), off_road=self._off_road,
            in_collision=self._in_collision, outside_lanes=self._outside_lanes)
