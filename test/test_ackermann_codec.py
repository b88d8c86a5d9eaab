"""Ackermann output: the codec on both wire types, and the expert publishing it on a graph."""
import math
import types

from geometry_msgs.msg import PoseStamped
from llava_drive.control import Control
from llava_drive.nodes import control_codec
from llava_drive.nodes.control_codec import (ACKERMANN_TOPIC, AckermannCodec, AckermannConfig,
                                             ControlCodec, driving_codec)
from llava_drive.nodes.expert import Expert
from llava_drive.nodes.interfaces import LATCHED_QOS
from nav_msgs.msg import Odometry, Path
import pytest
from rclpy.parameter import Parameter
from ros_helpers import wait_for
from sensor_msgs.msg import Joy
from std_msgs.msg import Header


class AckermannDriveStamped:
    """ackermann_msgs/msg/AckermannDriveStamped's fields, for where the package is missing."""

    def __init__(self):
        self.header = Header()
        self.drive = types.SimpleNamespace(steering_angle=0.0, steering_angle_velocity=0.0,
                                           speed=0.0, acceleration=0.0, jerk=0.0)


@pytest.fixture(params=['joy', 'ackermann_msgs'])
def codec(request, monkeypatch):
    """Return an Ackermann codec on the Joy fallback, then on the stamped message."""
    if request.param == 'ackermann_msgs' and control_codec.AckermannDriveStamped is None:
        monkeypatch.setattr(control_codec, 'AckermannDriveStamped', AckermannDriveStamped)
    if request.param == 'joy':
        monkeypatch.setattr(control_codec, 'AckermannDriveStamped', None)
    return AckermannCodec(AckermannConfig(max_steer_deg=70.0, target_speed_mps=6.0))


def fields(msg):
    """Return ``(angle, speed, acceleration)`` of either wire type."""
    if isinstance(msg, Joy):
        return tuple(msg.axes)
    return msg.drive.steering_angle, msg.drive.speed, msg.drive.acceleration


def test_steering_angle_speed_and_stamp(codec):
    # CARLA steer +0.5 turns right: REP-103 angle -35 deg.
    msg = codec.encode(Control(steer=0.5, throttle=0.4), 3_000_000_007, frame_id='ego')
    angle, speed, acceleration = fields(msg)
    assert angle == pytest.approx(-math.radians(35.0))
    assert speed == 6.0 and acceleration == pytest.approx(0.4 * 3.0)
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (3, 7)
    assert msg.header.frame_id == 'ego'
    stamp, control = codec.decode(msg)
    assert stamp == 3_000_000_007
    assert control.steer == pytest.approx(0.5) and control.throttle == pytest.approx(0.4)
    assert control.brake == 0.0


def test_braking_stops_and_nan_brakes(codec):
    assert fields(codec.encode(Control(brake=0.8), 1))[1:] == (0.0, pytest.approx(-6.4))
    _, speed, acceleration = fields(codec.encode(Control(throttle=float('nan'),
                                                         brake=float('nan')), 1))
    assert speed == 0.0 and acceleration == pytest.approx(-8.0)
    assert codec.decode(codec.encode(Control(brake=1.0), 1))[1].brake == 1.0
    _, reverse = codec.decode(codec.encode(Control(throttle=0.2, reverse=True), 1))
    assert reverse.reverse


def test_another_wheelbase_keeps_the_curvature(codec):
    robot = AckermannCodec(AckermannConfig(max_steer_deg=70.0, wheelbase_m=2.9,
                                           robot_wheelbase_m=0.33))
    angle = robot.steering_angle(-0.3)
    reference = math.radians(0.3 * 70.0)
    assert math.tan(angle) / 0.33 == pytest.approx(math.tan(reference) / 2.9)
    assert robot.decode(robot.encode(Control(steer=-0.3), 0))[1].steer == pytest.approx(-0.3)


def test_bad_messages_and_settings_are_refused(codec):
    with pytest.raises(ValueError, match='axes'):
        codec.decode(Joy(axes=[0.1]))
    bad = codec.encode(Control(), 0)
    if isinstance(bad, Joy):
        bad.axes = [float('nan'), 0.0, 0.0]
    else:
        bad.drive.steering_angle = float('nan')
    with pytest.raises(ValueError, match='steering_angle is not finite'):
        codec.decode(bad)
    with pytest.raises(ValueError, match=r'max_steer_deg must be in \[1, 89\], got 0\.0'):
        AckermannConfig(max_steer_deg=0.0)
    with pytest.raises(ValueError, match='one of'):
        ControlCodec('ackermann')  # vehicle_control_cmd never carries Ackermann


def test_driving_codec_picks_the_topic():
    assert driving_codec('ackermann').topic == ACKERMANN_TOPIC == 'ackermann_cmd_stamped'
    assert driving_codec('auto').topic == 'vehicle_control_cmd'


def test_expert_publishes_ackermann_with_the_odometry_stamp(ros_graph):
    codec = AckermannCodec()
    received = []
    watcher = ros_graph.node('ackermann_watcher')
    watcher.create_subscription(codec.msg_type, f'/carla/ego_vehicle/{ACKERMANN_TOPIC}',
                                received.append, 10)
    labels = []
    label_codec = ControlCodec('auto')
    watcher.create_subscription(label_codec.msg_type, '/llava_drive/expert/control',
                                labels.append, 10)
    path_pub = watcher.create_publisher(Path, '/carla/ego_vehicle/waypoints', LATCHED_QOS)
    odom_pub = watcher.create_publisher(Odometry, '/carla/ego_vehicle/odometry', 10)
    ros_graph.add(Expert(context=ros_graph.context, parameter_overrides=[
        Parameter('control_wire', value='ackermann'), Parameter('max_steer_deg', value=70.0)]))
    path = Path()
    for i in range(50):  # straight ahead along x
        point = PoseStamped()
        point.pose.position.x = float(i)
        path.poses.append(point)
    path_pub.publish(path)
    odometry = Odometry()
    odometry.header.stamp.sec = 42
    odometry.pose.pose.orientation.w = 1.0

    def publish_and_check():
        odom_pub.publish(odometry)
        return received and labels
    assert wait_for(publish_and_check, timeout=30, interval=0.2)
    stamp, control = codec.decode(received[-1])
    assert stamp == 42_000_000_000 and control.throttle > 0.0
    assert label_codec.decode(labels[-1])[0] == 42_000_000_000  # the label is a control
