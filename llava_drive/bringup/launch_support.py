"""
What ``launch/record.launch.py`` and ``launch/policy.launch.py`` share.

Imported by the launch files only: it needs ``launch`` and ``launch_ros`` (a ROS install).
Everything here uses the launch API subset that Humble has.
"""
import os
from typing import List

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

PACKAGE = 'llava_drive'
BACKENDS = ('sim', 'carla')

# (name, default, description) of the arguments every launch file of the package has.
COMMON_ARGUMENTS = [
    ('backend', 'sim', 'sim: embedded simulator (sim_bridge node); carla: a running CARLA '
                       'server driven through carla_ros_bridge'),
    ('role_name', 'ego_vehicle', 'CARLA role name of the ego vehicle (carla: an ego id of the '
                                 'objects file and an ego role name of carla_ros_bridge)'),
    ('rviz', 'false', 'true: open RViz with config/llava_drive.rviz'),
    ('use_fastdds_profile', 'true', 'true: set FASTDDS_DEFAULT_PROFILES_FILE to the shipped '
                                    'large-sample shared-memory profile, unless already set'),
    ('localhost_only', 'auto', 'true: keep DDS discovery on this host '
                               '(ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST, and '
                               'ROS_LOCALHOST_ONLY=1 on Humble) unless already set; '
                               'auto = true for sim, false for carla'),
    ('host', 'localhost', 'carla: CARLA server host'),
    ('port', '2000', 'carla: CARLA server TCP port'),
    ('town', 'Town01', 'carla: town to load (or an OpenDRIVE .xodr file)'),
    ('objects_file', '', 'carla: carla_spawn_objects definition file; "" = the installed '
                         'config/carla_objects.json'),
]


def declare_arguments(arguments) -> List[DeclareLaunchArgument]:
    """Return a DeclareLaunchArgument for each ``(name, default, description)``."""
    return [DeclareLaunchArgument(name, default_value=default, description=description)
            for name, default, description in arguments]


def config_file(name: str) -> str:
    """Return the installed path of ``config/<name>``."""
    return os.path.join(get_package_share_directory(PACKAGE), 'config', name)


def backend_is(name: str) -> IfCondition:
    """Return a condition true when the ``backend`` argument equals ``name``."""
    # PythonExpression: LaunchConfigurationEquals is deprecated after Humble and
    # EqualsSubstitution does not exist on Humble.
    return IfCondition(PythonExpression(['"', LaunchConfiguration('backend'), '" == "', name,
                                         '"']))


def typed(name: str, value_type) -> ParameterValue:
    """Return launch argument ``name`` as a parameter value of ``value_type``."""
    return ParameterValue(LaunchConfiguration(name), value_type=value_type)


def truthy(text: str, name: str) -> bool:
    """Parse a true/false launch argument, naming it when the value is neither."""
    value = text.strip().lower()
    if value not in ('true', 'false', '1', '0'):
        raise ValueError(f'launch argument {name} must be true or false, got {text!r}')
    return value in ('true', '1')


def dds_environment(arguments: dict) -> List[SetEnvironmentVariable]:
    """
    Validate ``backend``; keep DDS on this host for sim; use the shipped FastDDS profile.

    A value the user exported wins (a CARLA deployment across machines keeps its own).

    :param arguments: the launch configurations (argument values) of the context.
    """
    backend = arguments['backend']
    if backend not in BACKENDS:
        raise ValueError(f'launch argument backend must be one of {BACKENDS}, got {backend!r}')
    wanted = {}
    localhost = arguments['localhost_only']
    if localhost == 'auto':
        localhost_only = backend == 'sim'
    else:
        localhost_only = truthy(localhost, 'localhost_only')
    if localhost_only:
        wanted['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
        # Humble predates ROS_AUTOMATIC_DISCOVERY_RANGE; newer distros warn on this one.
        if os.environ.get('ROS_DISTRO') == 'humble':
            wanted['ROS_LOCALHOST_ONLY'] = '1'
    if truthy(arguments['use_fastdds_profile'], 'use_fastdds_profile'):
        wanted['FASTDDS_DEFAULT_PROFILES_FILE'] = config_file('fastdds_shm.xml')
    return [SetEnvironmentVariable(key, value) for key, value in wanted.items()
            if key not in os.environ]


def carla_actions() -> List:
    """Return carla_ros_bridge (synchronous), the ego vehicle, its sensors and the waypoints."""
    def include(package: str, arguments: dict) -> IncludeLaunchDescription:
        source = PathJoinSubstitution([FindPackageShare(package), package + '.launch.py'])
        return IncludeLaunchDescription(PythonLaunchDescriptionSource(source),
                                        launch_arguments=arguments.items())

    server = {'host': LaunchConfiguration('host'), 'port': LaunchConfiguration('port')}
    objects_file = PythonExpression([
        '"', LaunchConfiguration('objects_file'), '" or "',
        config_file('carla_objects.json'), '"'])
    return [
        include('carla_ros_bridge', {
            **server,
            'town': LaunchConfiguration('town'),
            'synchronous_mode': 'True',
            'passive': 'False',
            'fixed_delta_seconds': '0.05',
            # Like sim_bridge: one command per tick, deterministic runs.
            'synchronous_mode_wait_for_vehicle_control_command': 'True',
        }),
        include('carla_spawn_objects', {'objects_definition_file': objects_file}),
        include('carla_waypoint_publisher', {**server,
                                             'role_name': LaunchConfiguration('role_name')}),
    ]


def package_node(name: str, overrides: dict, **options) -> Node:
    """
    Return our node ``name`` with ``config/<name>.yaml``, ``role_name`` and ``overrides``.

    :param name: executable and node name (``sim_bridge``, ``expert``, ...).
    :param overrides: parameters set on top of the YAML file.
    :param options: further ``Node`` arguments (``condition``, ``on_exit``).
    """
    return Node(package=PACKAGE, executable=name, name=name, output='screen',
                parameters=[config_file(f'{name}.yaml'),
                            {'role_name': typed('role_name', str), **overrides}],
                **options)


def rviz_node() -> Node:
    """Return RViz with the package's view when installed, else its default view."""
    view = config_file('llava_drive.rviz')
    return Node(package='rviz2', executable='rviz2', name='rviz2', output='log',
                arguments=['-d', view] if os.path.isfile(view) else [],
                condition=IfCondition(LaunchConfiguration('rviz')))
