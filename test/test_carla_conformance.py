"""
The fake ``carla`` (test/fake_carla) and our code use only what the real 0.9.16 wheel has.

The real module is a compiled extension: importing it needs no server. It is introspected in a
child process so the fake and the real module never meet in one interpreter.
"""
import ast
import inspect
import json
from pathlib import Path
import subprocess
import sys
import time
import types

from carla_fakes import load_fake_carla
import pytest

ROOT = Path(__file__).resolve().parents[1]
# Classes of the fake whose instances stand for a real class of another name.
REAL_NAME = {'Sensor': 'Sensor'}


@pytest.fixture(scope='module')
def real():
    """Return ``{name: dir(carla.<name>)}`` of the real wheel and its version."""
    script = ('import carla, json, importlib.metadata as m\n'
              'print(json.dumps({"version": m.version("carla"), "names": {n: dir(getattr('
              'carla, n)) for n in dir(carla) if not n.startswith("_")}}))')
    result = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True)
    if result.returncode != 0 and 'No module named' in result.stderr:
        pytest.skip('the carla wheel is not installed (pip install -e .[test] installs it on '
                    'CPython 3.11 Linux x86_64, where a wheel exists)')
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope='module')
def fake():
    """Return the fake module."""
    return load_fake_carla()


def public(names):
    """Return the names not starting with an underscore."""
    return {name for name in names if not name.startswith('_')}


def fake_api(fake):
    """Return ``{class name: public attributes}`` of the fake's API, instances included."""
    api = {}
    for name, value in vars(fake).items():
        if name.startswith('_') or isinstance(value, types.ModuleType) or \
                getattr(value, '__module__', fake.__name__) != fake.__name__:
            continue
        api[name] = public(dir(value)) if inspect.isclass(value) else set()
    # Attributes set in __init__ only show on instances: exercise the fake to get them.
    fake._reset()
    client = fake.Client('localhost', 2000)
    world = client.get_world()
    world.apply_settings(fake.WorldSettings(synchronous_mode=True, fixed_delta_seconds=0.05))
    carla_map = world.get_map()
    library = world.get_blueprint_library()
    spawn = carla_map.get_spawn_points()[0]
    ego = world.spawn_actor(library.find('vehicle.tesla.model3'), spawn)
    ahead = carla_map.get_waypoint(spawn.location).next(8.0)[0].transform
    world.spawn_actor(library.find('vehicle.audi.a2'), ahead)  # to collide with
    received = []
    sensors = [world.spawn_actor(library.find(kind), fake.Transform(), attach_to=ego)
               for kind in ('sensor.camera.rgb', 'sensor.other.collision',
                            'sensor.other.lane_invasion')]
    for sensor in sensors:
        sensor.listen(received.append)
    for steer in (0.0,) * 45 + (1.0,) * 30:
        ego.apply_control(fake.VehicleControl(throttle=1.0, steer=steer))
        world.tick()
    kinds = {'Image', 'CollisionEvent', 'LaneInvasionEvent'}
    deadline = time.monotonic() + 30.0
    while not kinds <= {type(data).__name__ for data in received} and \
            time.monotonic() < deadline:
        time.sleep(0.05)  # callbacks run on the fake's worker thread, like CARLA's
    assert kinds <= {type(data).__name__ for data in received}
    instances = [client, world, world.get_settings(), carla_map, carla_map.get_topology()[0][0],
                 library.find('sensor.camera.rgb'), library.find('vehicle.audi.a2')
                 .get_attribute('role_name'), ego, sensors[0], world.get_snapshot(),
                 world.get_snapshot().timestamp, spawn, spawn.location, spawn.rotation,
                 fake.VehicleControl(), client.get_trafficmanager(8000), world.get_actors(),
                 *received]
    for instance in instances:
        name = REAL_NAME.get(type(instance).__name__, type(instance).__name__)
        api.setdefault(name, set()).update(public(dir(instance)))
    return api


def test_real_wheel_is_0_9_16(real):
    assert real['version'] == '0.9.16'


def test_every_class_and_attribute_of_the_fake_exists_in_the_real_wheel(real, fake):
    api = fake_api(fake)
    assert {'Client', 'World', 'Map', 'Waypoint', 'Vehicle', 'Sensor', 'Image',
            'CollisionEvent', 'LaneInvasionEvent', 'TrafficManager'} <= set(api)
    missing = {name: sorted(attributes - set(real['names'].get(name, ())))
               for name, attributes in api.items()}
    missing = {name: attributes for name, attributes in missing.items()
               if attributes or name not in real['names']}
    assert not missing, f'the fake has API the real carla 0.9.16 lacks: {missing}'


def carla_names_used(path: Path):
    """Return the ``carla.<name>`` (and ``self.carla.<name>``) attributes used in a module."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Attribute):
            continue
        value = node.value
        if (isinstance(value, ast.Name) and value.id == 'carla') or \
                (isinstance(value, ast.Attribute) and value.attr == 'carla'):
            names.add(node.attr)
    return names


def test_the_package_uses_only_module_names_the_real_wheel_and_the_fake_have(real, fake):
    used = set()
    for path in (ROOT / 'llava_drive').rglob('*.py'):
        used |= carla_names_used(path)
    assert {'Client', 'Transform', 'VehicleControl', 'TrafficLightState'} <= used
    assert used <= set(real['names']), sorted(used - set(real['names']))
    assert used <= public(dir(fake)), sorted(used - public(dir(fake)))
