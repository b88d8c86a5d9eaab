"""
Route and world-state messages: the global plan, traffic light states, other vehicles.

The one module that touches fields of these messages (architecture: Topics):

* global plan on ``/carla/<role>/global_plan``, transient local: ``carla_msgs/msg/CarlaRoute``
  (``header``, ``road_options`` uint8[], ``poses`` geometry_msgs/Pose[]) as the CARLA
  leaderboard's ROS 2 agent publishes it, where carla_msgs is importable; otherwise
  ``nav_msgs/Path`` whose i-th ``PoseStamped.header.frame_id`` is the i-th option's name
  (``'LEFT'``; RViz draws a Path from its top-level header only, so the per-pose frames are
  free to carry it);
* traffic light states on ``/carla/<role>/traffic_lights``: ``std_msgs/String`` JSON
  ``{"stamp_ns", "lights": [{"id", "junction", "state", "x", "y", "stop_x", "stop_y",
  "stop_yaw"}]}`` (carla_msgs' light messages need a CARLA server's ids);
* other vehicles on ``/carla/<role>/other_vehicles``: ``visualization_msgs/MarkerArray``, one
  cube per vehicle, for RViz.
"""
import json
import math
from typing import List, Optional, Sequence

from geometry_msgs.msg import Pose, PoseStamped
from llava_drive.planning import GlobalPlan, RoadOption
from nav_msgs.msg import Path
from std_msgs.msg import String
from visualization_msgs.msg import Marker, MarkerArray

try:
    from carla_msgs.msg import CarlaRoute
except ImportError:  # not on PyPI: the fallback type (architecture: Topics)
    CarlaRoute = None

LIGHT_STATES = ('green', 'yellow', 'red')
# Marker colours (r, g, b) of other vehicles.
VEHICLE_RGB = (0.2, 0.4, 0.9)


class RouteMessageError(ValueError):
    """A route or light message that cannot be decoded (the reason names the field)."""


def plan_type():
    """Return the global plan's message class: CarlaRoute, or nav_msgs/Path as a fallback."""
    return CarlaRoute if CarlaRoute is not None else Path


def _set_pose(pose: Pose, x: float, y: float, yaw: float) -> None:
    pose.position.x, pose.position.y, pose.position.z = float(x), float(y), 0.0
    pose.orientation.z, pose.orientation.w = math.sin(yaw / 2.0), math.cos(yaw / 2.0)


def _yaw(orientation) -> float:
    return math.atan2(2.0 * (orientation.w * orientation.z + orientation.x * orientation.y),
                      1.0 - 2.0 * (orientation.y ** 2 + orientation.z ** 2))


def encode_plan(plan: GlobalPlan, stamp, frame_id: str = 'map', msg_type=None):
    """
    Return the plan's sparse targets as a message of ``msg_type`` (default :func:`plan_type`).

    :param plan: the global plan
    :param stamp: ``builtin_interfaces/Time`` of the header
    :param frame_id: frame of the poses
    :param msg_type: CarlaRoute (any class with ``header``, ``road_options``, ``poses``) or Path
    """
    msg_type = msg_type or plan_type()
    msg = msg_type()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    if msg_type is Path:
        for (x, y, yaw), option in zip(plan.poses.tolist(), plan.options):
            stamped = PoseStamped()
            stamped.header.stamp = stamp
            stamped.header.frame_id = option.name
            _set_pose(stamped.pose, x, y, yaw)
            msg.poses.append(stamped)
        return msg
    poses = []
    for x, y, yaw in plan.poses.tolist():
        pose = Pose()
        _set_pose(pose, x, y, yaw)
        poses.append(pose)
    msg.poses = poses
    msg.road_options = bytes(option.wire for option in plan.options)
    return msg


def decode_plan(msg) -> GlobalPlan:
    """
    Return the sparse :class:`GlobalPlan` a CarlaRoute or fallback Path message carries.

    :param msg: the message
    :raises RouteMessageError: on missing options, unknown option names, bad poses
    """
    try:
        if isinstance(msg, Path):
            options = [RoadOption.parse(stamped.header.frame_id) for stamped in msg.poses]
            poses = [stamped.pose for stamped in msg.poses]
        else:
            options = [RoadOption.parse(value) for value in bytes(msg.road_options)]
            poses = list(msg.poses)
        rows = [(p.position.x, p.position.y, _yaw(p.orientation)) for p in poses]
        return GlobalPlan(rows, options)
    except (ValueError, TypeError, AttributeError) as error:
        raise RouteMessageError(f'global plan: {error}') from None


def encode_lights(lights: Sequence[dict], stamp_ns: int) -> String:
    """
    Return the light states as JSON on std_msgs/String.

    :param lights: the world's light records (``id``, ``junction``, ``state``, positions)
    :param stamp_ns: the frame's stamp
    """
    keep = ('id', 'junction', 'state', 'x', 'y', 'stop_x', 'stop_y', 'stop_yaw')
    records = [{key: light[key] for key in keep if key in light} for light in lights]
    return String(data=json.dumps({'stamp_ns': int(stamp_ns), 'lights': records}))


def decode_lights(msg: String) -> dict:
    """
    Return ``{'stamp_ns': int, 'lights': [...]}`` from a light-state message, checked.

    :param msg: the std_msgs/String
    :raises RouteMessageError: on bad JSON, a missing field or an unknown state
    """
    try:
        data = json.loads(msg.data)
        stamp = int(data['stamp_ns'])
        lights = list(data['lights'])
        for light in lights:
            if light['state'] not in LIGHT_STATES:
                raise ValueError(f'unknown light state {light["state"]!r}')
            int(light['id'])
    except (ValueError, TypeError, KeyError) as error:
        raise RouteMessageError(f'traffic lights: {error!r}') from None
    return {'stamp_ns': stamp, 'lights': lights}


def encode_vehicles(vehicles: Sequence[dict], stamp, frame_id: str = 'map',
                    previous: Optional[int] = None) -> MarkerArray:
    """
    Return one cube marker per vehicle (``id``, ``x``, ``y``, ``yaw``, ``length``, ``width``).

    :param vehicles: the world's vehicle records
    :param stamp: ``builtin_interfaces/Time`` of the markers
    :param frame_id: frame of the poses
    :param previous: how many were sent last time: a DELETEALL marker first clears them when
        vehicles disappeared
    """
    markers: List[Marker] = []
    if previous is not None and previous > len(vehicles):
        clear = Marker()
        clear.header.stamp = stamp
        clear.header.frame_id = frame_id
        clear.action = Marker.DELETEALL
        markers.append(clear)
    for vehicle in vehicles:
        marker = Marker()
        marker.header.stamp = stamp
        marker.header.frame_id = frame_id
        marker.ns = 'other_vehicles'
        marker.id = int(vehicle['id'])
        marker.type = Marker.CUBE
        marker.action = Marker.ADD
        _set_pose(marker.pose, vehicle['x'], vehicle['y'], vehicle['yaw'])
        marker.pose.position.z = 0.75
        marker.scale.x = float(vehicle.get('length', 4.5))
        marker.scale.y = float(vehicle.get('width', 1.9))
        marker.scale.z = 1.5
        marker.color.r, marker.color.g, marker.color.b = VEHICLE_RGB
        marker.color.a = 0.9
        markers.append(marker)
    return MarkerArray(markers=markers)
