"""
Record image/control pairs: embedded simulator or CARLA, the expert and the recorder.

Examples::

    ros2 launch llava_drive record.launch.py backend:=sim duration:=60 bag_path:=bags/sim_1
    ros2 launch llava_drive record.launch.py backend:=carla town:=Town02 rviz:=true

Parameters come from the installed ``config/<node>.yaml``; launch arguments override a few.
The recorder closes its bag after ``duration`` seconds of stamps and keeps running: stop the
launch with Ctrl-C.
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
    ('role_name', 'ego_vehicle', 'CARLA role name of the ego vehicle (carla: an ego id of the '
                                 'objects file and an ego role name of carla_ros_bridge)'),
    ('bag_path', 'bags/run', 'output bag directory (must not exist or be empty)'),
    ('duration', '0.0', 'seconds of recorded stamps before the recorder closes the bag '
                        '(recorder max_duration), then everything stops; 0 = until Ctrl-C'),
    ('route_seeds', '[1]', 'sim: route seeds as a YAML list, e.g. "[1, 2, 5]" (1-100 train)'),
    ('image_format', 'jpeg', 'jpeg (sensor_msgs/CompressedImage) or raw (sensor_msgs/Image)'),
    ('noise', 'false', 'true: the expert perturbs the executed steering (drift and pulses, '
                       'config/expert.yaml) while its labels stay clean: recovery data'),
    ('rviz', 'false', 'true: open RViz (config/llava_drive.rviz when installed)'),
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


def local_dds_environment(context) -> List[SetEnvironmentVariable]:
    """
    Validate ``backend`` and keep DDS on this host / use the shipped FastDDS profile.

    A value the user exported wins (a CARLA deployment across machines keeps its own).

    :param context: the launch context holding the argument values.
    """
    arguments = context.launch_configurations
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


def sim_bridge_node() -> Node:
    """Return the embedded simulator; it waits for the recorder, then for each written frame."""
    return Node(package=PACKAGE, executable='sim_bridge', name='sim_bridge', output='screen',
                parameters=[config_file('sim_bridge.yaml'), {
                    'role_name': typed('role_name', str),
                    'route_seeds': typed('route_seeds', List[int]),
                    'wait_for_image_subscribers': 1,
                    # Lossless: the next step waits until the recorder has written this frame.
                    'synchronous_mode_wait_for_ack_topic': '/recorder/frame_done',
                }])


def carla_actions() -> List:
    """Return carla_ros_bridge, the ego vehicle and its sensors, and the waypoint publisher."""
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
            # Like sim_bridge: one expert command per tick, deterministic recordings.
            'synchronous_mode_wait_for_vehicle_control_command': 'True',
        }),
        include('carla_spawn_objects', {'objects_definition_file': objects_file}),
        include('carla_waypoint_publisher', {**server,
                                             'role_name': LaunchConfiguration('role_name')}),
    ]


def expert_node() -> Node:
    """Return the expert driver, with steering noise when asked."""
    return Node(package=PACKAGE, executable='expert', name='expert', output='screen',
                parameters=[config_file('expert.yaml'), {
                    'role_name': typed('role_name', str),
                    'noise': typed('noise', bool),
                }])


def recorder_node() -> Node:
    """Return the recorder writing ``bag_path``; the launch ends if it exits (bad bag path)."""
    return Node(package=PACKAGE, executable='recorder', name='recorder', output='screen',
                on_exit=Shutdown(reason='the recorder exited'),
                parameters=[config_file('recorder.yaml'), {
                    'role_name': typed('role_name', str),
                    'bag_path': typed('bag_path', str),
                    'image_format': typed('image_format', str),
                    'max_duration': typed('duration', float),
                    'exit_when_done': True,
                }])


def rviz_node() -> Node:
    """Return RViz with the package's view when installed, else its default view."""
    view = config_file('llava_drive.rviz')
    return Node(package='rviz2', executable='rviz2', name='rviz2', output='log',
                arguments=['-d', view] if os.path.isfile(view) else [],
                condition=IfCondition(LaunchConfiguration('rviz')))


def generate_launch_description() -> LaunchDescription:
    """Return the recording stack for the chosen backend."""
    return LaunchDescription([
        *[DeclareLaunchArgument(name, default_value=default, description=description)
          for name, default, description in ARGUMENTS],
        OpaqueFunction(function=local_dds_environment),
        GroupAction([sim_bridge_node()], condition=backend_is('sim')),
        GroupAction(carla_actions(), condition=backend_is('carla')),
        expert_node(),
        recorder_node(),
        rviz_node(),
    ])
