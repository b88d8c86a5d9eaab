"""
Prepare a running CARLA server for recording or evaluation: town, time step, weather, traffic.

Uses the ``carla`` Python package (``pip install carla==<server version>``), imported only
when called. Run it after ``record.launch.py backend:=carla`` is up: carla_ros_bridge reloads
the town when it starts (which would remove traffic spawned before) and ticks the world in
synchronous mode, so this helper never ticks. Autopilot traffic is driven by a traffic
manager living in this process: keep it running while the traffic should move.
"""
from dataclasses import dataclass, field
import random
from typing import List

# CARLA's physics substepping (10 substeps of at most 0.01 s) limits the step.
MAX_FIXED_DELTA = 0.1


class CarlaUnavailable(RuntimeError):
    """The carla package is missing or no CARLA server answered."""


@dataclass
class WorldSettings:
    """What :func:`setup_world` applies; validated so a bad value fails before connecting."""

    town: str = 'Town01'
    synchronous: bool = True
    fixed_delta: float = 0.05
    weather: str = 'ClearNoon'
    traffic: int = 0
    seed: int = 0
    traffic_manager_port: int = 8000

    def __post_init__(self):
        if not self.town:
            raise ValueError('town must name a CARLA map such as Town01, got an empty string')
        if not 0.0 < self.fixed_delta <= MAX_FIXED_DELTA:
            raise ValueError(f'fixed_delta must be in (0, {MAX_FIXED_DELTA}] s (CARLA physics '
                             f'substepping), got {self.fixed_delta}')
        if self.traffic < 0:
            raise ValueError(f'traffic must be >= 0 vehicles, got {self.traffic}')
        if not 0 < self.traffic_manager_port < 65536:
            raise ValueError(f'traffic_manager_port must be a TCP port, got '
                             f'{self.traffic_manager_port}')


@dataclass
class CarlaWorld:
    """A prepared world: the client, what was applied, and the traffic spawned."""

    client: object
    world: object
    town: str
    server_version: str
    client_version: str
    vehicles: List[object] = field(default_factory=list)

    def summary(self) -> dict:
        """Return what was applied, for printing."""
        settings = self.world.get_settings()
        return {'town': self.town, 'synchronous': bool(settings.synchronous_mode),
                'fixed_delta_seconds': settings.fixed_delta_seconds,
                'traffic_vehicles': len(self.vehicles),
                'server_version': self.server_version, 'client_version': self.client_version}

    def destroy_traffic(self) -> int:
        """Remove the traffic vehicles this helper spawned; return how many were removed."""
        removed = sum(1 for vehicle in self.vehicles if vehicle.destroy())
        self.vehicles = []
        return removed


def import_carla():
    """Return the ``carla`` module or raise :class:`CarlaUnavailable` saying how to get it."""
    try:
        import carla
    except ImportError as error:
        raise CarlaUnavailable('the carla Python package is not installed: '
                               'pip install carla==<server version>') from error
    return carla


def connect(host: str, port: int, timeout: float = 10.0):
    """
    Return a connected ``carla.Client`` and the server version.

    :param host: CARLA server host.
    :param port: CARLA server RPC port (2000 by default).
    :param timeout: seconds to wait for the server.
    :raises CarlaUnavailable: no server answered within ``timeout``.
    """
    carla = import_carla()
    client = carla.Client(host, port)
    client.set_timeout(timeout)
    try:
        server_version = client.get_server_version()
    except RuntimeError as error:
        raise CarlaUnavailable(f'no CARLA server answered at {host}:{port} within {timeout} s '
                               f'({error}); start the server (CarlaUE4.sh) or check host and '
                               f'port') from error
    return client, server_version


def map_name(world) -> str:
    """Return the town of ``world`` without CARLA's ``Carla/Maps/`` prefix."""
    return world.get_map().name.split('/')[-1]


def weather_preset(carla, name: str):
    """Return ``carla.WeatherParameters.<name>``, or raise ValueError listing the presets."""
    preset = getattr(carla.WeatherParameters, name, None)
    if preset is None or not isinstance(preset, carla.WeatherParameters):
        presets = sorted(key for key in dir(carla.WeatherParameters)
                         if isinstance(getattr(carla.WeatherParameters, key, None),
                                       carla.WeatherParameters))
        raise ValueError(f'unknown weather {name!r}; presets: {", ".join(presets)}')
    return preset


def spawn_traffic(client, world, settings: WorldSettings) -> List[object]:
    """Spawn ``settings.traffic`` autopilot cars at shuffled spawn points (seeded)."""
    rng = random.Random(settings.seed)
    manager = client.get_trafficmanager(settings.traffic_manager_port)
    manager.set_synchronous_mode(settings.synchronous)
    manager.set_random_device_seed(settings.seed)
    blueprints = [bp for bp in world.get_blueprint_library().filter('vehicle.*')
                  if not bp.has_attribute('number_of_wheels')
                  or bp.get_attribute('number_of_wheels').as_int() == 4]
    blueprints.sort(key=lambda bp: bp.id)  # library order is not guaranteed
    spawn_points = list(world.get_map().get_spawn_points())
    rng.shuffle(spawn_points)
    vehicles = []
    for transform in spawn_points:
        if len(vehicles) == settings.traffic:
            break
        blueprint = rng.choice(blueprints)
        if blueprint.has_attribute('role_name'):
            # Not an ego role name, so carla_ros_bridge treats it as other traffic.
            blueprint.set_attribute('role_name', 'autopilot')
        vehicle = world.try_spawn_actor(blueprint, transform)
        if vehicle is not None:  # the spot was taken
            vehicle.set_autopilot(True, manager.get_port())
            vehicles.append(vehicle)
    return vehicles


def setup_world(host: str = 'localhost', port: int = 2000, town: str = WorldSettings.town,
                synchronous: bool = WorldSettings.synchronous,
                fixed_delta: float = WorldSettings.fixed_delta,
                weather: str = WorldSettings.weather, traffic: int = WorldSettings.traffic,
                seed: int = WorldSettings.seed, timeout: float = 10.0) -> CarlaWorld:
    """
    Load ``town`` if another is loaded, apply the time step and weather, spawn traffic.

    :param host: CARLA server host.
    :param port: CARLA server RPC port.
    :param town: map name such as ``Town01`` (not reloaded when already loaded).
    :param synchronous: synchronous mode (the bridge or the evaluator ticks).
    :param fixed_delta: simulation step in seconds (0.05 = 20 Hz, like the bridge).
    :param weather: a ``carla.WeatherParameters`` preset name such as ``ClearNoon``.
    :param traffic: number of autopilot vehicles to spawn.
    :param seed: seed of the spawn points, vehicle models and traffic manager.
    :param timeout: seconds to wait for the server (a town load takes longer: 10 x this).
    :raises CarlaUnavailable: the carla package is missing or no server answered.
    :raises ValueError: a setting is out of range or the weather preset is unknown.
    """
    settings = WorldSettings(town=town, synchronous=synchronous, fixed_delta=fixed_delta,
                             weather=weather, traffic=traffic, seed=seed)
    carla = import_carla()
    preset = weather_preset(carla, settings.weather)
    client, server_version = connect(host, port, timeout)
    world = client.get_world()
    if map_name(world) != settings.town:
        client.set_timeout(10.0 * timeout)  # loading a town takes far longer than a call
        world = client.load_world(settings.town)
        client.set_timeout(timeout)
    world_settings = world.get_settings()
    world_settings.synchronous_mode = settings.synchronous
    world_settings.fixed_delta_seconds = settings.fixed_delta
    world.apply_settings(world_settings)
    world.set_weather(preset)
    result = CarlaWorld(client=client, world=world, town=map_name(world),
                        server_version=server_version,
                        client_version=client.get_client_version())
    if settings.traffic:
        result.vehicles = spawn_traffic(client, world, settings)
    return result
