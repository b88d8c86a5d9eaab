"""
Drive with a trained checkpoint: embedded simulator or CARLA, the policy node, RViz.

Examples::

    ros2 launch llava_drive policy.launch.py checkpoint:=runs/head route_seeds:="[101]"
    ros2 launch llava_drive policy.launch.py backend:=carla checkpoint:=runs/head rviz:=true

Parameters come from the installed ``config/<node>.yaml``; launch arguments override a few.
Stop with Ctrl-C: the policy sends a final full brake on the way out.
"""
import os
from typing import List

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import (DeclareLaunchArgument, GroupAction, IncludeLaunchDescription,
                            OpaqueFunction, SetEnvironmentVariable, Shutdown)
from launch.conditions import IfCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

PACKAGE = 'llava_drive'
BACKENDS = ('sim', 'carla')

ARGUMENTS = [
    ('backend', 'sim', 'sim: embedded simulator (sim_bridge node); carla: a running CARLA '
                       'server driven through carla_ros_bridge'),
    ('checkpoint', '', 'checkpoint directory written by llava-drive train (required)'),
    ('model', '', 'LLaVA model directory; "" = the path stored in the checkpoint'),
    ('device', 'cpu', 'torch device for the model: cpu, cuda, cuda:1, ...'),
    ('rviz', 'false', 'true: open RViz with config/llava_drive.rviz'),
    ('route_seeds', '[101]', 'sim: route seeds as a YAML list (101+ are held-out routes)'),
    ('expert_labels', 'false', 'sim: also run the expert without driving, so the annotated '
                               'image shows its command beside the prediction'),
    ('role_name', 'ego_vehicle', 'CARLA role name of the ego vehicle'),
    ('use_fastdds_profile', 'true', 'true: set FASTDDS_DEFAULT_PROFILES_FILE to the shipped '
                                    'large-sample shared-memory profile, unless already set'),
    ('host', 'localhost', 'carla: CARLA server host'),
    ('port', '2000', 'carla: CARLA server TCP port'),
    ('town', 'Town01', 'carla: town to load'),
]


def config_file(name: str) -> str:
    """Return the installed path of ``config/<name>``."""
    return os.path.join(get_package_share_directory(PACKAGE), 'config', name)


def backend_is(name: str) -> IfCondition:
    """Return a condition true when the ``backend`` argument equals ``name``."""
    return IfCondition(PythonExpression(['"', LaunchConfiguration('backend'), '" == "', name,
                                         '"']))


def typed(name: str, value_type) -> ParameterValue:
    """Return launch argument ``name`` as a parameter value of ``value_type``."""
    return ParameterValue(LaunchConfiguration(name), value_type=value_type)


def dds_environment(context) -> List[SetEnvironmentVariable]:
    """
    Validate ``backend``; for sim keep DDS on this host; use the shipped FastDDS profile.

    A value the user exported wins (a CARLA deployment across machines keeps its own).

    :param context: the launch context holding the argument values.
    """
    arguments = context.launch_configurations
    if arguments['backend'] not in BACKENDS:
        raise ValueError(f'launch argument backend must be one of {BACKENDS}, '
                         f'got {arguments["backend"]!r}')
    if not arguments['checkpoint']:
        raise ValueError('launch argument checkpoint is required (a llava-drive train '
                         'output directory)')
    wanted = {}
    if arguments['backend'] == 'sim':
        wanted['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
        if os.environ.get('ROS_DISTRO') == 'humble':  # predates the variable above
            wanted['ROS_LOCALHOST_ONLY'] = '1'
    if arguments['use_fastdds_profile'].lower() in ('true', '1'):
        wanted['FASTDDS_DEFAULT_PROFILES_FILE'] = config_file('fastdds_shm.xml')
    return [SetEnvironmentVariable(key, value) for key, value in wanted.items()
            if key not in os.environ]


def sim_nodes() -> List[Node]:
    """Return the embedded simulator (one step per policy answer) and the optional expert."""
    sim = Node(package=PACKAGE, executable='sim_bridge', name='sim_bridge', output='screen',
               parameters=[config_file('sim_bridge.yaml'), {
                   'role_name': typed('role_name', str),
                   'route_seeds': typed('route_seeds', List[int]),
                   'synchronous_mode': True,
                   'synchronous_mode_wait_for_ack_topic': '',
                   'wait_for_image_subscribers': 1,
               }])
    expert = Node(package=PACKAGE, executable='expert', name='expert', output='screen',
                  condition=IfCondition(LaunchConfiguration('expert_labels')),
                  parameters=[config_file('expert.yaml'), {
                      'role_name': typed('role_name', str),
                      'drive': False,
                  }])
    return [sim, expert]


def carla_actions() -> List:
    """Return carla_ros_bridge (synchronous), the ego vehicle and the waypoint publisher."""
    def include(package: str, arguments: dict) -> IncludeLaunchDescription:
        source = PathJoinSubstitution([FindPackageShare(package), package + '.launch.py'])
        return IncludeLaunchDescription(PythonLaunchDescriptionSource(source),
                                        launch_arguments=arguments.items())

    server = {'host': LaunchConfiguration('host'), 'port': LaunchConfiguration('port')}
    return [
        include('carla_ros_bridge', {
            **server, 'town': LaunchConfiguration('town'), 'synchronous_mode': 'True',
            'passive': 'False', 'fixed_delta_seconds': '0.05',
            'synchronous_mode_wait_for_vehicle_control_command': 'True'}),
        include('carla_spawn_objects', {'objects_definition_file':
                                        config_file('carla_objects.json')}),
        include('carla_waypoint_publisher', {**server,
                                             'role_name': LaunchConfiguration('role_name')}),
    ]


def policy_node() -> Node:
    """Return the policy node; the launch ends if it exits (e.g. a refused checkpoint)."""
    return Node(package=PACKAGE, executable='policy', name='policy', output='screen',
                on_exit=Shutdown(reason='the policy exited'),
                parameters=[config_file('policy.yaml'), {
                    'role_name': typed('role_name', str),
                    'checkpoint': typed('checkpoint', str),
                    'model': typed('model', str),
                    'device': typed('device', str),
                }])


def rviz_node() -> Node:
    """Return RViz showing the camera, the annotated image, the path and the route."""
    return Node(package='rviz2', executable='rviz2', name='rviz2', output='log',
                arguments=['-d', config_file('llava_drive.rviz')],
                condition=IfCondition(LaunchConfiguration('rviz')))


def generate_launch_description() -> LaunchDescription:
    """Return the driving stack for the chosen backend."""
    return LaunchDescription([
        *[DeclareLaunchArgument(name, default_value=default, description=description)
          for name, default, description in ARGUMENTS],
        OpaqueFunction(function=dds_environment),
        GroupAction(sim_nodes(), condition=backend_is('sim')),
        GroupAction(carla_actions(), condition=backend_is('carla')),
        policy_node(),
        rviz_node(),
    ])
