"""
Record image/control pairs: embedded simulator or CARLA, the expert and the recorder.

Examples::

    ros2 launch llava_drive record.launch.py backend:=sim duration:=60 bag_path:=bags/sim_1
    ros2 launch llava_drive record.launch.py backend:=carla town:=Town02 rviz:=true
    ros2 launch llava_drive record.launch.py backend:=carla_ros_bridge goal:=100,-60,0

Parameters come from the installed ``config/<node>.yaml``; launch arguments override a few.
The recorder closes its bag after ``duration`` seconds of stamps and keeps running: stop the
launch with Ctrl-C.
"""
from typing import List

from launch import LaunchDescription
from launch.actions import GroupAction
from launch_ros.actions import Node
from llava_drive.bag.writer import IMAGE_FORMATS
from llava_drive.bringup import checks
from llava_drive.bringup.launch_support import (backend_is, carla_bridge_node,
                                                carla_ros_bridge_actions, checked_start,
                                                COMMON_ARGUMENTS, declare_arguments,
                                                expert_nodes, package_node, rviz_node, typed)
from llava_drive.nodes.interfaces import RECORDER_FRAME_DONE_TOPIC

ARGUMENTS = COMMON_ARGUMENTS + [
    ('bag_path', 'bags/run', 'output bag directory (must not exist or be empty)',
     checks.new_bag_path),
    ('duration', '0.0', 'seconds of recorded stamps before the recorder closes the bag '
                        '(recorder max_duration), then everything stops; 0 = until Ctrl-C',
     checks.number(low=0.0)),
    ('route_seeds', '[1]', 'sim, carla: route seeds as a YAML list, e.g. "[1, 2, 5]" (1-100 '
                           'train); carla: each draws a start and goal on the town',
     checks.seed_list),
    ('image_format', 'jpeg', 'jpeg (sensor_msgs/CompressedImage) or raw (sensor_msgs/Image)',
     checks.one_of(*IMAGE_FORMATS)),
    ('noise', 'false', 'true: the expert perturbs the executed steering (drift and pulses, '
                       'config/expert.yaml) while its labels stay clean: recovery data',
     checks.boolean),
]


def sim_bridge_node() -> Node:
    """Return the embedded simulator; it waits for the recorder, then for each written frame."""
    return package_node('sim_bridge', {
        'route_seeds': typed('route_seeds', List[int]),
        'wait_for_image_subscribers': 1,
        # Lossless: the next step waits until the recorder has written this frame.
        'synchronous_mode_wait_for_ack_topic': RECORDER_FRAME_DONE_TOPIC,
    })


def carla_node() -> Node:
    """Return carla_bridge; like sim_bridge it waits for the recorder and each written frame."""
    return carla_bridge_node({
        'route_seeds': typed('route_seeds', List[int]),
        'loop_routes': True,  # until the recorder's duration, as sim_bridge does
        'wait_for_image_subscribers': 1,
        'synchronous_mode_wait_for_ack_topic': RECORDER_FRAME_DONE_TOPIC,
    })


def recorder_node() -> Node:
    """Return the recorder writing ``bag_path``; the launch ends when it exits."""
    return package_node('recorder', {
        'bag_path': typed('bag_path', str),
        'image_format': typed('image_format', str),
        'max_duration': typed('duration', float),
        'exit_when_done': True,
    }, ends_the_launch=True)


def generate_launch_description() -> LaunchDescription:
    """Return the recording stack for the chosen backend."""
    return LaunchDescription([
        *declare_arguments(ARGUMENTS),
        checked_start(ARGUMENTS, 'record.launch.py'),  # first: a refusal starts no node
        GroupAction([sim_bridge_node()], condition=backend_is('sim')),
        GroupAction([carla_node()], condition=backend_is('carla')),
        GroupAction(carla_ros_bridge_actions(), condition=backend_is('carla_ros_bridge')),
        *expert_nodes({'noise': typed('noise', bool)}),
        recorder_node(),
        rviz_node(),
    ])
