"""The sim bridge's tf geometry: the camera mount and vehicle pose as RViz will read them."""
import math

from llava_drive.nodes.sim_bridge import transform
import numpy as np
import pytest


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
