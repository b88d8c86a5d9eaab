"""The sim bridge: its tf geometry as RViz will read it, and its episode status."""
import json
import math

from llava_drive.nodes.bridge_common import RouteCycle
from llava_drive.nodes.interfaces import SIM_STATUS_TOPIC as STATUS_TOPIC
from llava_drive.nodes.sim_bridge import SimBridge, transform
import numpy as np
import pytest
from rclpy.parameter import Parameter
from ros_helpers import wait_for
from std_msgs.msg import String


def rotation_matrix(q) -> np.ndarray:
    """Rotation matrix of a geometry_msgs/Quaternion."""
    w, x, y, z = q.w, q.x, q.y, q.z
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


@pytest.mark.parametrize('yaw, pitch', [(0.0, 0.0), (0.7, 0.0), (0.0, 0.2), (-2.5, 0.1)])
def test_optical_axis_points_along_yaw_and_down_by_pitch(yaw, pitch):
    tf = transform('map', 'ego_vehicle', 1, 3.0, -4.0, 0.5, yaw=yaw, pitch=pitch)
    q = tf.transform.rotation
    assert math.isclose(q.w ** 2 + q.x ** 2 + q.y ** 2 + q.z ** 2, 1.0, rel_tol=1e-12)
    forward = rotation_matrix(q) @ np.array([1.0, 0.0, 0.0])
    expected = [math.cos(pitch) * math.cos(yaw), math.cos(pitch) * math.sin(yaw),
                -math.sin(pitch)]
    np.testing.assert_allclose(forward, expected, atol=1e-12)
    left = rotation_matrix(q) @ np.array([0.0, 1.0, 0.0])
    assert abs(left[2]) < 1e-12  # pitch never rolls the camera
    assert (tf.header.frame_id, tf.child_frame_id) == ('map', 'ego_vehicle')
    t = tf.transform.translation
    assert (t.x, t.y, t.z) == (3.0, -4.0, 0.5)
    assert (tf.header.stamp.sec, tf.header.stamp.nanosec) == (0, 1)


def test_route_cycle_drives_the_seeds_in_order_then_stops_or_loops():
    once = RouteCycle([7, 3], loop=False)
    assert [(once.next_route(), once.seed, once.episode) for _ in range(2)] == [
        (True, 7, 0), (True, 3, 1)]
    assert not once.next_route() and (once.seed, once.episode) == (3, 1)
    looping = RouteCycle([7, 3], loop=True)
    seen = [(looping.next_route(), looping.seed, looping.episode, looping.lap)
            for _ in range(5)]
    assert seen == [(True, 7, 0, 0), (True, 3, 1, 0), (True, 7, 2, 1), (True, 3, 3, 1),
                    (True, 7, 4, 2)]
    with pytest.raises(ValueError, match='at least one route'):
        RouteCycle([], loop=True)


def test_the_last_status_of_an_episode_says_done(ros_graph):
    statuses = []
    watcher = ros_graph.node('status_watcher')
    watcher.create_subscription(String, STATUS_TOPIC,
                                lambda msg: statuses.append(json.loads(msg.data)), 1000)
    # Real-time stepping without a driver: the car stands until the 1 s budget runs out.
    ros_graph.add(SimBridge(context=ros_graph.context, parameter_overrides=[
        Parameter('synchronous_mode', value=False), Parameter('image_width', value=64),
        Parameter('image_height', value=48), Parameter('time_budget', value=1.0),
        Parameter('route_seeds', value=[3]), Parameter('start_delay', value=0.0)]))
    assert wait_for(lambda: any(s['done'] for s in statuses), timeout=30), statuses[-1:]
    [done] = [s for s in statuses if s['done']]
    assert done['episode'] == 0 and done['done_reason'] == 'timeout'
    assert done['time'] == pytest.approx(1.0, abs=0.06)
