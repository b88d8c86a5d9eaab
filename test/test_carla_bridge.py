"""The carla_bridge node on a real rclpy graph, against the fake carla module."""
import json

from carla_fakes import install_fake_carla
from llava_drive.control import Control
from llava_drive.nodes.carla_bridge import CarlaBridge
from llava_drive.nodes.control_codec import ControlCodec, stamp_to_ns
from llava_drive.nodes.interfaces import CAMERA_QOS, CONTROL_QOS, LATCHED_QOS
from llava_drive.nodes.interfaces import SIM_EPISODE_TOPIC as EPISODE_TOPIC
from llava_drive.nodes.interfaces import SIM_STATUS_TOPIC as STATUS_TOPIC
from llava_drive.nodes.route_codec import decode_plan, plan_type
from llava_drive.planning import GlobalPlan, RoadOption
from nav_msgs.msg import Path
import pytest
from rclpy.parameter import Parameter
from ros_helpers import wait_for
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import String
from test_carla_session import small_objects

PREFIX = '/carla/ego_vehicle'


def bridge(graph, tmp_path, **params):
    """Add a carla_bridge node with a small camera and no start delay."""
    overrides = {'objects_file': small_objects(tmp_path), 'start_delay': 0.0,
                 'route_seeds': [3], **params}
    return graph.add(CarlaBridge(context=graph.context, parameter_overrides=[
        Parameter(key, value=value) for key, value in overrides.items()]))


class Driver:
    """Answers each image with ``answers`` controls stamped with the image's stamp."""

    def __init__(self, graph, answers=1, throttle=0.6):
        self.node = graph.node('test_driver')
        self.codec = ControlCodec('auto')
        self.publisher = self.node.create_publisher(self.codec.msg_type,
                                                    f'{PREFIX}/vehicle_control_cmd', CONTROL_QOS)
        self.answers, self.throttle = answers, throttle
        self.image_stamps, self.sent = [], []
        self.node.create_subscription(Image, f'{PREFIX}/rgb_front/image', self.on_image,
                                      CAMERA_QOS)

    def on_image(self, msg):
        stamp = stamp_to_ns(msg.header.stamp)
        self.image_stamps.append((stamp, msg.width, msg.height, msg.encoding))
        for _ in range(self.answers):
            self.publisher.publish(self.codec.encode(Control(throttle=self.throttle), stamp))
            self.sent.append(stamp)


def collect(graph, topic, msg_type, qos=10):
    """Return a list that fills with the messages of ``topic``."""
    received = []
    node = graph.node('collect_' + topic.strip('/').replace('/', '_'))
    node.create_subscription(msg_type, topic, received.append, qos)
    return received


@pytest.fixture
def carla(monkeypatch):
    """Start a fake CARLA 0.9.16 server."""
    return install_fake_carla(monkeypatch)


def test_one_tick_per_frame_when_its_control_arrives(ros_graph, carla, tmp_path):
    statuses = collect(ros_graph, STATUS_TOPIC, String)
    infos = collect(ros_graph, f'{PREFIX}/rgb_front/camera_info', CameraInfo, LATCHED_QOS)
    paths = collect(ros_graph, f'{PREFIX}/waypoints', Path, LATCHED_QOS)
    driver = Driver(ros_graph)
    node = bridge(ros_graph, tmp_path)
    assert wait_for(lambda: len(driver.image_stamps) >= 40, timeout=60)
    stamps = [s[0] for s in driver.image_stamps[:40]]
    assert all(b - a == 50_000_000 for a, b in zip(stamps, stamps[1:]))
    assert driver.image_stamps[0][1:] == (64, 48, 'bgra8')
    ticks = len(carla._SERVER.ticks)
    # Every tick after the first frame answered exactly one control, stamped with its frame.
    assert ticks == len(node.controls_for_frame) + 1 or \
        ticks == len(node.controls_for_frame) + 2  # the next tick may be in flight
    assert set(node.controls_for_frame.values()) == {1}
    assert set(node.controls_for_frame) <= set(driver.sent)
    applied = [c[0] for c in carla._SERVER.controls]
    assert len(applied) == len(set(applied))  # one apply_control per CARLA frame
    assert node.control_timeouts == 0 and node.late_controls == 0
    assert wait_for(lambda: infos and paths and statuses)
    assert infos[-1].width == 64 and infos[-1].k[0] == pytest.approx(32.0)
    assert len(paths[-1].poses) > 20
    status = json.loads(statuses[-1].data)
    assert status['route_seed'] == 3 and status['speed'] > 0.0
    assert status['route_completion'] > 0.0


def test_the_global_plan_and_the_episode_marker_carry_the_route(ros_graph, carla, tmp_path):
    plans = collect(ros_graph, f'{PREFIX}/global_plan', plan_type(), LATCHED_QOS)
    episodes = collect(ros_graph, EPISODE_TOPIC, String, LATCHED_QOS)
    Driver(ros_graph)
    node = bridge(ros_graph, tmp_path)
    assert wait_for(lambda: plans and episodes, timeout=60)
    plan = decode_plan(plans[-1])
    assert plan.equals(node.session.plan.sparse(), tolerance=1e-3)
    assert RoadOption.LANEFOLLOW in plan.options and len(plan) >= 2
    start = json.loads(episodes[-1].data)
    assert start['event'] == 'start' and start['route_seed'] == 3
    assert GlobalPlan.from_dict(start['global_plan']).equals(node.session.plan)


def test_a_second_control_for_a_frame_does_not_tick_again(ros_graph, carla, tmp_path):
    driver = Driver(ros_graph, answers=2)
    node = bridge(ros_graph, tmp_path)
    assert wait_for(lambda: len(driver.image_stamps) >= 20, timeout=60)
    assert wait_for(lambda: node.late_controls >= 10, timeout=30)
    # Each image got two controls; the world ticked once per image.
    images = len(driver.image_stamps)
    assert len(carla._SERVER.ticks) in (images, images + 1)
    assert set(node.controls_for_frame.values()) == {1}


def test_without_a_control_it_ticks_with_a_full_brake(ros_graph, carla, tmp_path):
    silent = ros_graph.node('silent_driver')
    silent.create_publisher(ControlCodec('auto').msg_type, f'{PREFIX}/vehicle_control_cmd',
                            CONTROL_QOS)
    node = bridge(ros_graph, tmp_path, control_timeout=0.2)
    assert wait_for(lambda: node.control_timeouts >= 3, timeout=60)
    assert carla._SERVER.controls and all(c[4] == 1.0 and c[2] == 0.0
                                          for c in carla._SERVER.controls)


def test_no_server_and_a_version_mismatch_refuse_to_start(ros_graph, monkeypatch, tmp_path):
    install_fake_carla(monkeypatch, down=True)
    with pytest.raises(ValueError, match=r'no CARLA server answered at localhost:2000'):
        bridge(ros_graph, tmp_path, timeout=2.0)
    install_fake_carla(monkeypatch, server_version='0.9.13')
    with pytest.raises(ValueError, match=r'CARLA server 0\.9\.13 is not supported'):
        bridge(ros_graph, tmp_path)


def test_route_end_publishes_done_and_the_next_episode(ros_graph, carla, tmp_path):
    statuses = collect(ros_graph, STATUS_TOPIC, String, 1000)
    Driver(ros_graph, throttle=0.0)
    bridge(ros_graph, tmp_path, time_limit=1.0, route_seeds=[3, 4])
    assert wait_for(lambda: sum(json.loads(s.data)['done'] for s in statuses) >= 2, timeout=60)
    done = [json.loads(s.data) for s in statuses if json.loads(s.data)['done']]
    assert [d['route_seed'] for d in done[:2]] == [3, 4]
    assert all(d['done_reason'] == 'timeout' for d in done[:2])
