"""
The CARLA side of ``carla_bridge``: one synchronous client that owns the world (no ROS).

:class:`CarlaSession` connects with the ``carla`` package of the server's version, loads the
town once (with a long timeout: a map load takes far longer than a call), switches the world
and the traffic manager to synchronous mode in this same client (a traffic manager only moves
its cars on the ticks of the client it belongs to), spawns the ego vehicle and its sensors from
the objects file, plans the route, and then advances exactly one tick per :meth:`step`,
returning the camera image of that tick with the pose, speed and score. Scoring follows the
same leaderboard rules as the embedded simulator (:class:`llava_drive.sim.scoring.RouteScorer`).

CARLA calls sensor callbacks on its own threads after a tick: images are matched to the tick
by frame number, and infraction events are taken up to the current frame.
"""
from dataclasses import dataclass, field
import json
import math
from pathlib import Path
import queue
import random
import re
import threading
import time
from typing import List, Optional

from llava_drive.bringup.environment import config_path
from llava_drive.carla.route import ros_pose, RoutePlanner
from llava_drive.carla.world import CarlaUnavailable, import_carla, map_name, MAX_FIXED_DELTA
from llava_drive.config_checks import number_in_range
from llava_drive.control import Control
from llava_drive.nodes.interfaces import CAMERA_HEIGHT, CAMERA_WIDTH
from llava_drive.planning import GlobalPlan
from llava_drive.sim.scoring import EpisodeSummary, RouteScorer, ScoringConfig
import numpy as np

# carla_ros_bridge master is pinned to 0.9.13; this bridge is tested against the 0.9.16 API.
SUPPORTED_VERSIONS = ((0, 9, 14), (0, 9, 15), (0, 9, 16))
# Actor type prefixes -> collision kinds of the leaderboard.
COLLISION_KINDS = (('walker.', 'collision_pedestrian'), ('vehicle.', 'collision_vehicle'))


def parse_version(text: str):
    """Return ``(major, minor, patch)`` of a CARLA version string such as ``0.9.15-dirty``."""
    match = re.match(r'\s*(\d+)\.(\d+)\.(\d+)', str(text))
    if match is None:
        raise CarlaUnavailable(f'cannot read the CARLA version {text!r}')
    return tuple(int(part) for part in match.groups())


def check_versions(server: str, client: str) -> None:
    """
    Refuse servers outside 0.9.14-0.9.16 and a ``carla`` package of another version.

    :raises CarlaUnavailable: naming both versions and the fix
    """
    server_v, client_v = parse_version(server), parse_version(client)
    supported = ', '.join('.'.join(map(str, v)) for v in SUPPORTED_VERSIONS)
    if server_v not in SUPPORTED_VERSIONS:
        raise CarlaUnavailable(f'CARLA server {server} is not supported by carla_bridge '
                               f'(supported: {supported})')
    if client_v != server_v:
        raise CarlaUnavailable(f'the carla Python package is {client} but the server is '
                               f'{server}: pip install carla=={".".join(map(str, server_v))}')


@dataclass
class CameraSpec:
    """The ego's front camera from the objects file."""

    name: str = 'rgb_front'
    x: float = 2.0
    y: float = 0.0
    z: float = 2.0
    roll: float = 0.0
    pitch: float = 0.0
    yaw: float = 0.0
    width: int = CAMERA_WIDTH
    height: int = CAMERA_HEIGHT
    fov: float = 90.0


@dataclass
class EgoSpec:
    """The ego vehicle from the objects file (carla_spawn_objects format)."""

    blueprint: str = 'vehicle.tesla.model3'
    role_name: str = 'ego_vehicle'
    camera: CameraSpec = field(default_factory=CameraSpec)


def load_objects(path: Optional[str] = None, role_name: str = 'ego_vehicle') -> EgoSpec:
    """
    Read the ego vehicle and its ``sensor.camera.rgb`` from a carla_spawn_objects file.

    :param path: the JSON file; None or '' = the installed ``config/carla_objects.json``
    :param role_name: the ego's role name; it replaces the file's vehicle ``id`` (the same
        file serves every role name)
    :raises ValueError: naming what is missing or malformed
    """
    path = Path(path) if path else config_path('carla_objects.json')
    try:
        objects = json.loads(Path(path).read_text())['objects']
        vehicle = next(o for o in objects if str(o.get('type', '')).startswith('vehicle.'))
        camera = next(s for s in vehicle.get('sensors', [])
                      if s.get('type') == 'sensor.camera.rgb')
        mount = camera.get('spawn_point', {})
        spec = CameraSpec(
            name=str(camera['id']), x=float(mount.get('x', 0.0)),
            y=float(mount.get('y', 0.0)), z=float(mount.get('z', 0.0)),
            roll=float(mount.get('roll', 0.0)), pitch=float(mount.get('pitch', 0.0)),
            yaw=float(mount.get('yaw', 0.0)), width=int(camera['image_size_x']),
            height=int(camera['image_size_y']), fov=float(camera['fov']))
    except (OSError, ValueError, KeyError, TypeError, StopIteration) as error:
        raise ValueError(f'objects file {path} needs a vehicle.* object with a '
                         f'sensor.camera.rgb (id, spawn_point, image_size_x, image_size_y, '
                         f'fov): {type(error).__name__}: {error}') from None
    number_in_range('camera image_size_x', spec.width, 16, 8192)
    number_in_range('camera image_size_y', spec.height, 16, 8192)
    number_in_range('camera fov', spec.fov, 1.0, 179.0)
    return EgoSpec(str(vehicle['type']), role_name, spec)


@dataclass
class BridgeConfig:
    """
    What :class:`CarlaSession` connects to and drives; validated before connecting.

    :param host: CARLA server host
    :param port: CARLA server RPC port
    :param timeout: seconds for every call to the server
    :param load_timeout: seconds for loading the town (far longer than a call)
    :param town: map to load (loaded once; not reloaded when it is already the current one)
    :param fixed_delta: simulation step (s), at most 0.1 (physics substepping)
    :param role_name: the ego's role name (topic names, and the ego's CARLA attribute)
    :param objects_file: carla_spawn_objects JSON; '' = the installed one
    :param image_width: camera width (px); 0 = the objects file's
    :param image_height: camera height (px); 0 = the objects file's
    :param spawn_point: index into the map's spawn points; -1 = drawn from the route seed
    :param goal: index of the goal spawn point; -1 = drawn from the route seed
    :param route_length: wanted route length when the goal is drawn (m)
    :param resolution: distance between dense route points (m)
    :param traffic: autopilot vehicles driven by the traffic manager
    :param traffic_manager_port: the traffic manager's port
    :param sensor_timeout: seconds to wait for the camera image of a tick
    :param time_limit: route time limit (s); 0 = the leaderboard's growing limit
    """

    host: str = 'localhost'
    port: int = 2000
    timeout: float = 20.0
    load_timeout: float = 300.0
    town: str = 'Town01'
    fixed_delta: float = 0.05
    role_name: str = 'ego_vehicle'
    objects_file: str = ''
    image_width: int = 0
    image_height: int = 0
    spawn_point: int = -1
    goal: int = -1
    route_length: float = 200.0
    resolution: float = 2.0
    traffic: int = 0
    traffic_manager_port: int = 8000
    sensor_timeout: float = 10.0
    time_limit: float = 0.0

    def __post_init__(self):
        """Check every field, naming the bad value."""
        number_in_range('port', self.port, 1, 65535)
        number_in_range('traffic_manager_port', self.traffic_manager_port, 1, 65535)
        number_in_range('timeout', self.timeout, 0.0, 3600.0, low_open=True)
        number_in_range('load_timeout', self.load_timeout, 0.0, 36000.0, low_open=True)
        number_in_range('fixed_delta', self.fixed_delta, 0.0, MAX_FIXED_DELTA, low_open=True)
        number_in_range('spawn_point', self.spawn_point, -1, 100000)
        for name in ('image_width', 'image_height'):
            value = getattr(self, name)
            if value != 0:
                number_in_range(name, value, 16, 8192)
        number_in_range('goal', self.goal, -1, 100000)
        number_in_range('route_length', self.route_length, 10.0, 100000.0)
        number_in_range('resolution', self.resolution, 0.1, 50.0)
        number_in_range('traffic', self.traffic, 0, 10000)
        number_in_range('sensor_timeout', self.sensor_timeout, 0.0, 3600.0, low_open=True)
        number_in_range('time_limit', self.time_limit, 0.0, 1e6)
        if not self.town:
            raise ValueError('town must name a CARLA map such as Town01, got an empty string')
        if not re.fullmatch(r'[A-Za-z0-9_]+', self.role_name):
            raise ValueError(f'role_name must be letters, digits and _ (it is part of topic '
                             f'names), got {self.role_name!r}')


@dataclass
class Frame:
    """What one tick produced, in ROS conventions (map frame, m, rad, ns)."""

    frame: int
    stamp_ns: int
    image: np.ndarray
    x: float
    y: float
    yaw: float
    speed: float
    summary: EpisodeSummary


def vehicle_control(carla, control: Control):
    """Return the ``carla.VehicleControl`` of a :class:`Control`, clamped (NaN brakes)."""
    safe = control.clamped()
    return carla.VehicleControl(throttle=safe.throttle, steer=safe.steer, brake=safe.brake,
                                hand_brake=bool(safe.hand_brake), reverse=bool(safe.reverse))


class CarlaSession:
    """
    One ego vehicle on a CARLA server in synchronous mode.

    :param config: what to connect to and drive
    """

    def __init__(self, config: BridgeConfig):
        self.config = config
        self.ego_spec = load_objects(config.objects_file, config.role_name)
        camera = self.ego_spec.camera
        camera.width = config.image_width or camera.width
        camera.height = config.image_height or camera.height
        self.carla = import_carla()
        self.client = self.world = self.map = self.planner = None
        self.traffic_manager = None
        self.server_version = ''
        self.ego = None
        self.sensors: List[object] = []
        self.traffic: List[object] = []
        self.plan: Optional[GlobalPlan] = None
        self.scorer: Optional[RouteScorer] = None
        self.route_lanes = set()
        self.images = queue.Queue()
        self._events = []
        self._events_lock = threading.Lock()
        self._original_settings = None
        self._at_red_light = False
        self._frame = 0
        self._progress_index = 0
        self.stale_images = 0

    # -- connection ------------------------------------------------------------------------
    def open(self) -> 'CarlaSession':  # noqa: A003 - like a file: open, use, close
        """Connect, check versions, load the town once, enter synchronous mode."""
        cfg, carla = self.config, self.carla
        self.client = carla.Client(cfg.host, cfg.port)
        self.client.set_timeout(cfg.timeout)
        try:
            self.server_version = self.client.get_server_version()
        except RuntimeError as error:
            raise CarlaUnavailable(f'no CARLA server answered at {cfg.host}:{cfg.port} within '
                                   f'{cfg.timeout} s ({error}); start CarlaUE4.sh (0.9.14-'
                                   f'0.9.16) or check host and port') from error
        check_versions(self.server_version, self.client.get_client_version())
        world = self.client.get_world()
        if map_name(world) != cfg.town:
            self.client.set_timeout(cfg.load_timeout)
            try:
                world = self.client.load_world(cfg.town)
            except RuntimeError as error:
                raise CarlaUnavailable(f'loading {cfg.town} failed within {cfg.load_timeout} '
                                       f's: {error}') from error
            finally:
                self.client.set_timeout(cfg.timeout)
        self.world = world
        self._original_settings = world.get_settings()
        settings = world.get_settings()
        settings.synchronous_mode = True
        settings.fixed_delta_seconds = cfg.fixed_delta
        world.apply_settings(settings)
        # In the client that ticks: its cars move on exactly our ticks.
        self.traffic_manager = self.client.get_trafficmanager(cfg.traffic_manager_port)
        self.traffic_manager.set_synchronous_mode(True)
        self.map = world.get_map()
        self.planner = RoutePlanner(self.map, cfg.resolution)
        return self

    def close(self) -> None:
        """Remove our actors and give the world back in asynchronous mode."""
        self._destroy_actors()
        if self.world is not None and self._original_settings is not None:
            try:
                if self.traffic_manager is not None:
                    self.traffic_manager.set_synchronous_mode(False)
                self._original_settings.synchronous_mode = False
                self.world.apply_settings(self._original_settings)
            except RuntimeError:
                pass  # the server went away: nothing left to restore
        self.world = None

    def _destroy_actors(self) -> None:
        for sensor in self.sensors:
            if sensor.is_listening():
                sensor.stop()
        for actor in self.sensors + self.traffic + ([self.ego] if self.ego else []):
            try:
                actor.destroy()
            except RuntimeError:
                pass
        self.sensors, self.traffic, self.ego = [], [], None

    # -- episodes --------------------------------------------------------------------------
    def choose_route(self, seed: int):
        """Return ``(start, goal)`` transforms for a seed (or the configured indices)."""
        cfg = self.config
        points = list(self.map.get_spawn_points())
        if len(points) < 2:
            raise ValueError(f'{cfg.town} has {len(points)} spawn points; a route needs 2')
        for name, index in (('spawn_point', cfg.spawn_point), ('goal', cfg.goal)):
            if index >= len(points):
                raise ValueError(f'{name} {index} does not exist: {cfg.town} has '
                                 f'{len(points)} spawn points (0-{len(points) - 1})')
        rng = random.Random(seed)
        start = cfg.spawn_point if cfg.spawn_point >= 0 else rng.randrange(len(points))
        if cfg.goal >= 0:
            return points[start], points[cfg.goal]
        # The goal whose route length is nearest to the wanted one, ties drawn by the seed.
        candidates = [i for i in range(len(points)) if i != start]
        rng.shuffle(candidates)
        best, best_error = None, math.inf
        for index in candidates[:40]:
            try:
                length = self.planner.plan(points[start].location,
                                           points[index].location).length
            except ValueError:
                continue
            error = abs(length - cfg.route_length)
            if error < best_error:
                best, best_error = index, error
        if best is None:
            raise ValueError(f'no route from spawn point {start} to any other on {cfg.town}')
        return points[start], points[best]

    def start_episode(self, seed: int) -> Frame:
        """Spawn the ego and sensors for a route seed, plan the route, tick once."""
        carla, cfg = self.carla, self.config
        self._destroy_actors()
        start, goal = self.choose_route(seed)
        self.plan = self.planner.plan(start.location, goal.location)
        self.route_lanes = {(w.road_id, w.lane_id) for w, _ in
                            self.planner.trace(start.location, goal.location)}
        library = self.world.get_blueprint_library()
        blueprint = library.find(self.ego_spec.blueprint)
        blueprint.set_attribute('role_name', self.ego_spec.role_name)
        self.ego = self.world.spawn_actor(blueprint, carla.Transform(
            carla.Location(start.location.x, start.location.y, start.location.z + 0.3),
            start.rotation))
        cam = self.ego_spec.camera
        camera = library.find('sensor.camera.rgb')
        for key, value in (('image_size_x', cam.width), ('image_size_y', cam.height),
                           ('fov', cam.fov), ('role_name', cam.name)):
            camera.set_attribute(key, str(value))
        mount = carla.Transform(carla.Location(cam.x, cam.y, cam.z),
                                carla.Rotation(pitch=cam.pitch, yaw=cam.yaw, roll=cam.roll))
        self.sensors = [self.world.spawn_actor(camera, mount, attach_to=self.ego)]
        self.sensors[0].listen(self.images.put)
        for kind in ('sensor.other.collision', 'sensor.other.lane_invasion'):
            sensor = self.world.spawn_actor(library.find(kind), carla.Transform(),
                                            attach_to=self.ego)
            sensor.listen(self._on_event)
            self.sensors.append(sensor)
        if cfg.traffic:
            self._spawn_traffic(seed)
        self.scorer = RouteScorer(seed, max(self.plan.length, 1e-3), ScoringConfig(
            time_limit_s=cfg.time_limit or None))
        self._progress_index = 0
        self._at_red_light = False
        self._start_time = None
        with self._events_lock:
            self._events = []
        return self.step(Control(brake=1.0))

    def _spawn_traffic(self, seed: int) -> None:
        self.traffic_manager.set_random_device_seed(seed)
        rng = random.Random(seed)
        blueprints = sorted((b for b in self.world.get_blueprint_library().filter('vehicle.*')
                             if not b.has_attribute('number_of_wheels')
                             or b.get_attribute('number_of_wheels').as_int() == 4),
                            key=lambda b: b.id)
        points = list(self.map.get_spawn_points())
        rng.shuffle(points)
        for transform in points:
            if len(self.traffic) == self.config.traffic:
                break
            blueprint = rng.choice(blueprints)
            if blueprint.has_attribute('role_name'):
                blueprint.set_attribute('role_name', 'autopilot')
            vehicle = self.world.try_spawn_actor(blueprint, transform)
            if vehicle is not None:
                vehicle.set_autopilot(True, self.traffic_manager.get_port())
                self.traffic.append(vehicle)

    def _on_event(self, event) -> None:
        with self._events_lock:
            self._events.append(event)

    # -- stepping --------------------------------------------------------------------------
    def step(self, control: Control) -> Frame:
        """Apply ``control``, tick once, and return the new frame (image, pose, score)."""
        self.ego.apply_control(vehicle_control(self.carla, control))
        frame = self.world.tick(self.config.timeout)
        image = self._image_of(frame)
        snapshot = self.world.get_snapshot()
        elapsed = float(snapshot.timestamp.elapsed_seconds)
        if self._start_time is None:
            self._start_time = elapsed
        transform = self.ego.get_transform()
        x, y, yaw = ros_pose(transform)
        velocity = self.ego.get_velocity()
        speed = math.hypot(velocity.x, velocity.y)
        self._score(frame, elapsed - self._start_time, transform, x, y, speed)
        pixels = np.frombuffer(image.raw_data, dtype=np.uint8).reshape(
            image.height, image.width, 4)
        return Frame(frame, int(round(elapsed * 1e9)), pixels, x, y, yaw, speed,
                     self.scorer.summary())

    def _image_of(self, frame: int):
        deadline = time.monotonic() + self.config.sensor_timeout
        while True:
            try:
                image = self.images.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(f'no camera image for frame {frame} within '
                                   f'{self.config.sensor_timeout} s') from None
            if image.frame == frame:
                return image
            self.stale_images += 1  # from before this episode or a late earlier tick

    def _route_position(self, x: float, y: float):
        """Return ``(s, distance)`` of the ego on the dense route (searching ahead)."""
        poses = self.plan.dense_poses[:, :2]
        steps = np.hypot(*np.diff(poses, axis=0).T)
        cumulative = np.concatenate([[0.0], np.cumsum(steps)])
        start = max(0, self._progress_index - 2)
        window = slice(start, min(len(poses) - 1, start + 60))
        a, b = poses[:-1][window], poses[1:][window]
        along = b - a
        t = np.clip(((np.array([x, y]) - a) * along).sum(1)
                    / np.maximum((along ** 2).sum(1), 1e-9), 0.0, 1.0)
        nearest = a + t[:, None] * along
        distances = np.hypot(*(nearest - [x, y]).T)
        k = int(np.argmin(distances))
        self._progress_index = start + k
        return float(cumulative[start + k] + t[k] * steps[start + k]), float(distances[k])

    def _score(self, frame, elapsed, transform, x, y, speed) -> None:
        s, distance = self._route_position(x, y)
        waypoint = self.map.get_waypoint(transform.location, project_to_road=False)
        in_junction = waypoint is not None and waypoint.is_junction
        outside = waypoint is None or (not in_junction and
                                       (waypoint.road_id, waypoint.lane_id)
                                       not in self.route_lanes)
        goal = self.plan.poses[-1]
        limit = self.ego.get_speed_limit()
        self.scorer.update(elapsed, x, y, s, distance, outside, speed,
                           math.hypot(goal[0] - x, goal[1] - y),
                           speed_limit_mps=limit / 3.6 if limit and limit > 0 else None)
        with self._events_lock:
            events = [e for e in self._events if e.frame <= frame]
            self._events = [e for e in self._events if e.frame > frame]
        for event in events:
            if type(event).__name__ == 'CollisionEvent':
                other = event.other_actor
                kind = next((k for prefix, k in COLLISION_KINDS
                             if other.type_id.startswith(prefix)), 'collision_static')
                movable = kind != 'collision_static'
                self.scorer.collision(kind, x, y, speed, s, detail=other.type_id,
                                      other_id=f'{other.type_id} {other.id}' if movable
                                      else None)
            else:
                markings = ','.join(str(m.type) for m in event.crossed_lane_markings)
                self.scorer.note('lane_crossing', x, y, s, detail=markings)
        # A red light is run when the ego enters the junction while its light shows red.
        if not in_junction:
            self._at_red_light = bool(self.ego.is_at_traffic_light()) and \
                self.ego.get_traffic_light_state() == self.carla.TrafficLightState.Red
        elif self._at_red_light:
            self._at_red_light = False
            self.scorer.infraction('red_light', x, y, s)
