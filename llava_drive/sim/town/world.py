"""
The town world: the ego on a route among traffic, traffic lights and a scenario.

The ego drives a :class:`~llava_drive.sim.town.route.TownRoute`; the world emits the events the
evaluator scores.

Built by :class:`~llava_drive.sim.world.Simulator` when ``SimConfig.map_kind == 'town'``; the
route seed is also the town's seed (each benchmark route has its own town). The ego's route
line is the centre of the lanes it must drive (lateral offset 0). Events each step:

Scoring is CARLA Leaderboard 2.0's (:class:`~llava_drive.sim.scoring.RouteScorer`, as on
the road map); this world measures each step:

* ``collision_vehicle`` / ``collision_static`` (buildings, trees, parked cars, light poles):
  the ego is put back and stopped, as a solid obstacle would; contacts are filtered as the
  leaderboard's CollisionTest does (not at a standstill, not the same vehicle within 5 s, not
  within 5 m of the last one);
* ``red_light``: the ego's front crosses the stop line of a signalised junction on red;
* outside the route lanes: the ego's centre more than half a lane from the route line, outside
  junction boxes (CARLA's OutsideRouteLanesTest ignores junctions); the route distance completed
  meanwhile (:attr:`TownSimulator.outside_route_lanes_m`) scales the penalty, an
  ``outside_route_lanes`` event marks each excursion;
* route ends, as on the road map: ``route_finished``, ``off_route``, ``blocked`` and the
  leaderboard's route ``timeout`` (300 s plus 1.2 s per metre completed at 30 km/h unless
  ``time_budget_s`` is set), none of them penalised.
"""
import math
from typing import Dict, List, Optional, Tuple

from llava_drive.control import Control
from llava_drive.planning import GlobalPlan
from llava_drive.sim.appearance import Appearance
from llava_drive.sim.obstacles import box_corners, boxes_overlap
from llava_drive.sim.scoring import RouteScorer
from llava_drive.sim.town.lights import GREEN, head_offset, lamp_parts, light_parts, RED, \
    STATES, TrafficLights
from llava_drive.sim.town.network import TownMap
from llava_drive.sim.town.route import TownRoute
from llava_drive.sim.town.traffic import EgoPlace, Traffic, TrafficConfig
from llava_drive.sim.vehicle import Vehicle, VehicleState
from llava_drive.sim.world import Simulator, StepResult
import numpy as np

LIGHT_POLE_HALF_M = 0.15
_TOWNS: Dict[int, Tuple[TownMap, TownRoute]] = {}


def town_and_route(seed: int) -> Tuple[TownMap, TownRoute]:
    """Return the town and route of ``seed`` (cached: generating them costs ~0.1-1 s)."""
    if seed not in _TOWNS:
        if len(_TOWNS) > 8:
            _TOWNS.clear()
        town = TownMap.generate(seed)
        _TOWNS[seed] = (town, TownRoute.generate(seed, town))
    return _TOWNS[seed]


class _Solid:
    """A static obstacle for collision tests: corners, a bounding circle and a kind."""

    def __init__(self, corners: np.ndarray, kind: str):
        self._corners = corners
        centre = corners.mean(axis=0)
        self.x, self.y = float(centre[0]), float(centre[1])
        self.radius = float(np.hypot(*(corners - centre).T).max())
        self.kind = kind

    def corners(self) -> np.ndarray:
        return self._corners


class TownSimulator(Simulator):
    """A :class:`~llava_drive.sim.world.Simulator` on a town map (see the module docstring)."""

    lane_offset = 0.0

    def reset(self, seed: Optional[int] = None, variation: int = 0) -> StepResult:
        """
        Start the route of ``seed`` with traffic and lights drawn from ``(seed, variation)``.

        :param seed: route (and town) seed; None uses ``config.route_seed``
        :param variation: another draw of traffic, light phases and appearance on the same
            route (e.g. one per evaluation repetition)
        """
        seed = self.config.route_seed if seed is None else int(seed)
        self.seed = seed
        self.variation = int(variation)
        self.town, self.town_route = town_and_route(seed)
        self.route = self.town_route.ego_route()
        if self.config.randomize:
            key = [seed, 0xA99] + ([int(variation)] if variation else [])
            self.appearance = Appearance.sample(np.random.default_rng(key))
        else:
            self.appearance = Appearance()
        x, y, yaw = self.route.pose_at(0.0, 0.0)
        self.vehicle = Vehicle(self.config.vehicle,
                               VehicleState(x, y, yaw, float(self.config.initial_speed_mps)))
        self.time = 0.0
        self.scorer = RouteScorer(seed, self.route.length, self.config.scoring_config())
        self._off_road = False
        self._outside_lanes = False
        self._in_collision = False
        self._touching = set()
        self._projection = self.route.project(x, y)
        self._route_lanes = list(self.town_route.lanes) + list(self.town_route.lead_out_lanes)
        starts = [-self.town_route.start_s]
        for index in self._route_lanes[:-1]:
            starts.append(starts[-1] + self.town.lanes[index].length)
        self._lane_starts = np.array(starts)
        self._solids = self._static_solids()
        rng = np.random.default_rng([seed, int(variation), 0x7AF])
        self.lights = TrafficLights(self.town, offsets={
            node.index: float(rng.uniform(0.0, 120.0)) for node in self.town.nodes})
        self.traffic = Traffic(self.town, self.lights,
                               TrafficConfig(vehicles=self.config.traffic_vehicles), rng)
        self._setup_scenario(rng)
        key = (seed, self.appearance, self.config.raster_resolution_m)
        if getattr(self, '_raster_key', None) != key:
            self._camera = None
            self._raster = None
            self._raster_key = key
        self._vehicle_templates = {}
        self._update_ego_place()
        return self._result(())

    # -- world contents ----------------------------------------------------------------------

    def _static_solids(self) -> List[_Solid]:
        town = self.town
        solids = [_Solid(b.corners(), 'building') for b in town.buildings]
        solids += [_Solid(t.corners(), 'tree') for t in town.trees]
        solids += [_Solid(c.corners(), 'parked car') for c in town.parked_cars]
        lights = TrafficLights(town)
        solids += [_Solid(box_corners(light.pole_x, light.pole_y, 0.0, 2 * LIGHT_POLE_HALF_M,
                                      2 * LIGHT_POLE_HALF_M), 'light pole')
                   for light in lights.lights]
        self._solid_xy = np.array([(s.x, s.y) for s in solids]) if solids else np.zeros((0, 2))
        self._solid_r = np.array([s.radius for s in solids])
        return solids

    def _setup_scenario(self, rng: np.random.Generator):
        route = self.town_route
        traffic = self.traffic
        lane0 = route.lanes[0]
        # Keep the ego's start and the scenario's stretch free of random traffic.
        keep_clear = [(lane0, route.start_s - 25.0, route.start_s + 45.0)]
        scenario_lane, scenario_local = self.lane_at(route.scenario_s)[1:]
        keep_clear.append((scenario_lane, scenario_local - 40.0, scenario_local + 25.0))
        if route.scenario == 'lead_brake':
            k, lane, local = self.lane_at(16.0)
            last = self.lane_at(route.scenario_s)[0]
            agent = traffic.add(lane, local, 3.0, lanes=self._route_lanes[k:last + 1],
                                script='lead_brake', trigger_s=route.scenario_s - 16.0,
                                desired=6.0)
            agent.colour_bgr = (30, 30, 170)
        elif route.scenario == 'stopped_vehicle':
            k, lane, local = self.lane_at(route.scenario_s)
            traffic.add(lane, local, 0.0, lanes=self._route_lanes[k:k + 1],
                        script='stopped_vehicle', desired=4.0)
        elif route.scenario == 'red_light':
            crossing = next(c for c in route.crossings if c.node == route.scenario_node)
            light = self.lights.by_lane[crossing.source]
            # Green about 12 s after a car at 7 m/s would reach the line: it meets red (the
            # light is red for the other approaches' slots before that, >= 30 s).
            arrival = route.scenario_s / 7.0 + 4.0
            self.lights.offsets[light.node] = self.lights.green_offset(light, arrival + 12.0)
        self._crossing_pending = route.scenario == 'crossing_traffic'
        self._red_pending = route.scenario == 'red_light'
        traffic.spawn_random(traffic.config.vehicles, keep_clear)

    def _spawn_crossing(self):
        """Send a priority-road vehicle into the ego's junction as the ego approaches it."""
        route = self.town_route
        town = self.town
        crossing = next(c for c in route.crossings if c.node == route.scenario_node)
        node = town.nodes[crossing.node]
        conflicts = self.traffic.conflicts[crossing.connector]
        for lane_index in town.incoming_lanes(node.index):
            lane = town.lanes[lane_index]
            if lane.road not in node.major:
                continue
            options = [c for c in lane.successors if c in conflicts]
            if not options:
                continue
            # 8 m/s for the ego's ~40 m: start about as far from the junction.
            s = max(0.0, lane.length - 42.0)
            if any(a.lane == lane_index and abs(a.s - s) < 10.0 for a in self.traffic.agents):
                continue
            connector = options[0]
            self.traffic.add(lane_index, s, 8.0,
                             lanes=[lane_index, connector, town.lanes[connector].target],
                             script='crossing_traffic', desired=8.0)
            return

    def _turn_red(self):
        """
        Make the ego meet the scenario's light red.

        From 50 m before the line until 15 m before it, a green light (the light's cycle, or
        traffic ahead, made the ego late) turns yellow now, then red; once only, so a queue
        behind the light is never starved of green.
        """
        route = self.town_route
        distance = route.scenario_s - self._projection.s
        if distance > 50.0:
            return
        crossing = next(c for c in route.crossings if c.node == route.scenario_node)
        light = self.lights.by_lane[crossing.source]
        state = self.lights.state(light, self.time)
        if distance < 15.0:
            self._red_pending = False
        elif state == GREEN:
            self._red_pending = False
            # Every other approach is red while this one is green: only this light changes.
            self.lights.offsets[light.node] = self.lights.green_offset(
                light, self.time - self.lights.timing.green_s)

    # -- lane graph position --------------------------------------------------------------------

    def lane_at(self, route_s: float) -> Tuple[int, int, float]:
        """
        Return ``(k, lane, local_s)``: the route lane at route arc length ``route_s``.

        :param route_s: arc length along the route (m, 0 at the start)
        """
        k = int(np.searchsorted(self._lane_starts, route_s, side='right')) - 1
        k = min(max(k, 0), len(self._route_lanes) - 1)
        return k, self._route_lanes[k], float(route_s - self._lane_starts[k])

    def _update_ego_place(self):
        proj = self._projection
        p = self.config.vehicle
        k, lane, local = self.lane_at(proj.s)
        on_lanes = proj.distance < 2.5
        self.traffic.ego = EgoPlace(lane if on_lanes else -1, local, self.vehicle.state.speed,
                                    tuple(self._route_lanes[k + 1:k + 3]), p.length_m)
        # Reserve the junction connector the ego is entering or in.
        half = 0.5 * p.length_m
        connector, past, left = -1, False, True
        for j in (k, k + 1, k - 1):
            if 0 <= j < len(self._route_lanes):
                lane_j = self.town.lanes[self._route_lanes[j]]
                if lane_j.is_connector and self.town.nodes[lane_j.start_node].is_junction:
                    start = self._lane_starts[j]
                    end = start + lane_j.length
                    front, rear = proj.s + half, proj.s - half
                    if front > start and rear < end:
                        connector, past, left = lane_j.index, True, False
                        break
        if not on_lanes:
            connector = -1
        self.traffic.update_ego(connector, past, left)

    # -- stepping ----------------------------------------------------------------------------

    def step(self, control: Control) -> StepResult:
        """
        Advance one step: the ego under ``control``, then the traffic; score the ego.

        :param control: the command (clamped; NaN means full brake)
        """
        dt = self.config.dt
        before = self.vehicle.state
        front_before = self._projection.s + 0.5 * self.config.vehicle.length_m
        self.vehicle.step(control, dt)
        self.time += dt
        hit = self._collides()
        if hit is not None:
            self.vehicle.state = VehicleState(before.x, before.y, before.yaw, 0.0,
                                              self.vehicle.state.steer_angle)
        state = self.vehicle.state
        self._projection = self.route.project(state.x, state.y, self._projection.index)
        self._update_ego_place()
        if self._crossing_pending and \
                self._projection.s > self.town_route.scenario_s - 45.0:
            self._crossing_pending = False
            self._spawn_crossing()
        if self._red_pending:
            self._turn_red()
        self.traffic.step(dt, self.time, self.traffic.ego)
        if self.done:
            return self._result(())
        known = len(self.scorer.events)
        self._contacts(hit, front_before, before.speed)
        proj = self._projection
        goal_x, goal_y, _ = self.route.pose_at(self.route.length, 0.0)
        self.scorer.update(self.time, state.x, state.y, proj.s, proj.distance,
                           self._outside_lanes, state.speed,
                           math.hypot(goal_x - state.x, goal_y - state.y))
        return self._result(tuple(self.scorer.events[known:]))

    @property
    def outside_route_lanes_m(self) -> float:
        """Return the route distance completed outside the route's lanes (m)."""
        return self.scorer.outside_lane_m

    def _collides(self, grow_length: float = 0.0, grow_width: float = 0.0):
        st = self.vehicle.state
        p = self.config.vehicle
        footprint = box_corners(st.x, st.y, st.yaw, p.length_m + grow_length,
                                p.width_m + grow_width)
        reach = 3.5 + grow_length
        if len(self._solids):
            near = np.hypot(self._solid_xy[:, 0] - st.x, self._solid_xy[:, 1] - st.y) \
                < self._solid_r + reach
            for i in np.nonzero(near)[0]:
                if boxes_overlap(footprint, self._solids[i].corners()):
                    return self._solids[i]
        for agent in self.traffic.agents:
            if agent.active and abs(agent.x - st.x) < 7.0 and abs(agent.y - st.y) < 7.0 and \
                    boxes_overlap(footprint, agent.corners()):
                return agent
        return None

    def _contacts(self, hit, front_before: float, speed_before: float) -> None:
        """Score collisions and red lights; update whether the ego is outside its lanes."""
        proj = self._projection
        st = self.vehicle.state
        touched = hit or self._collides(0.6, 0.3)
        if touched is not None and not self._in_collision:
            # A hit stopped the car: judge the contact by the speed it had.
            speed = speed_before if hit is not None else st.speed
            if isinstance(touched, _Solid):
                self.scorer.collision('collision_static', st.x, st.y, speed, proj.s,
                                      touched.kind, time=self.time)
            else:
                name = f'vehicle {touched.ident}'
                self.scorer.collision('collision_vehicle', st.x, st.y, speed, proj.s, name,
                                      other_id=name, time=self.time)
        self._in_collision = touched is not None
        inside_box = self.town.in_junction(st.x, st.y) >= 0
        outside = proj.distance > 0.5 * self.town.config.lane_width_m and not inside_box
        self._off_road = self._outside_lanes = outside
        front = proj.s + 0.5 * self.config.vehicle.length_m
        for crossing in self.town_route.crossings:
            if front_before < crossing.s_entry <= front:
                light = self.lights.by_lane.get(crossing.source)
                if light is not None and self.lights.state(light, self.time) == RED:
                    self.scorer.infraction('red_light', st.x, st.y, proj.s,
                                           f'junction {crossing.node}', time=self.time)

    # -- what the world exposes -----------------------------------------------------------------

    def global_plan(self) -> GlobalPlan:
        """Return the route's global plan (sparse targets and dense waypoints, map frame)."""
        return self.town_route.global_plan()

    def light_states(self) -> List[dict]:
        """Return every traffic light: id, junction, controlled lane, stop line, state."""
        return [{'id': light.index, 'junction': light.node, 'lane': light.lane,
                 'stop_x': light.stop_x, 'stop_y': light.stop_y, 'stop_yaw': light.stop_yaw,
                 'x': light.pole_x, 'y': light.pole_y, 'state': state}
                for light, state in self.lights.states(self.time)]

    def other_vehicles(self) -> List[dict]:
        """Return every other vehicle: id, pose, speed, size."""
        return [{'id': a.ident, 'x': a.x, 'y': a.y, 'yaw': a.yaw, 'speed': a.speed,
                 'length': a.length, 'width': a.width} for a in self.traffic.agents
                if a.active]

    def scenario(self) -> dict:
        """Return the route's description (length, junction moves, scenario)."""
        return self.town_route.describe()

    # -- camera ------------------------------------------------------------------------------

    def render(self) -> np.ndarray:
        """Return the front camera image, ``H x W x 4`` uint8 bgra8."""
        from llava_drive.sim.camera import Camera
        from llava_drive.sim.town.raster import TownRaster
        if self._raster is None:
            self._raster = TownRaster(self.town, self.appearance,
                                      max(self.config.raster_resolution_m, 0.08))
            self._camera = None
        if self._camera is None:
            props = [(b.x, b.y, b.yaw, max(b.length, b.width), building_parts(b))
                     for b in self.town.buildings]
            self._heads = {}
            for light in self.lights.lights:
                left = head_offset(light)
                props.append((light.pole_x, light.pole_y, light.stop_yaw, left + 1.0,
                              light_parts(left)))
            self._camera = Camera(self.camera_config(), self._raster, self.town.parked_cars,
                                  self.town.trees, props)
            for light in self.lights.lights:
                left = head_offset(light)
                self._heads[light.index] = {
                    state: self._camera.prepare_prop(light.pole_x, light.pole_y, light.stop_yaw,
                                                     left + 1.0, lamp_parts(left, state))
                    for state in STATES + (None,)}
        rx, ry = self.vehicle.rear_axle()
        dynamic = []
        for light, state in self.lights.states(self.time):
            # Lit lamps only within 45 degrees of the head's axis (real heads have visors; and
            # see lamp_parts).
            facing = (light.pole_x - rx) * math.cos(light.stop_yaw) + \
                (light.pole_y - ry) * math.sin(light.stop_yaw)
            distance = math.hypot(light.pole_x - rx, light.pole_y - ry)
            dynamic.append(self._heads[light.index][state if facing > 0.7 * distance else None])
        for agent in self.traffic.agents:
            if agent.active:
                braking = agent.accel < -0.5 or agent.speed < 0.1
                key = (agent.ident, braking)
                if key not in self._vehicle_templates:
                    self._vehicle_templates[key] = self._camera.prepare_prop(
                        0.0, 0.0, 0.0, agent.length, vehicle_parts(agent, braking))[3:]
                dynamic.append((agent.x, agent.y, agent.yaw) + self._vehicle_templates[key])
        return self._camera.render(rx, ry, self.vehicle.state.yaw, dynamic)


def building_parts(building) -> List[tuple]:
    """Return a building's boxes in its frame: the block and a darker roof cornice."""
    hl, hw, h = 0.5 * building.length, 0.5 * building.width, building.height
    wall = tuple(float(c) for c in building.colour_bgr)
    trim = tuple(0.7 * c for c in wall)
    return [((-hl, hl, -hw, hw, 0.0, h), wall, False),
            ((-hl - 0.2, hl + 0.2, -hw - 0.2, hw + 0.2, h, h + 0.5), trim, False)]


def vehicle_parts(agent, braking: bool) -> List[tuple]:
    """Return a moving car's boxes in its frame (lit brake lamps when ``braking``)."""
    hl, hw = 0.5 * agent.length, 0.5 * agent.width
    paint = tuple(float(c) for c in agent.colour_bgr)
    lamp = ((40.0, 40.0, 255.0), 'lit') if braking else ((30.0, 30.0, 150.0), False)
    parts = [((-hl + 0.3, hl - 0.3, -hw + 0.1, hw - 0.1, 0.0, 0.4), (25.0, 25.0, 25.0), False),
             ((-hl, hl, -hw, hw, 0.35, 0.95), paint, False)]
    for y0, y1 in ((-hw + 0.1, -hw + 0.45), (hw - 0.45, hw - 0.1)):
        parts.append(((-hl - 0.04, -hl, y0, y1, 0.7, 0.88), lamp[0], lamp[1]))
    parts.append(((-hl + 1.0, hl - 1.4, -hw + 0.1, hw - 0.1, 0.95, 1.5), paint, True))
    return parts
