"""
What ``launch/record.launch.py`` and ``launch/policy.launch.py`` share.

Imported by the launch files only: it needs ``launch`` and ``launch_ros`` (a ROS install).
Everything here uses the launch API subset that Humble has.
"""
import json
import os
import tempfile
from typing import List

from ament_index_python.packages import get_package_share_directory
from launch.actions import (DeclareLaunchArgument, ExecuteProcess, IncludeLaunchDescription,
                            OpaqueFunction, SetEnvironmentVariable, Shutdown)
from launch.conditions import IfCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

from llava_drive.bringup import checks
from llava_drive.bringup.checks import parse_numbers, ros_bridge_timeout
from llava_drive.bringup.node_specs import CARLA_MAX_STEER_DEG
from llava_drive.carla.session import BridgeConfig
from llava_drive.nodes.interfaces import CARLA_BACKENDS, DEFAULT_ROLE_NAME, vehicle_topics

PACKAGE = 'llava_drive'

# (name, default, description, check) of the arguments every launch file of the package has.
COMMON_ARGUMENTS = [
    ('backend', 'sim', 'sim: embedded simulator (sim_bridge node); carla: a CARLA '
                       '0.9.14-0.9.16 server through our carla_bridge node (its Python API, '
                       'no ros-bridge); carla_ros_bridge: carla-simulator/ros-bridge '
                       '(carla_ros_bridge, carla_spawn_objects, carla_waypoint_publisher)',
     checks.backend),
    ('role_name', DEFAULT_ROLE_NAME, 'CARLA role name of the ego vehicle (topic names; '
                                     'carla_ros_bridge: also its ego_vehicle_role_name and the '
                                     'vehicle id of the objects file)', checks.ros_name),
    ('rviz', 'false', 'true: open RViz with config/llava_drive.rviz (rviz2 must be on PATH)',
     checks.rviz),
    ('use_fastdds_profile', 'true', 'true: set FASTDDS_DEFAULT_PROFILES_FILE to the shipped '
                                    'large-sample shared-memory profile, unless already set',
     checks.boolean),
    ('localhost_only', 'auto', 'true: keep DDS discovery on this host '
                               '(ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST, and '
                               'ROS_LOCALHOST_ONLY=1 on Humble) unless already set; '
                               'auto = true for sim, false for carla', checks.auto_or_boolean),
    ('host', BridgeConfig.host, 'carla: CARLA server host', checks.non_empty),
    ('port', str(BridgeConfig.port), 'carla: CARLA server TCP port',
     checks.number(1, True, 65535)),
    ('town', BridgeConfig.town, 'carla: town to load (or an OpenDRIVE .xodr file)',
     checks.non_empty),
    ('objects_file', '', 'carla: carla_spawn_objects definition file; "" = the installed '
                         'config/carla_objects.json', checks.optional_file),
    ('carla_timeout', str(BridgeConfig.timeout),
     'carla, carla_ros_bridge: seconds to wait for the server (ros-bridge needs >= 20: it '
     'loads the town on start)',
     checks.number(low=0.0)),
    ('spawn_point', '', 'carla_ros_bridge: ego pose "x,y,z,roll,pitch,yaw" (ROS map frame, '
                        'degrees); "" = a random spawn point', checks.optional_numbers(6)),
    ('goal', '', 'carla_ros_bridge: route goal "x,y,z" (ROS map frame) published to the '
                 'waypoint publisher; "" = its default (the first spawn point)',
     checks.optional_numbers(3)),
]


def declare_arguments(arguments) -> List[DeclareLaunchArgument]:
    """Return a DeclareLaunchArgument for each ``(name, default, description, check)``."""
    return [DeclareLaunchArgument(name, default_value=default, description=description)
            for name, default, description, _ in arguments]


def checked_start(arguments, launch_file: str) -> OpaqueFunction:
    """
    Return the launch's first action: check every argument, lock the domain, set DDS up.

    It runs before any node action is visited, so a refused argument or a ROS domain another
    stack of the package holds ends the launch (status 1, one line) with no process started.
    Undeclared ``name:=value`` pairs are refused too.

    :param arguments: the launch file's ``(name, default, description, check)`` rows
    :param launch_file: its file name, for the domain lock's owner
    """
    def check_and_set_environment(context):
        values = context.launch_configurations
        checks.check_arguments(values, checks.checks_of(arguments))
        checks.related(values)
        # Newer launch keeps the environment of its processes in the context.
        checks.lock_launch_domain(getattr(context, 'environment', os.environ),
                                  f'ros2 launch {PACKAGE} {launch_file}')
        return dds_environment(values)
    return OpaqueFunction(function=check_and_set_environment)


def config_file(name: str) -> str:
    """Return the installed path of ``config/<name>``."""
    return os.path.join(get_package_share_directory(PACKAGE), 'config', name)


def backend_is(*names: str) -> IfCondition:
    """Return a condition true when the ``backend`` argument is one of ``names``."""
    # PythonExpression: LaunchConfigurationEquals is deprecated after Humble and
    # EqualsSubstitution does not exist on Humble.
    return IfCondition(PythonExpression(['"', LaunchConfiguration('backend'), '" in ',
                                         repr(tuple(names))]))


def typed(name: str, value_type) -> ParameterValue:
    """Return launch argument ``name`` as a parameter value of ``value_type``."""
    return ParameterValue(LaunchConfiguration(name), value_type=value_type)


def dds_environment(arguments: dict) -> List[SetEnvironmentVariable]:
    """
    Keep DDS on this host for sim; use the shipped FastDDS profile.

    A value the user exported wins (a CARLA deployment across machines keeps its own).

    :param arguments: the launch configurations (checked argument values) of the context.
    """
    wanted = {}
    localhost = arguments['localhost_only']
    if localhost.strip().lower() == 'auto':
        localhost_only = arguments['backend'] == 'sim'
    else:
        localhost_only = checks.boolean(localhost, 'localhost_only')
    if localhost_only:
        wanted['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
        # Humble predates ROS_AUTOMATIC_DISCOVERY_RANGE; newer distros warn on this one.
        if os.environ.get('ROS_DISTRO') == 'humble':
            wanted['ROS_LOCALHOST_ONLY'] = '1'
    if checks.boolean(arguments['use_fastdds_profile'], 'use_fastdds_profile'):
        wanted['FASTDDS_DEFAULT_PROFILES_FILE'] = config_file('fastdds_shm.xml')
    return [SetEnvironmentVariable(key, value) for key, value in wanted.items()
            if key not in os.environ]


def ros_bridge_objects_file(source: str, role_name: str, spawn_point: List[float]) -> str:
    """
    Write the objects file carla_spawn_objects gets: the ego id is ``role_name``.

    carla_spawn_objects takes the ego from the vehicle whose ``id`` is an ego role name, and
    its launch file only forwards ``spawn_point_ego_vehicle``: the role name and the spawn
    point therefore go into the file.

    :param source: the objects file to start from
    :param role_name: the ego's role name
    :param spawn_point: ``[x, y, z, roll, pitch, yaw]`` or empty (random spawn point)
    :return: the path of the written file
    """
    with open(source) as stream:
        document = json.load(stream)
    vehicles = [o for o in document.get('objects', []) if str(o.get('type', '')).startswith(
        'vehicle.')]
    if len(vehicles) != 1:
        raise ValueError(f'{source} must define exactly one vehicle (the ego), found '
                         f'{len(vehicles)}')
    vehicles[0]['id'] = role_name
    if spawn_point:
        vehicles[0]['spawn_point'] = dict(zip(('x', 'y', 'z', 'roll', 'pitch', 'yaw'),
                                              spawn_point))
    handle, path = tempfile.mkstemp(prefix=f'llava_drive_objects_{role_name}_', suffix='.json')
    with os.fdopen(handle, 'w') as stream:
        json.dump(document, stream, indent=2)
    return path


def ros_bridge_actions(context) -> List:
    """
    Return carla_ros_bridge (synchronous), the ego and its sensors, waypoints and the goal.

    Every argument given to the ros-bridge launch files exists there under that name (checked
    against carla-simulator/ros-bridge in test_launch_files.py).

    :param context: the launch context (its argument values)
    """
    arguments = context.launch_configurations
    role = arguments['role_name']
    timeout = ros_bridge_timeout(arguments['carla_timeout'], 'carla_timeout')
    spawn = parse_numbers(arguments['spawn_point'], 6, 'spawn_point') \
        if arguments['spawn_point'] else []
    goal = parse_numbers(arguments['goal'], 3, 'goal') if arguments['goal'] else []
    objects = ros_bridge_objects_file(arguments['objects_file'] or config_file(
        'carla_objects.json'), role, spawn)

    def include(package: str, launch_arguments: dict) -> IncludeLaunchDescription:
        source = PathJoinSubstitution([FindPackageShare(package), package + '.launch.py'])
        return IncludeLaunchDescription(PythonLaunchDescriptionSource(source),
                                        launch_arguments=launch_arguments.items())

    server = {'host': arguments['host'], 'port': arguments['port'], 'timeout': str(timeout)}
    actions = [
        include('carla_ros_bridge', {
            **server,
            'town': arguments['town'],
            'synchronous_mode': 'True',
            'passive': 'False',
            'fixed_delta_seconds': '0.05',
            # Like sim_bridge: one tick per control command, deterministic runs.
            'synchronous_mode_wait_for_vehicle_control_command': 'True',
            'ego_vehicle_role_name': role,
        }),
        include('carla_spawn_objects', {'objects_definition_file': objects}),
        # Imports CARLA's agents package: PythonAPI/carla of the server must be on PYTHONPATH.
        include('carla_waypoint_publisher', {**server, 'role_name': role}),
    ]
    if goal:
        x, y, z = goal
        # Its subscription is volatile: publish once it exists (-w 1, Humble's ros2 topic pub).
        actions.append(ExecuteProcess(cmd=[
            'ros2', 'topic', 'pub', '--once', '-w', '1', vehicle_topics(role).goal,
            'geometry_msgs/msg/PoseStamped',
            f'{{header: {{frame_id: map}}, pose: {{position: {{x: {x}, y: {y}, z: {z}}}, '
            f'orientation: {{w: 1.0}}}}}}'], output='screen'))
    return actions


def carla_ros_bridge_actions() -> List:
    """Return the ros-bridge actions, built when the launch runs (they need the arguments)."""
    return [OpaqueFunction(function=ros_bridge_actions)]


def carla_bridge_node(overrides: dict, **options) -> Node:
    """
    Return our carla_bridge node (the ``carla`` backend) with the CARLA launch arguments.

    :param overrides: further carla_bridge parameters
    :param options: further ``Node`` arguments
    """
    return package_node('carla_bridge', {
        'host': typed('host', str),
        'port': typed('port', int),
        'town': typed('town', str),
        'timeout': typed('carla_timeout', float),
        'objects_file': typed('objects_file', str),
        **overrides}, **options)


def expert_nodes(overrides: dict) -> List[Node]:
    """
    Return the expert for each backend kind: the YAML's steering limit, or CARLA's.

    :param overrides: expert parameters of the launch file
    """
    return [package_node('expert', overrides, condition=backend_is('sim')),
            package_node('expert', {**overrides, 'max_steer_deg': CARLA_MAX_STEER_DEG},
                         condition=backend_is(*CARLA_BACKENDS))]


def on_node_exit(name: str, ends_the_launch: bool):
    """
    Return the ``on_exit`` handler of node ``name``: a failed node fails the launch.

    ``ros2 launch`` exits 0 whatever its processes return; raising here makes it stop every
    process and exit 1, after the node's own line saying why it failed.

    :param ends_the_launch: a clean exit ends the launch too (the node that does the job)
    """
    def handle(event, context):
        if event.returncode:
            raise RuntimeError(f'{name} exited with status {event.returncode}')
        return [Shutdown(reason=f'{name} exited')] if ends_the_launch else None
    return handle


def package_node(name: str, overrides: dict, ends_the_launch: bool = False, **options) -> Node:
    """
    Return our node ``name`` with ``config/<name>.yaml``, ``role_name`` and ``overrides``.

    :param name: executable and node name (``sim_bridge``, ``expert``, ...).
    :param overrides: parameters set on top of the YAML file.
    :param ends_the_launch: the launch ends when this node exits; any node that fails (exits
        non-zero) ends it with status 1
    :param options: further ``Node`` arguments (``condition``).
    """
    return Node(package=PACKAGE, executable=name, name=name, output='screen',
                parameters=[config_file(f'{name}.yaml'),
                            {'role_name': typed('role_name', str), **overrides}],
                on_exit=on_node_exit(name, ends_the_launch), **options)


def rviz_node() -> Node:
    """Return RViz with the package's view when installed, else its default view."""
    view = config_file('llava_drive.rviz')
    return Node(package='rviz2', executable='rviz2', name='rviz2', output='log',
                arguments=['-d', view] if os.path.isfile(view) else [],
                condition=IfCondition(LaunchConfiguration('rviz')))
