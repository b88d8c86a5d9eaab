"""
What both bridges (sim_bridge, carla_bridge) publish alike, their start-up wait and route order.

Messages follow carla_ros_bridge (architecture: Topics): poses in the ``map`` frame (REP-103),
the camera as bgra8, camera_info as an ideal pinhole, the route as a ``nav_msgs/Path``.
"""
import math
import time
from typing import Callable, Iterable, Tuple

from geometry_msgs.msg import PoseStamped, TransformStamped
from llava_drive.image_codec import raw_fields
from llava_drive.nodes.control_codec import ns_to_stamp
from nav_msgs.msg import Odometry, Path
import numpy as np
from sensor_msgs.msg import CameraInfo, Image

try:
    from tf2_msgs.msg import TFMessage
except ImportError:  # standalone wheels: no tf2_msgs (architecture: Topics)
    TFMessage = None


def set_orientation(orientation, yaw: float, pitch: float = 0.0) -> None:
    """Fill a quaternion with yaw about z, then pitch about y (positive pitch looks down)."""
    cp, sp = math.cos(pitch / 2.0), math.sin(pitch / 2.0)
    cy, sy = math.cos(yaw / 2.0), math.sin(yaw / 2.0)
    orientation.w, orientation.x = cy * cp, -sy * sp
    orientation.y, orientation.z = cy * sp, sy * cp


def transform(parent: str, child: str, stamp_ns: int, x: float, y: float, z: float,
              yaw: float = 0.0, pitch: float = 0.0) -> TransformStamped:
    """Return the TransformStamped placing ``child`` in ``parent``."""
    tf = TransformStamped()
    ns_to_stamp(stamp_ns, tf.header.stamp)
    tf.header.frame_id, tf.child_frame_id = parent, child
    t = tf.transform.translation
    t.x, t.y, t.z = float(x), float(y), float(z)
    set_orientation(tf.transform.rotation, yaw, pitch)
    return tf


def route_path(poses: Iterable[Tuple[float, float, float]], stamp_ns: int) -> Path:
    """Return the route ``(x, y, yaw)`` poses as a ``map`` path, like carla_waypoint_publisher."""
    path = Path()
    path.header.frame_id = 'map'
    ns_to_stamp(stamp_ns, path.header.stamp)
    for x, y, yaw in poses:
        pose = PoseStamped()
        pose.header = path.header
        pose.pose.position.x, pose.pose.position.y = float(x), float(y)
        set_orientation(pose.pose.orientation, float(yaw))
        path.poses.append(pose)
    return path


def camera_info(frame_id: str, width: int, height: int, fx: float, fy: float, cx: float,
                cy: float) -> CameraInfo:
    """Return the camera_info of an undistorted pinhole camera."""
    info = CameraInfo()
    info.header.frame_id = frame_id
    info.width, info.height = int(width), int(height)
    info.distortion_model = 'plumb_bob'
    info.d = [0.0] * 5
    info.k = [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    info.p = [fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    return info


def odometry(stamp_ns: int, child_frame: str, x: float, y: float, yaw: float,
             speed: float) -> Odometry:
    """Return the ego's odometry in ``map`` (forward speed on the twist's x)."""
    odom = Odometry()
    ns_to_stamp(stamp_ns, odom.header.stamp)
    odom.header.frame_id = 'map'
    odom.child_frame_id = child_frame
    odom.pose.pose.position.x, odom.pose.pose.position.y = float(x), float(y)
    set_orientation(odom.pose.pose.orientation, yaw)
    odom.twist.twist.linear.x = float(speed)
    return odom


def camera_image(stamp_ns: int, frame_id: str, bgra: np.ndarray) -> Image:
    """Return a bgra8 ``sensor_msgs/Image`` of a frame."""
    image = Image()
    ns_to_stamp(stamp_ns, image.header.stamp)
    image.header.frame_id = frame_id
    image.encoding = 'bgra8'
    image.height, image.width, image.step, image.data = raw_fields(bgra)
    return image


class StartGate:
    """
    A bridge's first frame waits until the nodes it needs have been up for ``delay`` seconds.

    So their connections to each other are up too before anything is published.

    :param delay: wall seconds between the nodes appearing and the start
    """

    def __init__(self, delay: float):
        self.delay = delay
        self.started = False
        self._ready_since = None

    def due(self, ready: Callable[[], bool]) -> bool:
        """Poll ``ready`` (until it first holds); return True once the start is due."""
        if self._ready_since is None and ready():
            self._ready_since = time.monotonic()
        if self._ready_since is not None and time.monotonic() - self._ready_since >= self.delay:
            self.started = True
        return self.started


class RouteCycle:
    """
    The routes a bridge drives one after another (its ``route_seeds`` and ``loop_routes``).

    :param seeds: route seeds, at least one
    :param loop: after the last route start again from the first (else stop)
    """

    def __init__(self, seeds, loop: bool):
        self.seeds = [int(seed) for seed in seeds]
        if not self.seeds:
            raise ValueError('route_seeds must name at least one route')
        self.loop = bool(loop)
        self.index = -1  # into seeds; -1 before the first episode
        self.episode = -1  # number of the current episode, from 0

    def next_route(self) -> bool:
        """Move on to the next route; return False when the last one is done (no loop)."""
        if self.index + 1 >= len(self.seeds) and not self.loop:
            return False
        self.index = (self.index + 1) % len(self.seeds)
        self.episode += 1
        return True

    @property
    def seed(self) -> int:
        """Return the seed of the current route."""
        return self.seeds[self.index]

    @property
    def lap(self) -> int:
        """Return how many times the whole route list was driven before this episode."""
        return self.episode // len(self.seeds)
