"""
Launch files against setup.py, config/ and the parameters the nodes really declare.

With launch_ros importable the real launch classes are used (spied on to record their
arguments); without it (CI: launch_ros has no wheel) minimal stand-ins record the same.
The nodes are instantiated with rclpy to list the parameters they declare.
"""
from distutils.core import run_setup
import importlib.util
import json
from pathlib import Path
import re
import shutil
import sys
import tempfile
import types
from typing import List
import warnings

import ament_index_python.packages
from fixtures_llava import tiny_llava_dir  # noqa: F401
from llava_drive.bringup import checks
from llava_drive.bringup.environment import DomainBusy, DomainLock
import numpy as np
import pytest
import rclpy
from rclpy.parameter import Parameter
import yaml

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_FILES = sorted((ROOT / 'launch').glob('*.launch.py'))
PACKAGE = 'llava_drive'
NODE_CLASSES = {
    'sim_bridge': ('llava_drive.nodes.sim_bridge', 'SimBridge'),
    'expert': ('llava_drive.nodes.expert', 'Expert'),
    'recorder': ('llava_drive.nodes.recorder', 'Recorder'),
    'policy': ('llava_drive.nodes.policy', 'Policy'),
    'carla_bridge': ('llava_drive.nodes.carla_bridge', 'CarlaBridge'),
}
# The launch arguments of carla-simulator/ros-bridge master (e9063d9, "Update CARLA version to
# 0.9.13"): carla_ros_bridge/launch/carla_ros_bridge.launch.py,
# carla_spawn_objects/launch/carla_spawn_objects.launch.py and
# carla_waypoint_publisher/launch/carla_waypoint_publisher.launch.py. A name they do not declare
# would be dropped silently by ros2 launch.
UPSTREAM_ARGUMENTS = {
    'carla_ros_bridge': {'host', 'port', 'timeout', 'passive', 'synchronous_mode',
                         'synchronous_mode_wait_for_vehicle_control_command',
                         'fixed_delta_seconds', 'town', 'register_all_sensors',
                         'ego_vehicle_role_name'},
    'carla_spawn_objects': {'objects_definition_file', 'spawn_point_ego_vehicle',
                            'spawn_sensors_only'},
    'carla_waypoint_publisher': {'host', 'port', 'timeout', 'role_name'},
}
CARLA_PACKAGES = set(UPSTREAM_ARGUMENTS)
REAL_LAUNCH = importlib.util.find_spec('launch_ros') is not None
SPIED = {
    'launch': ['LaunchDescription'],
    'launch.actions': ['DeclareLaunchArgument', 'ExecuteProcess', 'GroupAction',
                       'IncludeLaunchDescription', 'OpaqueFunction', 'SetEnvironmentVariable',
                       'Shutdown'],
    'launch.conditions': ['IfCondition'],
    'launch.launch_description_sources': ['PythonLaunchDescriptionSource'],
    'launch.substitutions': ['LaunchConfiguration', 'PathJoinSubstitution', 'PythonExpression'],
    'launch_ros.actions': ['Node'],
    'launch_ros.parameter_descriptions': ['ParameterValue'],
    'launch_ros.substitutions': ['FindPackageShare'],
}


# -- stand-ins for launch / launch_ros (only what the evaluation below needs) ----------------
class StandIn:
    """Record constructor arguments; evaluate substitutions and conditions like launch."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs

    def perform(self, context) -> str:
        """Return this substitution's text for ``context``."""
        kind = type(self).__name__
        if kind == 'LaunchConfiguration':
            return context.launch_configurations[self.args[0]]
        if kind == 'PythonExpression':
            return str(eval(''.join(perform(part, context) for part in self.args[0])))
        raise NotImplementedError(kind)

    def evaluate(self, context) -> bool:
        """Return this IfCondition's value for ``context``."""
        return perform(self.args[0], context).strip().lower() in ('true', '1')


def perform(value, context) -> str:
    """Return the text of a string, a substitution or a list of them."""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        return ''.join(perform(part, context) for part in value)
    return value.perform(context)


def spy(real_class, calls):
    """Return a subclass of ``real_class`` that records each construction in ``calls``."""
    def __init__(self, *args, **kwargs):
        calls.append((self, args, kwargs))
        real_class.__init__(self, *args, **kwargs)
    return type(real_class.__name__, (real_class,), {'__init__': __init__})


def stand_in(name, calls):
    """Return a stand-in class ``name`` that records each construction in ``calls``."""
    def __init__(self, *args, **kwargs):
        calls.append((self, args, kwargs))
        StandIn.__init__(self, *args, **kwargs)
    return type(name, (StandIn,), {'__init__': __init__})


class Recorded:
    """What one launch file constructed: ``calls[class name] = [(object, args, kwargs)]``."""

    def __init__(self, calls, description):
        self.calls = calls
        self.description = description

    def kwargs(self, name) -> List[dict]:
        """Return the keyword arguments of every ``name`` constructed."""
        return [kwargs for _, _, kwargs in self.calls.get(name, [])]


def load_launch_file(path: Path, monkeypatch) -> Recorded:
    """Import ``path`` with spied (or stand-in) launch classes; run its description."""
    calls = {}
    for module_name, class_names in SPIED.items():
        if REAL_LAUNCH:
            module = importlib.import_module(module_name)
        else:
            module = types.ModuleType(module_name)
            monkeypatch.setitem(sys.modules, module_name, module)
        for name in class_names:
            recorded = calls.setdefault(name, [])
            if REAL_LAUNCH:
                cls = spy(getattr(module, name), recorded)
            else:
                cls = stand_in(name, recorded)
            monkeypatch.setattr(module, name, cls, raising=False)
    if not REAL_LAUNCH:
        monkeypatch.setitem(sys.modules, 'launch_ros', types.ModuleType('launch_ros'))
    # The source tree has the installed share layout: <share>/config, <share>/launch.
    monkeypatch.setattr(ament_index_python.packages, 'get_package_share_directory',
                        lambda package: str(ROOT) if package == PACKAGE else pytest.fail(
                            f'{path.name} looks up {package} at generation time'))
    # Import the shared launch module afresh, so it binds the classes patched above.
    monkeypatch.delitem(sys.modules, 'llava_drive.bringup.launch_support', raising=False)
    spec = importlib.util.spec_from_file_location(path.stem.replace('.', '_'), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return Recorded(calls, module.generate_launch_description())


def launch_context(arguments: dict):
    """Return a launch context holding ``arguments`` (real one when launch is installed)."""
    if REAL_LAUNCH:
        from launch import LaunchContext
        context = LaunchContext()
        context.launch_configurations.update(arguments)
        return context
    return types.SimpleNamespace(launch_configurations=dict(arguments))


def active(recorded: Recorded, kind: str, context) -> list:
    """Return (object, kwargs) of each ``kind`` whose enclosing conditions hold in ``context``."""
    inactive = set()
    for group, args, kwargs in recorded.calls.get('GroupAction', []):
        condition = kwargs.get('condition')
        if condition is not None and not condition.evaluate(context):
            inactive.update(id(action) for action in (args[0] if args else kwargs['actions']))
    return [(obj, kwargs) for obj, _, kwargs in recorded.calls.get(kind, [])
            if id(obj) not in inactive
            and (kwargs.get('condition') is None or kwargs['condition'].evaluate(context))]


@pytest.fixture(autouse=True)
def free_domain(monkeypatch) -> int:
    """
    Give each test a ROS domain no stack holds; drop the lock its launch checks took.

    A launch process keeps its lock until it exits: this test process must not keep it from
    the stacks that later tests start.
    """
    for domain in range(150, 233):
        probe = DomainLock(domain)
        if probe.acquire('probe'):
            probe.release()
            break
    else:
        pytest.fail('no free ROS domain in 150-232')
    monkeypatch.setenv('ROS_DOMAIN_ID', str(domain))
    yield domain
    while checks.DOMAIN_LOCKS:
        checks.DOMAIN_LOCKS.popitem()[1].release()


# -- facts from setup.py, config/ and the nodes ----------------------------------------------
@pytest.fixture(scope='module')
def distribution():
    """Return the distribution of setup.py (data_files, entry points) as setuptools sees it."""
    import os
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        with warnings.catch_warnings():  # distutils does not know setuptools' options
            warnings.simplefilter('ignore', UserWarning)
            return run_setup('setup.py', stop_after='init')
    finally:
        os.chdir(cwd)


def console_scripts(distribution) -> dict:
    """Return ``{executable: 'module:function'}`` from setup.py."""
    entries = distribution.entry_points['console_scripts']
    return dict(re.match(r'\s*([\w-]+)\s*=\s*(\S+)', entry).groups() for entry in entries)


def installed_files(distribution) -> dict:
    """Return ``{source path relative to the repo: install directory}`` from data_files."""
    return {source: directory for directory, sources in distribution.data_files
            for source in sources}


@pytest.fixture(scope='module')
def declared():
    """Instantiate each node with its YAML; return ``{node: {parameter: Parameter}}``."""
    from carla_fakes import load_fake_carla
    context = rclpy.Context()
    rclpy.init(context=context, args=['--ros-args'] + [
        arg for name in NODE_CLASSES for arg in ('--params-file', str(config(name)))])
    parameters = {}
    real_carla = sys.modules.get('carla')
    sys.modules['carla'] = load_fake_carla()  # carla_bridge connects when it starts
    try:
        for name, (module_name, class_name) in NODE_CLASSES.items():
            module = importlib.import_module(module_name)
            if name == 'policy':  # without a checkpoint: declare its parameters on a plain node
                node = rclpy.create_node('policy', context=context)
                module.declare_parameters(node)
            else:
                # No bag in the working tree: the recorder does not start.
                node = getattr(module, class_name)(context=context, parameter_overrides=[
                    Parameter('autostart', value=False)] if name == 'recorder' else [])
            try:
                assert node.get_name() == name
                parameters[name] = {key: node.get_parameter(key)
                                    for key in node._parameters}
            finally:
                node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)
        if real_carla is None:
            del sys.modules['carla']
        else:
            sys.modules['carla'] = real_carla
    return parameters


def config(node_name: str) -> Path:
    """Return ``config/<node>.yaml``."""
    return ROOT / 'config' / f'{node_name}.yaml'


PYTHON_TYPES = {
    Parameter.Type.BOOL: bool, Parameter.Type.INTEGER: int, Parameter.Type.DOUBLE: float,
    Parameter.Type.STRING: str, Parameter.Type.INTEGER_ARRAY: List[int],
    Parameter.Type.DOUBLE_ARRAY: List[float], Parameter.Type.STRING_ARRAY: List[str],
}


def value_type(value):
    """Return the parameter type a launch override value will have."""
    if isinstance(value, StandIn):  # ParameterValue stand-in
        return value.kwargs['value_type']
    return getattr(value, 'value_type', type(value))  # real ParameterValue or a constant


@pytest.fixture(params=LAUNCH_FILES, ids=lambda path: path.name)
def launch_file(request, monkeypatch):
    """Return what each launch file constructs."""
    return load_launch_file(request.param, monkeypatch)


def defaults(recorded: Recorded) -> dict:
    """Return ``{argument: default text}``."""
    return {kwargs.get('name', args[0] if args else None):
            perform(kwargs['default_value'], None)
            for _, args, kwargs in recorded.calls['DeclareLaunchArgument']}


# -- tests ------------------------------------------------------------------------------------
def test_there_is_a_record_launch_file():
    assert ROOT / 'launch' / 'record.launch.py' in LAUNCH_FILES


def test_every_argument_has_a_description_and_a_default(launch_file):
    arguments = launch_file.calls['DeclareLaunchArgument']
    assert arguments
    for _, args, kwargs in arguments:
        name = kwargs.get('name', args[0] if args else None)
        assert len(kwargs.get('description', '')) > 10, f'{name} has no description'
        assert 'default_value' in kwargs, f'{name} has no default'


def test_llava_drive_nodes_are_console_entry_points(launch_file, distribution):
    scripts = console_scripts(distribution)
    nodes = launch_file.kwargs('Node')
    assert nodes
    for node in nodes:
        if node['package'] == PACKAGE:
            assert node['executable'] in scripts, node['executable']
            module = scripts[node['executable']].split(':')[0]
            assert module == NODE_CLASSES[node['name']][0]
        else:
            assert node['package'] == 'rviz2'


def test_parameter_files_exist_and_are_installed(launch_file, distribution):
    installed = installed_files(distribution)
    for node in launch_file.kwargs('Node'):
        for item in node.get('parameters', []):
            if isinstance(item, str):
                path = Path(item)
                assert path.is_file(), path
                relative = str(path.relative_to(ROOT))
                assert installed.get(relative) == f'share/{PACKAGE}/config', relative
    assert installed.get('launch/record.launch.py') == f'share/{PACKAGE}/launch'


def test_parameter_names_and_types_are_declared_by_the_nodes(launch_file, declared):
    for node in launch_file.kwargs('Node'):
        if node['package'] != PACKAGE:
            continue
        params = declared[node['name']]
        files = [item for item in node['parameters'] if isinstance(item, str)]
        assert files == [str(config(node['name']))]
        for overrides in (item for item in node['parameters'] if isinstance(item, dict)):
            for key, value in overrides.items():
                assert key in params, f'{node["name"]} does not declare {key}'
                assert value_type(value) == PYTHON_TYPES[params[key].type_], (
                    f'{node["name"]}.{key}: launch gives {value_type(value)}, node declares '
                    f'{params[key].type_}')


@pytest.mark.parametrize('node_name', sorted(NODE_CLASSES))
def test_yaml_has_one_block_of_declared_parameters_with_their_types(node_name, declared):
    document = yaml.safe_load(config(node_name).read_text())
    assert list(document) == [node_name]
    assert list(document[node_name]) == ['ros__parameters']
    params = declared[node_name]
    for key, value in document[node_name]['ros__parameters'].items():
        assert key in params, f'config/{node_name}.yaml sets undeclared {key}'
        # rclpy applied the file: the node holds the YAML's value.
        if (node_name, key) == ('recorder', 'autostart'):
            continue  # overridden by the fixture so that no bag is started
        held = params[key].value
        assert (list(held) if isinstance(value, list) else held) == value, key


@pytest.mark.parametrize('backend, nodes, ros_bridge', [
    ('sim', {'sim_bridge', 'expert', 'recorder'}, False),
    ('carla', {'carla_bridge', 'expert', 'recorder'}, False),
    ('carla_ros_bridge', {'expert', 'recorder'}, True),
])
def test_backends_start_the_right_nodes(monkeypatch, backend, nodes, ros_bridge):
    recorded = load_launch_file(ROOT / 'launch' / 'record.launch.py', monkeypatch)
    context = launch_context({**defaults(recorded), 'backend': backend})
    started = [kwargs['name'] for _, kwargs in active(recorded, 'Node', context)]
    assert sorted(started) == sorted(nodes)  # one expert, with the backend's steering limit
    [expert] = [kwargs for _, kwargs in active(recorded, 'Node', context)
                if kwargs['name'] == 'expert']
    steer = [item['max_steer_deg'] for item in expert['parameters']
             if isinstance(item, dict) and 'max_steer_deg' in item]
    assert steer == ([] if backend == 'sim' else [70.0])
    functions = [kwargs['function'].__name__ for _, kwargs in
                 active(recorded, 'OpaqueFunction', context)]
    assert ('ros_bridge_actions' in functions) == ros_bridge
    context = launch_context({**defaults(recorded), 'backend': backend, 'rviz': 'true'})
    assert {kwargs['name'] for _, kwargs in active(recorded, 'Node', context)} == nodes | {
        'rviz2'}


@pytest.mark.parametrize('launch_name, main', [('record.launch.py', 'recorder'),
                                               ('policy.launch.py', 'policy')])
def test_the_launch_ends_when_its_main_node_exits_and_fails_when_any_node_fails(
        monkeypatch, launch_name, main):
    # A refused checkpoint or bag path must not leave the simulator waiting forever, and a
    # script must see the failure: ros2 launch exits 0 unless an action raises.
    recorded = load_launch_file(ROOT / 'launch' / launch_name, monkeypatch)
    nodes = [kwargs for kwargs in recorded.kwargs('Node') if kwargs['package'] == PACKAGE]
    assert main in {kwargs['name'] for kwargs in nodes}
    for kwargs in nodes:
        handle = kwargs['on_exit']
        shutdowns = len(recorded.calls['Shutdown'])
        actions = handle(types.SimpleNamespace(returncode=0), None)
        if kwargs['name'] == main:
            [shutdown] = actions
            assert shutdown is recorded.calls['Shutdown'][shutdowns][0]
        else:
            assert actions is None and len(recorded.calls['Shutdown']) == shutdowns
        with pytest.raises(RuntimeError, match=f'^{kwargs["name"]} exited with status 2$'):
            handle(types.SimpleNamespace(returncode=2), None)


def ros_bridge_launch(monkeypatch, launch_name='record.launch.py', **arguments):
    """Run the carla_ros_bridge actions of a launch file; return them and their includes."""
    recorded = load_launch_file(ROOT / 'launch' / launch_name, monkeypatch)
    context = launch_context({**defaults(recorded), 'backend': 'carla_ros_bridge',
                              **arguments})
    [function] = [kwargs['function'] for _, kwargs in active(recorded, 'OpaqueFunction', context)
                  if kwargs['function'].__name__ == 'ros_bridge_actions']
    calls = len(recorded.calls.get('IncludeLaunchDescription', []))
    actions = function(context)
    includes = {}
    for _, args, kwargs in recorded.calls['IncludeLaunchDescription'][calls:]:
        # IncludeLaunchDescription(PythonLaunchDescriptionSource(PathJoinSubstitution(
        #     [FindPackageShare(package), file])))
        package = args[0].args[0].args[0][0].args[0]
        includes[package] = dict(kwargs['launch_arguments'])
    return actions, includes, recorded


@pytest.mark.parametrize('launch_name', ['record.launch.py', 'policy.launch.py'])
def test_ros_bridge_arguments_exist_upstream_and_carry_our_settings(monkeypatch, launch_name):
    if REAL_LAUNCH:
        pytest.skip("reads the stand-ins' recorded arguments (launch_ros is installed here)")
    actions, includes, _ = ros_bridge_launch(monkeypatch, launch_name, town='Town04',
                                             role_name='hero', carla_timeout='30')
    assert set(includes) == CARLA_PACKAGES
    for package, arguments in includes.items():
        assert set(arguments) <= UPSTREAM_ARGUMENTS[package], (
            package, set(arguments) - UPSTREAM_ARGUMENTS[package])
    assert includes['carla_ros_bridge'] == {
        'host': 'localhost', 'port': '2000', 'timeout': '30.0', 'town': 'Town04',
        'synchronous_mode': 'True', 'passive': 'False', 'fixed_delta_seconds': '0.05',
        'synchronous_mode_wait_for_vehicle_control_command': 'True',
        'ego_vehicle_role_name': 'hero'}
    assert includes['carla_waypoint_publisher'] == {
        'host': 'localhost', 'port': '2000', 'timeout': '30.0', 'role_name': 'hero'}
    objects = json.loads(Path(includes['carla_spawn_objects'][
        'objects_definition_file']).read_text())['objects']
    [ego] = objects
    assert ego['id'] == 'hero' and 'spawn_point' not in ego  # a random spawn point
    assert len(actions) == 3  # no goal given: no goal publisher


def test_ros_bridge_spawn_point_and_goal(monkeypatch, tmp_path):
    if REAL_LAUNCH:
        pytest.skip("reads the stand-ins' recorded arguments (launch_ros is installed here)")
    actions, includes, recorded = ros_bridge_launch(
        monkeypatch, spawn_point='10,-5,0.5,0,0,90', goal='120,-60,0')
    [ego] = json.loads(Path(includes['carla_spawn_objects'][
        'objects_definition_file']).read_text())['objects']
    assert ego['id'] == 'ego_vehicle'
    assert ego['spawn_point'] == {'x': 10.0, 'y': -5.0, 'z': 0.5, 'roll': 0.0, 'pitch': 0.0,
                                  'yaw': 90.0}
    assert [s['id'] for s in ego['sensors']][0] == 'rgb_front'
    [goal] = [kwargs['cmd'] for _, _, kwargs in recorded.calls['ExecuteProcess']]
    assert goal[:7] == ['ros2', 'topic', 'pub', '--once', '-w', '1', '/carla/ego_vehicle/goal']
    assert goal[7] == 'geometry_msgs/msg/PoseStamped'
    pose = yaml.safe_load(goal[8])
    assert pose['pose']['position'] == {'x': 120.0, 'y': -60.0, 'z': 0.0}
    assert pose['header']['frame_id'] == 'map'


@pytest.mark.parametrize('arguments, message', [
    ({'carla_timeout': '2'}, r'carla_timeout must be >= 20 s for carla_ros_bridge'),
    ({'spawn_point': '1,2,3'}, r'spawn_point must be 6 comma-separated numbers, got \'1,2,3\''),
    ({'goal': 'north'}, r"goal must be 3 comma-separated numbers, got 'north'"),
])
def test_ros_bridge_bad_arguments_are_named(monkeypatch, arguments, message):
    with pytest.raises(ValueError, match=message):
        ros_bridge_launch(monkeypatch, **arguments)


def test_carla_bridge_node_gets_the_server_arguments(monkeypatch):
    recorded = load_launch_file(ROOT / 'launch' / 'record.launch.py', monkeypatch)
    context = launch_context({**defaults(recorded), 'backend': 'carla', 'town': 'Town04',
                              'objects_file': '/my/objects.json'})
    [bridge] = [kwargs for _, kwargs in active(recorded, 'Node', context)
                if kwargs['name'] == 'carla_bridge']
    [overrides] = [item for item in bridge['parameters'] if isinstance(item, dict)]
    values = {key: perform(getattr(value, 'args', [value])[0] if isinstance(value, StandIn)
                           else value, context) if not isinstance(value, (int, float)) else
              value for key, value in overrides.items()}
    assert values['town'] == 'Town04' and values['objects_file'] == '/my/objects.json'
    assert values['synchronous_mode_wait_for_ack_topic'] == '/recorder/frame_done'


def environment_actions(recorded, arguments, monkeypatch, environ):
    """Run the launch file's checks and environment; return the variables it sets."""
    for key in ('ROS_AUTOMATIC_DISCOVERY_RANGE', 'ROS_LOCALHOST_ONLY',
                'FASTDDS_DEFAULT_PROFILES_FILE', 'ROS_DISTRO'):
        monkeypatch.delenv(key, raising=False)
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    before = len(recorded.calls['SetEnvironmentVariable'])
    start_checks(recorded, arguments)
    return {perform(args[0], None): perform(args[1], None)
            for _, args, _ in recorded.calls['SetEnvironmentVariable'][before:]}


@pytest.mark.parametrize('arguments, environ, expected', [
    ({}, {}, {'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST', 'FASTDDS_DEFAULT_PROFILES_FILE':
              str(ROOT / 'config' / 'fastdds_shm.xml')}),
    ({}, {'ROS_DISTRO': 'humble'}, {'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST',
                                    'ROS_LOCALHOST_ONLY': '1',
                                    'FASTDDS_DEFAULT_PROFILES_FILE':
                                    str(ROOT / 'config' / 'fastdds_shm.xml')}),
    ({'backend': 'carla', 'use_fastdds_profile': 'false'}, {}, {}),
    ({'backend': 'carla', 'localhost_only': 'true'}, {'FASTDDS_DEFAULT_PROFILES_FILE': '/x.xml'},
     {'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST'}),
    ({'localhost_only': 'false'}, {'ROS_AUTOMATIC_DISCOVERY_RANGE': 'SUBNET'},
     {'FASTDDS_DEFAULT_PROFILES_FILE': str(ROOT / 'config' / 'fastdds_shm.xml')}),
    ({}, {'ROS_AUTOMATIC_DISCOVERY_RANGE': 'SUBNET', 'FASTDDS_DEFAULT_PROFILES_FILE': '/x'},
     {}),
])
def test_dds_environment(monkeypatch, arguments, environ, expected):
    recorded = load_launch_file(ROOT / 'launch' / 'record.launch.py', monkeypatch)
    assert environment_actions(recorded, arguments, monkeypatch, environ) == expected


def start_checks(recorded, arguments):
    """Run the launch file's first action (argument checks, then the DDS environment)."""
    [function] = [kwargs['function'] for kwargs in recorded.kwargs('OpaqueFunction')
                  if kwargs['function'].__name__ == 'check_and_set_environment']
    values = defaults(recorded)
    if 'bag_path' in values:  # a default bags/run left in the working tree is refused
        values['bag_path'] = tempfile.mkdtemp(prefix='launch_test_bag_')
    return function(types.SimpleNamespace(launch_configurations={**values, **arguments}))


def test_the_checks_come_before_every_node(launch_file):
    # Actions run in order: a refused argument must end the launch before a process starts.
    [first] = [obj for obj, _, kwargs in launch_file.calls['OpaqueFunction']
               if kwargs['function'].__name__ == 'check_and_set_environment']
    entities = launch_file.description.entities if REAL_LAUNCH else \
        launch_file.description.args[0]
    undeclared = [entity for entity in entities if type(entity).__name__ !=
                  'DeclareLaunchArgument']
    assert undeclared[0] is first


@pytest.fixture
def checkpoint(tmp_path):
    """Return a checkpoint of a small untrained head, as ``llava-drive train`` writes it."""
    from learning_data import synthetic_spec
    from llava_drive.learning.checkpoint import save_checkpoint
    from llava_drive.learning.heads import build_head
    head = build_head({'kind': 'mlp', 'feature_dim': 16, 'hidden_size': 8})
    head.set_normalization(np.zeros(16), np.ones(16), 0.0, 1.0)
    return str(save_checkpoint(tmp_path / 'head', head, synthetic_spec(feature_dim=16)))


def damaged_checkpoint(checkpoint: str, directory: Path, name: str, damage) -> str:
    """Return a copy of ``checkpoint`` in ``directory`` with file ``name`` ``damage``d."""
    shutil.copytree(checkpoint, directory)
    (directory / name).write_bytes(damage((directory / name).read_bytes()))
    return str(directory)


def failure_cases(tmp_path, checkpoint):
    """Return ``(launch file, arguments, message)`` of every refused launch."""
    full = tmp_path / 'full'
    (full / 'old').mkdir(parents=True)
    (tmp_path / 'a_file').write_text('')
    not_llava = tmp_path / 'bert'
    not_llava.mkdir()
    (not_llava / 'config.json').write_text('{"model_type": "bert"}')
    record, policy = 'record.launch.py', 'policy.launch.py'
    return {
        'duration_abc': (record, {'duration': 'abc'},
                         r"launch argument duration must be a number >= 0, got 'abc'"),
        'duration_negative': (record, {'duration': '-5'}, r'duration must be a number >= 0'),
        'noise_maybe': (record, {'noise': 'maybe'},
                        r"launch argument noise must be true or false, got 'maybe'"),
        'bag_path_exists': (record, {'bag_path': str(full)},
                            r'bag_path: .*full already exists and is not an empty directory'),
        'bag_path_under_a_file': (record, {'bag_path': str(tmp_path / 'a_file' / 'bag')},
                                  r'bag_path: cannot create .*a_file/bag: .*not a directory'),
        'bag_path_unwritable': (record, {'bag_path': '/proc/llava_drive_bag'},
                                r'bag_path: cannot create /proc/llava_drive_bag'),
        'misspelt_bag_path': (record, {'bag_pth': 'x'},
                              r'unknown launch argument bag_pth \(did you mean bag_path\?\); '
                              r'known: .*bag_path, carla_timeout'),
        'image_format': (record, {'image_format': 'png'},
                         r"image_format must be one of jpeg, raw, got 'png'"),
        'route_seeds': (record, {'route_seeds': '1,2'}, r'route_seeds must be a YAML list'),
        'port': (record, {'backend': 'carla', 'port': 'http'},
                 r"port must be an integer >= 1 and <= 65535, got 'http'"),
        'backend': (record, {'backend': 'gazebo'},
                    r"backend must be one of sim, carla, carla_ros_bridge, got 'gazebo'"),
        'localhost_only': (record, {'localhost_only': 'yes'},
                           r"localhost_only must be auto, true or false, got 'yes'"),
        'fastdds_profile': (record, {'use_fastdds_profile': 'maybe'},
                            r"use_fastdds_profile must be true or false, got 'maybe'"),
        'ros_bridge_timeout': (record, {'backend': 'carla_ros_bridge', 'carla_timeout': '5'},
                               r'carla_timeout must be >= 20 s for carla_ros_bridge'),
        'objects_file': (record, {'objects_file': str(tmp_path / 'none.json')},
                         r'objects_file must be empty or an existing file'),
        'rviz_without_rviz2': (record, {'rviz': 'true'},
                               r'rviz:=true but rviz2 is not on PATH'),
        'no_checkpoint': (policy, {}, r'launch argument checkpoint is required'),
        'missing_checkpoint': (policy, {'checkpoint': str(tmp_path / 'gone')},
                               r'checkpoint: not a checkpoint directory \(no config.json\): '
                               r'.*gone'),
        'not_llava': (policy, {'checkpoint': checkpoint, 'model': str(not_llava)},
                      r"model: .*bert is not a LLaVA model: model_type 'bert'"),
        'cuda_on_cpu_torch': (policy, {'checkpoint': checkpoint, 'device': 'cuda:99'},
                              r"device: device 'cuda:99' requested but"),
        'bad_device': (policy, {'checkpoint': checkpoint, 'device': 'gpu'},
                       r"device: device 'gpu' is not a torch device"),
        'expert_labels': (policy, {'checkpoint': checkpoint, 'expert_labels': 'maybe'},
                          r'expert_labels must be true or false'),
        'misspelt_checkpoint': (policy, {'checkpoint': checkpoint, 'chekpoint': 'x'},
                                r'unknown launch argument chekpoint \(did you mean '
                                r'checkpoint\?\)'),
        **{f'checkpoint_{case}': (
            policy, {'checkpoint': damaged_checkpoint(checkpoint, tmp_path / case, name, damage)},
            rf'^launch argument checkpoint: corrupt .*{case}/{name}: {message}')
           for case, name, damage, message in [
               ('empty_weights', 'model.safetensors', lambda data: b'',
                '0 bytes, shorter than a safetensors header'),
               ('truncated_weights', 'model.safetensors', lambda data: data[:-9],
                r"tensor '[\w.]+' ends at data byte \d+, the file holds \d+"),
               ('truncated_header', 'model.safetensors', lambda data: data[:50],
                r'header length \d+ does not fit the file \(50 bytes\)'),
               ('random_weights', 'model.safetensors',
                lambda data: np.random.default_rng(5).bytes(len(data)),
                r'header length \d+ does not fit the file'),
               ('broken_config', 'config.json', lambda data: data[:-2],
                'Expecting .*'),
               ('config_list', 'config.json', lambda data: b'[]',
                'a JSON list, not an object'),
               ('train_config', 'train_config.json', lambda data: b'{',
                'Expecting .*')]},
        'checkpoint_without_head': (
            policy, {'checkpoint': damaged_checkpoint(
                checkpoint, tmp_path / 'headless', 'config.json',
                lambda data: json.dumps({**json.loads(data), 'head': None}).encode())},
            r'^launch argument checkpoint: .*headless/config.json: no head configuration'),
        'checkpoint_without_spec': (
            policy, {'checkpoint': damaged_checkpoint(
                checkpoint, tmp_path / 'specless', 'config.json',
                lambda data: json.dumps({k: v for k, v in json.loads(data).items()
                                         if k != 'feature_spec'}).encode())},
            r'^launch argument checkpoint: .*specless/config.json: no usable feature_spec'),
    }


FAILURE_CASES = [
    'duration_abc', 'duration_negative', 'noise_maybe', 'bag_path_exists',
    'bag_path_under_a_file', 'bag_path_unwritable', 'misspelt_bag_path', 'image_format',
    'route_seeds', 'port', 'backend', 'localhost_only', 'fastdds_profile', 'ros_bridge_timeout',
    'objects_file', 'rviz_without_rviz2', 'no_checkpoint', 'missing_checkpoint', 'not_llava',
    'cuda_on_cpu_torch', 'bad_device', 'expert_labels', 'misspelt_checkpoint',
    'checkpoint_empty_weights', 'checkpoint_truncated_weights', 'checkpoint_truncated_header',
    'checkpoint_random_weights', 'checkpoint_broken_config', 'checkpoint_config_list',
    'checkpoint_train_config', 'checkpoint_without_head', 'checkpoint_without_spec']


@pytest.mark.parametrize('case', FAILURE_CASES)
def test_a_bad_argument_is_refused_in_one_line_before_any_node(monkeypatch, tmp_path,
                                                               checkpoint, case):
    launch_name, arguments, message = failure_cases(tmp_path, checkpoint)[case]
    monkeypatch.setenv('PATH', str(tmp_path))  # no rviz2 here
    recorded = load_launch_file(ROOT / 'launch' / launch_name, monkeypatch)
    with pytest.raises(ValueError, match=message) as refused:
        start_checks(recorded, arguments)
    assert '\n' not in str(refused.value)


def test_every_failure_case_is_tested(tmp_path, checkpoint):
    assert sorted(failure_cases(tmp_path, checkpoint)) == sorted(FAILURE_CASES)


def test_good_arguments_pass_the_checks(monkeypatch, tmp_path, checkpoint,
                                        tiny_llava_dir):  # noqa: F811
    rviz2 = tmp_path / 'rviz2'
    rviz2.write_text('#!/bin/sh\n')
    rviz2.chmod(0o755)
    monkeypatch.setenv('PATH', str(tmp_path))
    record = load_launch_file(ROOT / 'launch' / 'record.launch.py', monkeypatch)
    (tmp_path / 'empty').mkdir()
    for bag_path in (tmp_path / 'new' / 'bag', tmp_path / 'empty'):
        start_checks(record, {'duration': '12.5', 'noise': 'true', 'rviz': 'true',
                              'bag_path': str(bag_path), 'route_seeds': '[1, 2]'})
    # Both CARLA backends, with their server arguments.
    start_checks(record, {'backend': 'carla', 'town': 'Town02', 'bag_path': str(tmp_path / 'c')})
    start_checks(record, {'backend': 'carla_ros_bridge', 'carla_timeout': '30',
                          'role_name': 'hero', 'spawn_point': '10,-5,0.5,0,0,90',
                          'goal': '120,-60,0', 'bag_path': str(tmp_path / 'r')})
    # The writability probe leaves nothing behind.
    assert sorted(path.name for path in tmp_path.iterdir()) == ['empty', 'head', 'rviz2']
    assert not any((tmp_path / 'empty').iterdir())
    policy = load_launch_file(ROOT / 'launch' / 'policy.launch.py', monkeypatch)
    start_checks(policy, {'checkpoint': checkpoint, 'model': str(tiny_llava_dir),
                          'route_seeds': '[101, 102]', 'expert_labels': 'true'})
    with pytest.raises(ValueError, match='checkpoint is required'):
        start_checks(policy, {})


def test_carla_objects_define_the_ego_camera_and_pseudo_sensors(distribution):
    objects = json.loads((ROOT / 'config' / 'carla_objects.json').read_text())['objects']
    [ego] = [item for item in objects if item['id'] == 'ego_vehicle']
    assert ego['type'].startswith('vehicle.')
    sensors = {sensor['id']: sensor for sensor in ego['sensors']}
    camera = sensors['rgb_front']
    assert camera['type'] == 'sensor.camera.rgb'
    assert (camera['image_size_x'], camera['image_size_y'], camera['fov']) == (800, 600, 90.0)
    assert (camera['spawn_point']['x'], camera['spawn_point']['z']) == (2.0, 2.0)
    assert sensors['odometry']['type'] == 'sensor.pseudo.odom'
    assert sensors['speedometer']['type'] == 'sensor.pseudo.speedometer'
    # The embedded simulator's camera matches it.
    sim = yaml.safe_load(config('sim_bridge').read_text())['sim_bridge']['ros__parameters']
    assert (sim['image_width'], sim['image_height'], sim['fov']) == (800, 600, 90.0)
    assert installed_files(distribution).get('config/carla_objects.json') == (
        f'share/{PACKAGE}/config')


@pytest.mark.parametrize('launch_name', ['record.launch.py', 'policy.launch.py'])
@pytest.mark.parametrize('backend', ['sim', 'carla', 'carla_ros_bridge'])
def test_a_launch_holds_its_ros_domain_and_refuses_a_busy_one(
        monkeypatch, checkpoint, free_domain, launch_name, backend):
    recorded = load_launch_file(ROOT / 'launch' / launch_name, monkeypatch)
    arguments = {'backend': backend, 'carla_timeout': '30', 'checkpoint': checkpoint}
    arguments = {key: value for key, value in arguments.items() if key in defaults(recorded)}
    held = DomainLock(free_domain)
    assert held.acquire('llava-drive record')
    try:
        with pytest.raises(DomainBusy, match=rf'^ROS domain {free_domain} is in use by '
                                             r'llava-drive record \(pid \d+\): stop it'):
            start_checks(recorded, arguments)
    finally:
        held.release()
    assert not checks.DOMAIN_LOCKS  # refused: nothing taken, no environment action returned
    start_checks(recorded, arguments)  # free again: this launch takes it for its lifetime
    assert not held.acquire('a second stack')
    assert held.holder().startswith(f'ros2 launch llava_drive {launch_name} (pid ')
    start_checks(recorded, arguments)  # the same launch process may run its checks again


def test_a_launch_refuses_a_domain_id_that_is_not_a_number(monkeypatch, checkpoint):
    recorded = load_launch_file(ROOT / 'launch' / 'policy.launch.py', monkeypatch)
    monkeypatch.setenv('ROS_DOMAIN_ID', 'seven')
    with pytest.raises(ValueError, match=r"^ROS_DOMAIN_ID must be an integer, got 'seven'$"):
        start_checks(recorded, {'checkpoint': checkpoint})
    assert not checks.DOMAIN_LOCKS
