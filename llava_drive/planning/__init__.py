"""
Route commands and global plans, without ROS.

A route is a :class:`GlobalPlan`: sparse target poses with CARLA's :class:`RoadOption`
commands (the leaderboard's global plan) plus, where the world has them, the dense lane
waypoints with their options. :func:`route_command` is the one function that turns a plan and an
ego pose into the command in effect and the next target point (map and vehicle frame); the
recorder, feature extraction, the policy and evaluation all call it, offline and live alike.
"""
from llava_drive.planning.command import commands_along, route_command, RouteCommand
from llava_drive.planning.plan import downsample_indices, GlobalPlan
from llava_drive.planning.road_option import JUNCTION_OPTIONS, RoadOption

__all__ = [
    'GlobalPlan', 'JUNCTION_OPTIONS', 'RoadOption', 'RouteCommand', 'commands_along',
    'downsample_indices', 'route_command',
]
