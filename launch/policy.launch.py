"""
Drive with a trained checkpoint: embedded simulator or CARLA, the policy node, RViz.

Examples::

    ros2 launch llava_drive policy.launch.py checkpoint:=runs/head route_seeds:="[101]"
    ros2 launch llava_drive policy.launch.py backend:=carla checkpoint:=runs/head rviz:=true
    ros2 launch llava_drive policy.launch.py backend:=carla_ros_bridge checkpoint:=runs/head

Parameters come from the installed ``config/<node>.yaml``; launch arguments override a few.
Stop with Ctrl-C: the policy sends a final full brake on the way out.
"""
from typing import List

from launch import LaunchDescription
from launch.actions import GroupAction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from llava_drive.bringup import checks
from llava_drive.bringup.launch_support import (backend_is, carla_bridge_node,
                                                carla_ros_bridge_actions, checked_start,
                                                COMMON_ARGUMENTS, declare_arguments,
                                                expert_nodes, package_node, rviz_node, typed)

ARGUMENTS = COMMON_ARGUMENTS + [
    ('checkpoint', '', 'checkpoint directory written by llava-drive train (required)',
     checks.checkpoint_dir),
    ('model', '', 'LLaVA model directory; "" = the path stored in the checkpoint',
     checks.model_dir),
    ('device', 'cpu', 'torch device for the model: cpu, cuda, cuda:1, ...',
     checks.torch_device),
    ('route_seeds', '[101]', 'sim, carla: route seeds as a YAML list (101+ are held-out '
                             'routes)', checks.seed_list),
    ('expert_labels', 'false', 'also run the expert without driving, so the annotated image '
                               'shows its command beside the prediction', checks.boolean),
]


def bridge_overrides() -> dict:
    """Return what sim_bridge and carla_bridge share here: one step per policy answer."""
    return {'route_seeds': typed('route_seeds', List[int]),
            'synchronous_mode_wait_for_ack_topic': '',
            'wait_for_image_subscribers': 1}


def sim_node() -> Node:
    """Return the embedded simulator in synchronous mode."""
    return package_node('sim_bridge', {**bridge_overrides(), 'synchronous_mode': True})


def policy_node() -> Node:
    """Return the policy node; the launch ends when it exits (status 1 if it failed)."""
    return package_node('policy', {
        'checkpoint': typed('checkpoint', str),
        'model': typed('model', str),
        'device': typed('device', str),
        # Every backend here steps once per control (the ros-bridge too, as started here).
        'synchronous': True,
    }, ends_the_launch=True)


def generate_launch_description() -> LaunchDescription:
    """Return the driving stack for the chosen backend."""
    return LaunchDescription([
        *declare_arguments(ARGUMENTS),
        checked_start(ARGUMENTS, 'policy.launch.py'),  # first: a refusal starts no node
        GroupAction([sim_node()], condition=backend_is('sim')),
        GroupAction([carla_bridge_node(bridge_overrides())], condition=backend_is('carla')),
        GroupAction(carla_ros_bridge_actions(), condition=backend_is('carla_ros_bridge')),
        # The expert's command beside the prediction in the annotated image.
        GroupAction(expert_nodes({'drive': False}),
                    condition=IfCondition(LaunchConfiguration('expert_labels'))),
        policy_node(),
        rviz_node(),
    ])
