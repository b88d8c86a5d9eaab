"""
A fake ``carla`` module: the subset of the CARLA 0.9.16 Python API llava_drive uses.

There is no CARLA server on CI machines, so this module plays client and server in one
process: a grid town (two-way roads, 4-way and 3-way junctions with left, right and straight
connector lanes), a kinematic ego vehicle, autopilot traffic moved by the traffic manager on
``World.tick()`` when it is in synchronous mode, an RGB camera producing BGRA ``raw_data``,
collision and lane-invasion sensors. Like CARLA, sensor callbacks run on a worker thread after
the tick, not inside it.

Public names mirror the real API (``test/test_carla_conformance.py`` checks each against the
real wheel); names starting with ``_`` are the test's handle on the "server": ``_SERVER``
(:class:`_Server`) and ``_reset()``. In a child process the server is configured by the
environment: ``FAKE_CARLA_SERVER_VERSION``, ``FAKE_CARLA_CLIENT_VERSION``, ``FAKE_CARLA_DOWN``
(1 = no server answers), ``FAKE_CARLA_TOWN`` (the map loaded at start),
``FAKE_CARLA_LOAD_SECONDS`` (how long a map load takes), ``FAKE_CARLA_RED_LIGHTS`` (1 = every
junction shows red).
"""
from enum import IntEnum
import fnmatch
import itertools
import math
import os
import queue
import random
import threading
import time

import numpy as np

_MAPS = {'Town01': (3, 2), 'Town02': (2, 2), 'Town03': (3, 3)}
_BLOCK_M = 60.0  # distance between junction centres
_JUNCTION_RADIUS_M = 8.0
_LANE_OFFSET_M = 1.75
_LANE_WIDTH_M = 3.5
_SAMPLE_M = 0.5
_WHEELBASE_M = 2.9
_MAX_STEER_DEG = 70.0
_ids = itertools.count(1)


# -- geometry ---------------------------------------------------------------------------------
class Vector3D:
    """carla.Vector3D."""

    def __init__(self, x=0.0, y=0.0, z=0.0):
        self.x, self.y, self.z = float(x), float(y), float(z)

    def length(self):
        """Return the Euclidean length."""
        return math.sqrt(self.x ** 2 + self.y ** 2 + self.z ** 2)

    def distance(self, other):
        """Return the distance to ``other``."""
        return math.sqrt((self.x - other.x) ** 2 + (self.y - other.y) ** 2
                         + (self.z - other.z) ** 2)

    def __repr__(self):
        return f'{type(self).__name__}(x={self.x:.2f}, y={self.y:.2f}, z={self.z:.2f})'


class Location(Vector3D):
    """carla.Location."""


class Rotation:
    """carla.Rotation (degrees; yaw clockwise seen from above, as CARLA's y points right)."""

    def __init__(self, pitch=0.0, yaw=0.0, roll=0.0):
        self.pitch, self.yaw, self.roll = float(pitch), float(yaw), float(roll)

    def get_forward_vector(self):
        """Return the unit vector the rotation faces."""
        yaw, pitch = math.radians(self.yaw), math.radians(self.pitch)
        return Vector3D(math.cos(yaw) * math.cos(pitch), math.sin(yaw) * math.cos(pitch),
                        math.sin(pitch))


class Transform:
    """carla.Transform."""

    def __init__(self, location=None, rotation=None):
        self.location = location if location is not None else Location()
        self.rotation = rotation if rotation is not None else Rotation()

    def get_forward_vector(self):
        """Return the unit vector the transform faces."""
        return self.rotation.get_forward_vector()

    def __repr__(self):
        return f'Transform({self.location}, yaw={self.rotation.yaw:.1f})'


class VehicleControl:
    """carla.VehicleControl."""

    def __init__(self, throttle=0.0, steer=0.0, brake=0.0, hand_brake=False, reverse=False,
                 manual_gear_shift=False, gear=0):
        self.throttle, self.steer, self.brake = float(throttle), float(steer), float(brake)
        self.hand_brake, self.reverse = bool(hand_brake), bool(reverse)
        self.manual_gear_shift, self.gear = bool(manual_gear_shift), int(gear)


class WeatherParameters:
    """carla.WeatherParameters with a few presets."""

    def __init__(self, cloudiness=0.0, precipitation=0.0, sun_altitude_angle=45.0):
        self.cloudiness, self.precipitation = cloudiness, precipitation
        self.sun_altitude_angle = sun_altitude_angle


WeatherParameters.ClearNoon = WeatherParameters()
WeatherParameters.WetCloudySunset = WeatherParameters(60.0, 0.0, 10.0)
WeatherParameters.HardRainNoon = WeatherParameters(90.0, 90.0, 45.0)


class WorldSettings:
    """carla.WorldSettings."""

    def __init__(self, synchronous_mode=False, no_rendering_mode=False,
                 fixed_delta_seconds=None):
        self.synchronous_mode = bool(synchronous_mode)
        self.no_rendering_mode = bool(no_rendering_mode)
        self.fixed_delta_seconds = fixed_delta_seconds

    def _copy(self):
        return WorldSettings(self.synchronous_mode, self.no_rendering_mode,
                             self.fixed_delta_seconds)


class LaneMarkingType(IntEnum):
    """carla.LaneMarkingType."""

    NONE = 0
    Other = 1
    Broken = 2
    Solid = 3
    SolidSolid = 4


class LaneMarking:
    """carla.LaneMarking."""

    def __init__(self, marking_type):
        self.type = marking_type
        self.width = 0.15


class TrafficLightState(IntEnum):
    """carla.TrafficLightState."""

    Red = 0
    Yellow = 1
    Green = 2
    Off = 3
    Unknown = 4


# -- map --------------------------------------------------------------------------------------
class _Lane:
    """One lane of a road or a junction connector: a sampled polyline with links."""

    def __init__(self, points, road_id, lane_id, junction_id):
        self.points = np.asarray(points, dtype=float)
        steps = np.diff(self.points, axis=0)
        self.s = np.concatenate([[0.0], np.cumsum(np.hypot(steps[:, 0], steps[:, 1]))])
        self.length = float(self.s[-1])
        self.road_id, self.lane_id, self.junction_id = road_id, lane_id, junction_id
        self.successors, self.predecessors = [], []

    def pose(self, s):
        """Return (x, y, yaw_deg) at arc length ``s``."""
        s = min(max(s, 0.0), self.length)
        i = int(min(np.searchsorted(self.s, s, side='right') - 1, len(self.points) - 2))
        t = (s - self.s[i]) / max(self.s[i + 1] - self.s[i], 1e-9)
        a, b = self.points[i], self.points[i + 1]
        x, y = a + t * (b - a)
        return float(x), float(y), math.degrees(math.atan2(b[1] - a[1], b[0] - a[0]))


def _segment(a, b):
    n = max(2, int(math.hypot(b[0] - a[0], b[1] - a[1]) / _SAMPLE_M) + 1)
    return [(a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t) for t in np.linspace(0, 1, n)]


def _curve(a, control, b):
    n = 24
    return [((1 - t) ** 2 * a[0] + 2 * (1 - t) * t * control[0] + t ** 2 * b[0],
             (1 - t) ** 2 * a[1] + 2 * (1 - t) * t * control[1] + t ** 2 * b[1])
            for t in np.linspace(0, 1, n)]


def _build_lanes(columns, rows):
    """Return the lanes of a grid town with right-hand traffic."""
    nodes = {(i, j): (i * _BLOCK_M, j * _BLOCK_M) for i in range(columns) for j in range(rows)}
    lanes, incoming, outgoing = [], {}, {}
    road_ids = itertools.count(1)
    for (i, j), centre in nodes.items():
        for di, dj in ((1, 0), (0, 1)):
            other = (i + di, j + dj)
            if other not in nodes:
                continue
            road = next(road_ids)
            for lane_id, (start, end) in ((-1, ((i, j), other)), (1, (other, (i, j)))):
                a, b = np.array(nodes[start]), np.array(nodes[end])
                d = (b - a) / np.linalg.norm(b - a)
                right = np.array([-d[1], d[0]])  # CARLA's y points right of +x
                p0 = a + _JUNCTION_RADIUS_M * d + _LANE_OFFSET_M * right
                p1 = b - _JUNCTION_RADIUS_M * d + _LANE_OFFSET_M * right
                lane = _Lane(_segment(p0, p1), road, lane_id, -1)
                lane.direction = d
                lanes.append(lane)
                outgoing.setdefault(start, []).append(lane)
                incoming.setdefault(end, []).append(lane)
    junction_road = itertools.count(1000)
    for node in nodes:
        for lane_in in incoming.get(node, []):
            for lane_out in outgoing.get(node, []):
                if np.allclose(lane_in.direction, -lane_out.direction):
                    continue  # no U-turns
                a, b = lane_in.points[-1], lane_out.points[0]
                if np.allclose(lane_in.direction, lane_out.direction):
                    points = _segment(a, b)
                else:  # the corner where both lanes' lines meet
                    d_in, d_out = lane_in.direction, lane_out.direction
                    t = np.linalg.solve(np.array([d_in, -d_out]).T, b - a)[0]
                    points = _curve(a, a + t * d_in, b)
                connector = _Lane(points, next(junction_road), -1, hash(node) % 10000)
                connector.direction = lane_out.direction
                lane_in.successors.append(connector)
                connector.predecessors.append(lane_in)
                connector.successors.append(lane_out)
                lane_out.predecessors.append(connector)
                lanes.append(connector)
    return lanes


class Waypoint:
    """carla.Waypoint: a point on a lane."""

    def __init__(self, lane, s):
        self._lane, self.s = lane, float(min(max(s, 0.0), lane.length))
        x, y, yaw = lane.pose(self.s)
        self.transform = Transform(Location(x, y, 0.0), Rotation(yaw=yaw))
        self.road_id, self.lane_id, self.section_id = lane.road_id, lane.lane_id, 0
        self.is_junction = lane.junction_id >= 0
        self.junction_id = lane.junction_id
        self.lane_width = _LANE_WIDTH_M
        self.id = hash((id(lane), round(self.s, 2)))

    def next(self, distance):  # noqa: A003 - the CARLA API name
        """Return the waypoints ``distance`` metres ahead (one per branch)."""
        return self._walk(self._lane, self.s + distance, forward=True)

    def previous(self, distance):
        """Return the waypoints ``distance`` metres behind (one per branch)."""
        return self._walk(self._lane, self.s - distance, forward=False)

    @staticmethod
    def _walk(lane, s, forward):
        if 0.0 <= s <= lane.length:
            return [Waypoint(lane, s)]
        links = lane.successors if forward else lane.predecessors
        if not links:
            return [Waypoint(lane, s)]
        result = []
        for link in links:
            rest = s - lane.length if forward else link.length + s
            result.extend(Waypoint._walk(link, rest, forward))
        return result


class Map:
    """carla.Map of a grid town."""

    def __init__(self, town):
        self.name = f'Carla/Maps/{town}'
        self._lanes = _build_lanes(*_MAPS[town])
        self._points = np.concatenate([lane.points for lane in self._lanes])
        self._owner = np.concatenate([[k] * len(lane.points)
                                      for k, lane in enumerate(self._lanes)])

    def get_spawn_points(self):
        """Return one transform in the middle of every road lane."""
        points = []
        for lane in self._lanes:
            if lane.junction_id < 0:
                x, y, yaw = lane.pose(lane.length / 2.0)
                points.append(Transform(Location(x, y, 0.5), Rotation(yaw=yaw)))
        return points

    def get_topology(self):
        """Return ``(start, end)`` waypoint pairs, one per lane."""
        return [(Waypoint(lane, 0.0), Waypoint(lane, lane.length)) for lane in self._lanes]

    def generate_waypoints(self, distance):
        """Return waypoints every ``distance`` metres on every lane."""
        return [Waypoint(lane, s) for lane in self._lanes
                for s in np.arange(0.0, lane.length, distance)]

    def get_waypoint(self, location, project_to_road=True, lane_type=None):
        """Return the waypoint nearest to ``location`` (the lane's centre line)."""
        d2 = (self._points[:, 0] - location.x) ** 2 + (self._points[:, 1] - location.y) ** 2
        k = int(np.argmin(d2))
        if not project_to_road and d2[k] > _LANE_WIDTH_M ** 2:
            return None
        lane = self._lanes[self._owner[k]]
        start = int(np.flatnonzero(self._owner == self._owner[k])[0])
        return Waypoint(lane, float(lane.s[k - start]))


# -- actors -----------------------------------------------------------------------------------
class ActorAttribute:
    """carla.ActorAttribute."""

    def __init__(self, attribute_id, value):
        self.id, self._value = attribute_id, str(value)

    def as_int(self):
        """Return the value as an int."""
        return int(float(self._value))

    def as_float(self):
        """Return the value as a float."""
        return float(self._value)

    def as_str(self):
        """Return the value as a string."""
        return self._value


class ActorBlueprint:
    """carla.ActorBlueprint."""

    def __init__(self, blueprint_id, attributes):
        self.id = blueprint_id
        self._attributes = dict(attributes)

    def has_attribute(self, name):
        """Return whether the blueprint has ``name``."""
        return name in self._attributes

    def get_attribute(self, name):
        """Return attribute ``name``; IndexError like CARLA when it does not exist."""
        if name not in self._attributes:
            raise IndexError(f'No attribute {name!r}')
        return ActorAttribute(name, self._attributes[name])

    def set_attribute(self, name, value):
        """Set attribute ``name``; IndexError when the blueprint has no such attribute."""
        if name not in self._attributes:
            raise IndexError(f'No attribute {name!r}')
        self._attributes[name] = str(value)


_BLUEPRINTS = [
    ('vehicle.tesla.model3', {'role_name': 'autopilot', 'number_of_wheels': 4}),
    ('vehicle.lincoln.mkz_2020', {'role_name': 'autopilot', 'number_of_wheels': 4}),
    ('vehicle.audi.a2', {'role_name': 'autopilot', 'number_of_wheels': 4}),
    ('vehicle.bh.crossbike', {'role_name': 'autopilot', 'number_of_wheels': 2}),
    ('sensor.camera.rgb', {'role_name': 'front', 'image_size_x': 800, 'image_size_y': 600,
                           'fov': 90.0, 'sensor_tick': 0.0}),
    ('sensor.other.collision', {'role_name': 'front'}),
    ('sensor.other.lane_invasion', {'role_name': 'front'}),
]


class BlueprintLibrary:
    """carla.BlueprintLibrary."""

    def __init__(self):
        self._blueprints = [ActorBlueprint(i, a) for i, a in _BLUEPRINTS]

    def find(self, blueprint_id):
        """Return a copy of blueprint ``blueprint_id``; IndexError when unknown."""
        for blueprint in self._blueprints:
            if blueprint.id == blueprint_id:
                return ActorBlueprint(blueprint.id, blueprint._attributes)
        raise IndexError(f'blueprint {blueprint_id!r} not found')

    def filter(self, pattern):  # noqa: A003 - the CARLA API name
        """Return copies of the blueprints matching a wildcard ``pattern``."""
        return [ActorBlueprint(b.id, b._attributes) for b in self._blueprints
                if fnmatch.fnmatch(b.id, pattern)]

    def __iter__(self):
        return iter(self.filter('*'))


class Actor:
    """carla.Actor."""

    def __init__(self, world, blueprint, transform, parent=None):
        self.id = next(_ids)
        self.type_id = blueprint.id
        self.attributes = dict(blueprint._attributes)
        self.parent = parent
        self.is_alive = True
        self._world, self._transform = world, transform

    def get_transform(self):
        """Return the world transform (a parent's transform moves attached actors)."""
        if self.parent is None:
            return Transform(Location(self._transform.location.x, self._transform.location.y,
                                      self._transform.location.z),
                             Rotation(self._transform.rotation.pitch,
                                      self._transform.rotation.yaw,
                                      self._transform.rotation.roll))
        return self.parent.get_transform()

    def get_location(self):
        """Return the world location."""
        return self.get_transform().location

    def get_velocity(self):
        """Return the velocity (m/s, world frame)."""
        return Vector3D()

    def destroy(self):
        """Remove the actor; return whether it was alive."""
        alive = self.is_alive
        self.is_alive = False
        self._world._actors.pop(self.id, None)
        return alive


class Vehicle(Actor):
    """carla.Vehicle with a kinematic bicycle model."""

    def __init__(self, world, blueprint, transform, parent=None):
        super().__init__(world, blueprint, transform, parent)
        self._speed = 0.0
        self._control = VehicleControl()
        self._autopilot_port = None
        self._waypoint = None

    def apply_control(self, control):
        """Set the control used on the following ticks."""
        self._control = control
        self._world._server.controls.append((self._world._frame, self.id, control.throttle,
                                             control.steer, control.brake))

    def get_control(self):
        """Return the control last applied."""
        return self._control

    def get_velocity(self):
        """Return the velocity (m/s, world frame)."""
        forward = self._transform.rotation.get_forward_vector()
        return Vector3D(forward.x * self._speed, forward.y * self._speed, 0.0)

    def get_speed_limit(self):
        """Return the speed limit where the vehicle is (km/h)."""
        return 30.0

    def set_autopilot(self, enabled=True, tm_port=8000):
        """Hand the vehicle to the traffic manager on ``tm_port``."""
        self._autopilot_port = tm_port if enabled else None
        self._waypoint = self._world._map.get_waypoint(self._transform.location)

    def is_at_traffic_light(self):
        """Return whether a traffic light governs the vehicle (approaching a junction)."""
        waypoint = self._world._map.get_waypoint(self._transform.location)
        if waypoint.is_junction:
            return False
        return any(w.is_junction for w in waypoint.next(6.0))

    def get_traffic_light_state(self):
        """Return the light state governing the vehicle (Green where there is none)."""
        if self._world._server.red_lights and self.is_at_traffic_light():
            return TrafficLightState.Red
        return TrafficLightState.Green

    def _step(self, dt):
        c = self._control
        throttle = min(max(c.throttle, 0.0), 1.0)
        brake = min(max(c.brake, 0.0), 1.0)
        accel = 4.0 * throttle - 9.0 * brake - 0.05 * self._speed - (9.0 if c.hand_brake else 0)
        self._speed = max(0.0, self._speed + accel * dt)
        steer = math.radians(_MAX_STEER_DEG * min(max(c.steer, -1.0), 1.0))
        rotation = self._transform.rotation
        rotation.yaw += math.degrees(self._speed / _WHEELBASE_M * math.tan(steer) * dt)
        forward = rotation.get_forward_vector()
        self._transform.location.x += forward.x * self._speed * dt
        self._transform.location.y += forward.y * self._speed * dt

    def _autopilot_step(self, dt):
        """Follow the lane at 8 m/s, choosing branches at random."""
        self._speed = 8.0
        self._waypoint = self._world._rng.choice(self._waypoint.next(self._speed * dt))
        transform = self._waypoint.transform
        self._transform = Transform(Location(transform.location.x, transform.location.y, 0.5),
                                    Rotation(yaw=transform.rotation.yaw))


class Sensor(Actor):
    """carla.Sensor (ServerSideSensor and LaneInvasionSensor share this interface)."""

    def __init__(self, world, blueprint, transform, parent=None):
        super().__init__(world, blueprint, transform, parent)
        self._callback = None

    def listen(self, callback):
        """Call ``callback(data)`` for every measurement (on a worker thread)."""
        self._callback = callback

    def is_listening(self):
        """Return whether a callback is registered."""
        return self._callback is not None

    def stop(self):
        """Stop calling the callback."""
        self._callback = None


ServerSideSensor = Sensor
LaneInvasionSensor = Sensor


class Timestamp:
    """carla.Timestamp."""

    def __init__(self, frame, elapsed_seconds, delta_seconds):
        self.frame, self.elapsed_seconds = frame, elapsed_seconds
        self.delta_seconds = delta_seconds
        self.platform_timestamp = time.time()


class SensorData:
    """carla.SensorData."""

    def __init__(self, frame, timestamp, transform):
        self.frame, self.timestamp, self.transform = frame, timestamp, transform


class Image(SensorData):
    """carla.Image: BGRA pixels in ``raw_data``."""

    def __init__(self, frame, timestamp, transform, width, height, fov, raw_data):
        super().__init__(frame, timestamp, transform)
        self.width, self.height, self.fov, self.raw_data = width, height, fov, raw_data


class CollisionEvent(SensorData):
    """carla.CollisionEvent."""

    def __init__(self, frame, timestamp, transform, actor, other_actor):
        super().__init__(frame, timestamp, transform)
        self.actor, self.other_actor = actor, other_actor
        self.normal_impulse = Vector3D(1000.0, 0.0, 0.0)


class LaneInvasionEvent(SensorData):
    """carla.LaneInvasionEvent."""

    def __init__(self, frame, timestamp, transform, actor, markings):
        super().__init__(frame, timestamp, transform)
        self.actor, self.crossed_lane_markings = actor, markings


class ActorList:
    """carla.ActorList."""

    def __init__(self, actors):
        self._actors = list(actors)

    def __iter__(self):
        return iter(self._actors)

    def __len__(self):
        return len(self._actors)

    def __getitem__(self, index):
        return self._actors[index]

    def filter(self, pattern):  # noqa: A003 - the CARLA API name
        """Return the actors whose type matches a wildcard ``pattern``."""
        return ActorList(a for a in self if fnmatch.fnmatch(a.type_id, pattern))

    def find(self, actor_id):
        """Return the actor with ``actor_id`` or None."""
        return next((a for a in self if a.id == actor_id), None)


class WorldSnapshot:
    """carla.WorldSnapshot."""

    def __init__(self, timestamp):
        self.timestamp = timestamp
        self.frame = timestamp.frame
        self.elapsed_seconds = timestamp.elapsed_seconds


class TrafficManager:
    """carla.TrafficManager: moves autopilot vehicles when the world ticks."""

    def __init__(self, server, port):
        self._server, self._port = server, port
        self._synchronous = False
        self._seed = None

    def get_port(self):
        """Return the port."""
        return self._port

    def set_synchronous_mode(self, mode_switch):
        """Follow the ticks of the client that ticks (True) or run on its own clock."""
        self._synchronous = bool(mode_switch)

    def set_random_device_seed(self, value):
        """Seed the route choices."""
        self._seed = value


# -- world ------------------------------------------------------------------------------------
class World:
    """carla.World."""

    def __init__(self, server, town):
        self._server, self._town = server, town
        self._map = Map(town)
        self._settings = WorldSettings()
        self._weather = WeatherParameters.ClearNoon
        self._actors = {}
        self._frame, self._elapsed = 1, 0.0
        self._rng = random.Random(0)
        self._contacts = set()
        self._lanes = {}
        self.id = next(_ids)

    def get_map(self):
        """Return the map."""
        return self._map

    def get_settings(self):
        """Return a copy of the settings."""
        return self._settings._copy()

    def apply_settings(self, settings):
        """Apply settings; return the frame."""
        self._settings = settings._copy()
        return self._frame

    def set_weather(self, weather):
        """Set the weather."""
        self._weather = weather

    def get_weather(self):
        """Return the weather."""
        return self._weather

    def get_blueprint_library(self):
        """Return the blueprint library."""
        return BlueprintLibrary()

    def get_actors(self):
        """Return every actor."""
        return ActorList(self._actors.values())

    def get_snapshot(self):
        """Return the current frame and time."""
        return WorldSnapshot(Timestamp(self._frame, self._elapsed, self._delta()))

    def _delta(self):
        return self._settings.fixed_delta_seconds or 0.05

    def spawn_actor(self, blueprint, transform, attach_to=None):
        """Spawn an actor; RuntimeError when the spot is taken, like CARLA."""
        actor = self.try_spawn_actor(blueprint, transform, attach_to)
        if actor is None:
            raise RuntimeError('Spawn failed because of collision at spawn position')
        return actor

    def try_spawn_actor(self, blueprint, transform, attach_to=None):
        """Spawn an actor, or return None when the spot is taken."""
        transform = Transform(Location(transform.location.x, transform.location.y,
                                       transform.location.z),
                              Rotation(transform.rotation.pitch, transform.rotation.yaw,
                                       transform.rotation.roll))
        if blueprint.id.startswith('vehicle.'):
            for other in self._actors.values():
                if isinstance(other, Vehicle) and \
                        other.get_location().distance(transform.location) < 4.0:
                    return None
            actor = Vehicle(self, blueprint, transform)
        else:
            actor = Sensor(self, blueprint, transform, attach_to)
        self._actors[actor.id] = actor
        return actor

    def tick(self, seconds=10.0):
        """Advance one step; sensor callbacks follow on the worker thread. Return the frame."""
        self._server.check_up()
        dt = self._delta()
        vehicles = [a for a in self._actors.values() if isinstance(a, Vehicle)]
        for vehicle in vehicles:
            manager = self._server.traffic_managers.get(vehicle._autopilot_port)
            if vehicle._autopilot_port is None:
                vehicle._step(dt)
            elif manager is not None and manager._synchronous:
                vehicle._autopilot_step(dt)
        self._frame += 1
        self._elapsed += dt
        self._server.ticks.append(self._frame)
        timestamp = Timestamp(self._frame, self._elapsed, dt)
        for sensor in [a for a in self._actors.values() if isinstance(a, Sensor)]:
            data = self._measure(sensor, timestamp, vehicles)
            if data is not None and sensor._callback is not None:
                self._server.deliveries.put((sensor, data))
        return self._frame

    def _measure(self, sensor, timestamp, vehicles):
        parent, frame = sensor.parent, timestamp.frame
        if parent is None:
            return None
        transform = parent.get_transform()
        if sensor.type_id == 'sensor.camera.rgb':
            width = int(sensor.attributes['image_size_x'])
            height = int(sensor.attributes['image_size_y'])
            return Image(frame, timestamp.elapsed_seconds, transform, width, height,
                         float(sensor.attributes['fov']),
                         self._render(parent, width, height))
        if sensor.type_id == 'sensor.other.collision':
            events = None
            for other in vehicles:
                key = (parent.id, other.id)
                touching = other is not parent and \
                    other.get_location().distance(parent.get_location()) < 2.5
                if touching and key not in self._contacts:
                    events = CollisionEvent(frame, timestamp.elapsed_seconds, transform, parent,
                                            other)
                (self._contacts.add if touching else self._contacts.discard)(key)
            return events
        if sensor.type_id == 'sensor.other.lane_invasion':
            # Crossing the centre line (into the other lane of the same road) or the road's
            # outer edge; junctions have no markings.
            waypoint = self._map.get_waypoint(transform.location)
            offset = waypoint.transform.location.distance(transform.location)
            lane = (waypoint.road_id, waypoint.lane_id)
            last = self._lanes.get(parent.id)
            self._lanes[parent.id] = lane
            key = (parent.id, 'edge')
            outside = offset > _LANE_WIDTH_M / 2.0 and not waypoint.is_junction
            marking = None
            if outside and key not in self._contacts:
                marking = LaneMarkingType.Solid
            elif last is not None and last[0] == lane[0] and last[1] != lane[1]:
                marking = LaneMarkingType.SolidSolid
            (self._contacts.add if outside else self._contacts.discard)(key)
            if marking is None:
                return None
            return LaneInvasionEvent(frame, timestamp.elapsed_seconds, transform, parent,
                                     [LaneMarking(marking)])
        return None

    def _render(self, vehicle, width, height):
        """Draw the two lane edges as the camera would see them, as BGRA bytes."""
        transform = vehicle.get_transform()
        waypoint = self._map.get_waypoint(transform.location)
        lane = waypoint.transform
        yaw = math.radians(lane.rotation.yaw)
        dx = transform.location.x - lane.location.x
        dy = transform.location.y - lane.location.y
        offset = -math.sin(yaw) * dx + math.cos(yaw) * dy  # to the right of the lane centre
        heading = math.remainder(math.radians(transform.rotation.yaw) - yaw, 2 * math.pi)
        image = np.empty((height, width, 4), np.uint8)
        image[: height // 2] = (200, 160, 120, 255)  # sky (BGRA)
        image[height // 2:] = (90, 90, 90, 255)  # road
        rows = np.arange(height // 2, height)
        depth = (rows - height / 2 + 1) / (height / 2)  # 0 at the horizon, 1 at the bottom
        for edge in (-_LANE_WIDTH_M / 2, _LANE_WIDTH_M / 2):
            columns = width / 2 + depth * width * (edge - offset) / 4.0 - heading * width
            columns = np.clip(columns.astype(int), 0, width - 3)
            for k in range(3):
                image[rows, columns + k] = (255, 255, 255, 255)
        return image.tobytes()


class _Server:
    """The fake server's state, shared by every client in this process."""

    def __init__(self):
        self.server_version = os.environ.get('FAKE_CARLA_SERVER_VERSION', '0.9.16')
        self.client_version = os.environ.get('FAKE_CARLA_CLIENT_VERSION', '0.9.16')
        self.down = os.environ.get('FAKE_CARLA_DOWN', '') == '1'
        self.load_seconds = float(os.environ.get('FAKE_CARLA_LOAD_SECONDS', '0'))
        self.red_lights = os.environ.get('FAKE_CARLA_RED_LIGHTS', '') == '1'
        self.world = World(self, os.environ.get('FAKE_CARLA_TOWN', 'Town01'))
        self.loads, self.ticks, self.controls, self.timeouts = [], [], [], []
        self.traffic_managers = {}
        self.deliveries = queue.Queue()
        threading.Thread(target=self._deliver, daemon=True).start()

    def check_up(self):
        if self.down:
            raise RuntimeError('time-out of 10000ms while waiting for the simulator, make '
                               'sure the simulator is ready and connected to localhost:2000')

    def _deliver(self):
        while True:
            sensor, data = self.deliveries.get()
            callback = sensor._callback
            if callback is not None:
                callback(data)


class Client:
    """carla.Client connected to the in-process fake server."""

    def __init__(self, host='127.0.0.1', port=2000, worker_threads=0):
        self._host, self._port = host, port
        self._timeout = 5.0

    def set_timeout(self, seconds):
        """Set the timeout of every call (s)."""
        self._timeout = float(seconds)
        _SERVER.timeouts.append(self._timeout)

    def get_server_version(self):
        """Return the server version; RuntimeError when no server answers."""
        _SERVER.check_up()
        return _SERVER.server_version

    def get_client_version(self):
        """Return this module's version."""
        return _SERVER.client_version

    def get_available_maps(self):
        """Return the loadable maps."""
        return [f'/Game/Carla/Maps/{name}' for name in _MAPS]

    def get_world(self):
        """Return the loaded world."""
        _SERVER.check_up()
        return _SERVER.world

    def load_world(self, map_name, reset_settings=True):
        """Load ``map_name``; it takes ``FAKE_CARLA_LOAD_SECONDS`` and needs that timeout."""
        _SERVER.check_up()
        if map_name not in _MAPS:
            raise RuntimeError(f'map not found: {map_name}')
        if _SERVER.load_seconds > self._timeout:
            raise RuntimeError(f'time-out of {int(self._timeout * 1000)}ms while waiting for '
                               f'the simulator')
        _SERVER.loads.append(map_name)
        _SERVER.world = World(_SERVER, map_name)
        return _SERVER.world

    def get_trafficmanager(self, client_connection=8000):
        """Return the traffic manager on port ``client_connection``."""
        manager = _SERVER.traffic_managers.get(client_connection)
        if manager is None:
            manager = _SERVER.traffic_managers[client_connection] = \
                TrafficManager(_SERVER, client_connection)
        return manager


_SERVER = _Server()


def _reset(**settings):
    """Start a fresh fake server (tests); keyword arguments override its attributes."""
    global _SERVER
    town = settings.pop('town', None)
    _SERVER = _Server()
    for key, value in settings.items():
        if not hasattr(_SERVER, key):
            raise AttributeError(f'the fake server has no setting {key!r}')
        setattr(_SERVER, key, value)
    if town is not None:
        _SERVER.world = World(_SERVER, town)
    return _SERVER
