"""carla_world and ``llava-drive carla-setup`` against a fake ``carla`` module (no server here)."""
import json
import sys
import types

from llava_drive import cli
from llava_drive.carla.world import CarlaUnavailable, setup_world, WorldSettings
import pytest


class FakeWeather:
    """Stand-in for carla.WeatherParameters with two presets."""


FakeWeather.ClearNoon = FakeWeather()
FakeWeather.WetCloudySunset = FakeWeather()


class FakeSettings:
    """Stand-in for carla.WorldSettings."""

    synchronous_mode = False
    fixed_delta_seconds = None


class FakeAttribute:
    """Stand-in for carla.ActorAttribute."""

    def __init__(self, value):
        self.value = value

    def as_int(self):
        """Return the value as an int."""
        return int(self.value)


class FakeBlueprint:
    """Stand-in for carla.ActorBlueprint."""

    def __init__(self, blueprint_id, wheels):
        self.id = blueprint_id
        self.attributes = {'number_of_wheels': FakeAttribute(wheels), 'role_name': ''}

    def has_attribute(self, name):
        """Return whether the attribute exists."""
        return name in self.attributes

    def get_attribute(self, name):
        """Return an attribute."""
        return self.attributes[name]

    def set_attribute(self, name, value):
        """Set an attribute."""
        self.attributes[name] = value


class FakeVehicle:
    """Stand-in for carla.Vehicle."""

    def __init__(self, blueprint, transform):
        self.blueprint = blueprint
        self.role_name = blueprint.attributes['role_name']
        self.transform = transform
        self.autopilot = None
        self.destroyed = False

    def set_autopilot(self, enabled, port):
        """Record the autopilot call."""
        self.autopilot = (enabled, port)

    def destroy(self):
        """Destroy once; return whether it existed."""
        existed = not self.destroyed
        self.destroyed = True
        return existed


class FakeWorld:
    """Stand-in for carla.World on map ``town`` with 5 spawn points (the 2nd is taken)."""

    def __init__(self, town):
        self.town = town
        self.settings = FakeSettings()
        self.weather = None
        self.vehicles = []

    def get_map(self):
        """Return the map (name and spawn points)."""
        return types.SimpleNamespace(name=f'Carla/Maps/{self.town}',
                                     get_spawn_points=lambda: [f'spawn{i}' for i in range(5)])

    def get_settings(self):
        """Return a copy of the settings, as carla does."""
        copy = FakeSettings()
        copy.__dict__.update(self.settings.__dict__)
        return copy

    def apply_settings(self, settings):
        """Apply settings."""
        self.settings = settings

    def set_weather(self, weather):
        """Set the weather."""
        self.weather = weather

    def get_blueprint_library(self):
        """Return a library whose filter yields a car, a bike and a truck."""
        blueprints = [FakeBlueprint('vehicle.tesla.model3', 4),
                      FakeBlueprint('vehicle.bh.crossbike', 2),
                      FakeBlueprint('vehicle.carlamotors.carlacola', 4)]
        return types.SimpleNamespace(filter=lambda pattern: blueprints)

    def try_spawn_actor(self, blueprint, transform):
        """Spawn unless the spot is taken."""
        if transform == 'spawn1':
            return None
        vehicle = FakeVehicle(blueprint, transform)
        self.vehicles.append(vehicle)
        return vehicle


class FakeTrafficManager:
    """Stand-in for carla.TrafficManager."""

    def __init__(self, port):
        self.port = port
        self.synchronous = None
        self.seed = None

    def set_synchronous_mode(self, enabled):
        """Record the mode."""
        self.synchronous = enabled

    def set_random_device_seed(self, seed):
        """Record the seed."""
        self.seed = seed

    def get_port(self):
        """Return the port."""
        return self.port


def fake_carla(server_up=True, town='Town01'):
    """Return a fake carla module and the log of what its client did."""
    log = {'clients': [], 'loads': [], 'timeouts': []}
    world = {'current': FakeWorld(town)}

    class Client:
        def __init__(self, host, port):
            log['clients'].append((host, port))
            self.traffic_manager = None

        def set_timeout(self, seconds):
            log['timeouts'].append(seconds)

        def get_server_version(self):
            if not server_up:
                raise RuntimeError('time-out of 10000ms while waiting for the simulator, make '
                                   'sure the simulator is ready and connected to localhost:2000')
            return '0.9.15'

        def get_client_version(self):
            return '0.9.15'

        def get_world(self):
            return world['current']

        def load_world(self, name):
            log['loads'].append(name)
            world['current'] = FakeWorld(name)
            return world['current']

        def get_trafficmanager(self, port):
            self.traffic_manager = FakeTrafficManager(port)
            log['traffic_manager'] = self.traffic_manager
            return self.traffic_manager

    module = types.ModuleType('carla')
    module.Client = Client
    module.WeatherParameters = FakeWeather
    log['world'] = world
    return module, log


@pytest.fixture
def carla(monkeypatch):
    """Install a fake carla module with a running server on Town01."""
    module, log = fake_carla()
    monkeypatch.setitem(sys.modules, 'carla', module)
    return log


def test_settings_are_applied_and_the_town_loaded(carla):
    result = setup_world('simhost', 2001, town='Town02', fixed_delta=0.025,
                         weather='WetCloudySunset', timeout=3.0)
    world = carla['world']['current']
    assert carla['clients'] == [('simhost', 2001)]
    assert carla['loads'] == ['Town02']
    assert carla['timeouts'] == [3.0, 30.0, 3.0]  # longer while the town loads
    assert world.town == 'Town02' and result.world is world
    assert world.settings.synchronous_mode is True
    assert world.settings.fixed_delta_seconds == 0.025
    assert world.weather is FakeWeather.WetCloudySunset
    assert result.vehicles == [] and 'traffic_manager' not in carla
    assert result.summary() == {'town': 'Town02', 'synchronous': True,
                                'fixed_delta_seconds': 0.025, 'traffic_vehicles': 0,
                                'server_version': '0.9.15', 'client_version': '0.9.15'}


def test_loaded_town_is_not_reloaded_and_asynchronous_mode(carla):
    setup_world(town='Town01', synchronous=False)
    assert carla['loads'] == []
    assert carla['world']['current'].settings.synchronous_mode is False


def test_traffic_is_seeded_four_wheeled_autopilot_and_skips_taken_spots(carla):
    result = setup_world(traffic=3, seed=7)
    manager = carla['traffic_manager']
    assert (manager.port, manager.synchronous, manager.seed) == (8000, True, 7)
    assert len(result.vehicles) == 3
    assert 'spawn1' not in [v.transform for v in result.vehicles]
    assert len({v.transform for v in result.vehicles}) == 3
    for vehicle in result.vehicles:
        assert vehicle.blueprint.id != 'vehicle.bh.crossbike'
        assert vehicle.autopilot == (True, 8000)
        assert vehicle.role_name == 'autopilot'  # never taken for the ego by the bridge
    again = setup_world(traffic=3, seed=7)
    assert [v.transform for v in again.vehicles] == [v.transform for v in result.vehicles]
    assert result.destroy_traffic() == 3 and result.vehicles == []
    assert not any(v.destroyed for v in again.vehicles)


def test_more_traffic_than_free_spawn_points_spawns_what_fits(carla):
    assert len(setup_world(traffic=50).vehicles) == 4


def test_no_server_raises_carla_unavailable(monkeypatch):
    module, _ = fake_carla(server_up=False)
    monkeypatch.setitem(sys.modules, 'carla', module)
    with pytest.raises(CarlaUnavailable, match=r'no CARLA server answered at localhost:2000 '
                                               r'within 10\.0 s \(time-out of 10000ms'):
        setup_world()


def test_missing_carla_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, 'carla', None)  # makes "import carla" fail
    with pytest.raises(CarlaUnavailable, match=r'pip install carla==<server version>'):
        setup_world()


@pytest.mark.parametrize('kwargs, message', [
    ({'fixed_delta': 0.0}, r'fixed_delta must be in \(0, 0\.1\] s .* got 0\.0'),
    ({'fixed_delta': 0.2}, r'got 0\.2'),
    ({'traffic': -1}, r'traffic must be >= 0 vehicles, got -1'),
    ({'town': ''}, r'town must name a CARLA map'),
    ({'traffic_manager_port': 0}, r'traffic_manager_port must be a TCP port, got 0'),
])
def test_bad_settings_name_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        WorldSettings(**kwargs)


def test_unknown_weather_lists_presets(carla):
    with pytest.raises(ValueError, match=r"unknown weather 'Sunny'; presets: ClearNoon, "
                                         r'WetCloudySunset'):
        setup_world(weather='Sunny')
    assert carla['clients'] == []  # refused before connecting


def run_cli(monkeypatch, argv):
    """Run ``llava-drive`` with carla-setup registered (whether or not cli.py lists it yet)."""
    modules = [name for name in cli.COMMAND_MODULES if name != 'llava_drive.carla.cli']
    monkeypatch.setattr(cli, 'COMMAND_MODULES', modules + ['llava_drive.carla.cli'])
    return cli.main(argv)


def test_cli_prints_summary(carla, capsys, monkeypatch):
    assert run_cli(monkeypatch, ['carla-setup', '--town', 'Town03', '--fixed-delta', '0.1']) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary['town'] == 'Town03' and summary['fixed_delta_seconds'] == 0.1
    assert carla['loads'] == ['Town03']


def test_cli_without_server_fails_with_message(monkeypatch, capsys):
    module, _ = fake_carla(server_up=False)
    monkeypatch.setitem(sys.modules, 'carla', module)
    assert run_cli(monkeypatch, ['carla-setup', '--timeout', '1']) == 1
    assert 'no CARLA server answered at localhost:2000 within 1.0 s' in capsys.readouterr().err


def test_cli_help_lists_options(monkeypatch, capsys):
    with pytest.raises(SystemExit) as stop:
        run_cli(monkeypatch, ['carla-setup', '--help'])
    assert stop.value.code == 0
    help_text = capsys.readouterr().out
    for option in ('--town', '--traffic', '--weather', '--fixed-delta', '--asynchronous'):
        assert option in help_text
