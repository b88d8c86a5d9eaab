"""
Hostile traffic into a live recorder and a live policy on one real rclpy graph.

A seeded generator interleaves valid steps (a frame, then its label) with a few hundred
malformed images, controls, speeds, odometry and episode markers. Every message is sent in
lock step: the next one goes out once both nodes have taken the last one (the policy's camera,
speed and odometry subscriptions keep only the newest message). Both nodes must stay alive,
count every bad message under the reason it deserves, and the recorder's bag, read back with
the package's reader, must hold exactly the valid pairs.
"""
from collections import Counter
import json
import math

from fixtures_llava import tiny_llava_dir  # noqa: F401 (a fixture)
from llava_drive.bag import format as bagfmt
from llava_drive.bag.reader import read_json_topic, read_pairs
from llava_drive.control import Control
from llava_drive.image_codec import MAX_ROW_PADDING, MAX_SIDE, raw_fields
from llava_drive.nodes.control_codec import ControlCodec, ns_to_stamp
from llava_drive.nodes.interfaces import (CONTROL_QOS, DEFAULT_ROLE_NAME, EXPERT_CONTROL_TOPIC,
                                          private_name, RECORDER_FRAME_DONE_TOPIC,
                                          RECORDER_NODE, RECORDER_STOP, reliable_qos,
                                          SIM_EPISODE_TOPIC, vehicle_topics)
from nav_msgs.msg import Odometry
import numpy as np
import pytest
from ros_helpers import Spinners, wait_for
from sensor_msgs.msg import Image
from std_msgs.msg import Float32, Header, String
from std_srvs.srv import Trigger

SEED = 20261203
STEPS = 50
STEP_NS = 50_000_000
TOPICS = vehicle_topics(DEFAULT_ROLE_NAME)
HEIGHT, WIDTH = 24, 32  # a valid frame: within the image bounds, cheap for the tiny model


def stamp(k: int) -> int:
    """Return the stamp of valid step ``k``."""
    return 1_000_000_000 + k * STEP_NS


def image(stamp_ns, encoding='bgra8', height=HEIGHT, width=WIDTH, step=None, data=None):
    """Return an Image; by default a valid bgra8 frame."""
    msg = Image(encoding=encoding)
    ns_to_stamp(stamp_ns, msg.header.stamp)
    pixels = np.full((HEIGHT, WIDTH, 4), stamp_ns // STEP_NS % 256, np.uint8)
    msg.height, msg.width, msg.step, pixels = raw_fields(pixels)
    msg.height, msg.width = height, width
    msg.step = step if step is not None else width * 4
    msg.data = data if data is not None else pixels
    return msg


def odometry(x, orientation=(0.0, 0.0, 0.0, 1.0), twist_x=0.0):
    """Return an Odometry at (x, 0) with the given orientation and forward speed."""
    msg = Odometry()
    msg.pose.pose.position.x = x
    q = msg.pose.pose.orientation
    q.x, q.y, q.z, q.w = orientation
    msg.twist.twist.linear.x = twist_x
    return msg


def marker(**changes):
    """Return a valid episode marker with ``changes`` applied."""
    info = {'version': 1, 'event': 'start', 'episode': 0, 'route_seed': 1, 'stamp_ns': stamp(0)}
    info.update(changes)
    return String(data=json.dumps(info))


# Bad images: (kind, message for step stamp, reason counted by both nodes). Every one is
# refused by image_codec before it is used.
BAD_IMAGES = {
    'yuv422': (lambda s: image(s, encoding='yuv422'), 'unsupported_encoding'),
    '16UC1': (lambda s: image(s, encoding='16UC1'), 'unsupported_encoding'),
    'no data': (lambda s: image(s, data=b''), 'empty_image'),
    'zero size': (lambda s: image(s, height=0, width=0, step=0, data=b''), 'empty_image'),
    '1x600': (lambda s: image(s, height=600, width=1, step=4, data=bytes(2400)),
              'image_too_small'),
    '600x1': (lambda s: image(s, height=1, width=600, data=bytes(2400)), 'image_too_small'),
    'huge': (lambda s: image(s, encoding='mono8', height=600, width=MAX_SIDE + 1,
                             step=MAX_SIDE + 1, data=b'\0'), 'image_too_large'),
    '16x400': (lambda s: image(s, height=16, width=400, data=bytes(16 * 1600)),
               'bad_aspect_ratio'),
    'truncated': (lambda s: image(s, data=bytes(HEIGHT * WIDTH * 4 - 100)), 'truncated_image'),
    'short step': (lambda s: image(s, step=WIDTH * 4 - 1), 'truncated_image'),
    'huge step': (lambda s: image(s, step=2 ** 31), 'bad_step'),
    'padded step': (lambda s: image(s, step=WIDTH * 4 + MAX_ROW_PADDING + 4,
                                    data=bytes(HEIGHT * (WIDTH * 4 + MAX_ROW_PADDING + 4))),
                    'bad_step'),
    'extra data': (lambda s: image(s, data=bytes(HEIGHT * WIDTH * 4 + 1)),
                   'data_size_mismatch'),
}
FAR_NS = 10 ** 6 * 10 ** 9  # 11.6 days: beyond the recorder's max_stamp_gap
# Valid pixels with a stamp the recorder refuses (the policy drives on the newest frame and
# takes them): (kind, stamp from (k, previous valid stamp), recorder reason).
BAD_STAMPED_IMAGES = {
    'duplicate': (lambda k: stamp(k), 'duplicate_stamp'),
    'backwards': (lambda k: stamp(k - 1), 'backwards_stamp'),
    'far future': (lambda k: stamp(k) + FAR_NS, 'implausible_image_stamp'),
    'far past': (lambda k: stamp(k) - FAR_NS, 'implausible_image_stamp'),
}
# Bad labels: (kind, Control, recorder reason); sent stamped between two valid frames.
BAD_CONTROLS = {
    'nan steer': (Control(steer=math.nan), 'nan_control'),
    'inf throttle': (Control(throttle=math.inf), 'nan_control'),
    '-inf brake': (Control(brake=-math.inf), 'nan_control'),
    'huge steer': (Control(steer=1e30), 'control_out_of_range'),
    'throttle 1.5': (Control(throttle=1.5), 'control_out_of_range'),
    'brake -0.5': (Control(brake=-0.5), 'control_out_of_range'),
}
BAD_MARKERS = {
    'not json': (String(data='{"event": "start"'), 'episode_marker_not_json'),
    'list': (String(data='[1, 2]'), 'episode_marker_not_an_object'),
    'number': (String(data='7'), 'episode_marker_not_an_object'),
    'null': (String(data='null'), 'episode_marker_not_an_object'),
    'negative stamp': (marker(stamp_ns=-1), 'episode_marker_out_of_range'),
    'stamp beyond int64': (marker(stamp_ns=2 ** 64), 'episode_marker_out_of_range'),
    'huge stamp': (marker(stamp_ns=2 ** 62), 'episode_marker_implausible_stamp'),
    'string stamp': (marker(stamp_ns='1'), 'episode_marker_bad_type'),
    'bool episode': (marker(episode=True), 'episode_marker_bad_type'),
    'unknown event': (marker(event='pause'), 'episode_marker_out_of_range'),
    'missing field': (String(data=json.dumps({'version': 1, 'event': 'start'})),
                      'episode_marker_missing_field'),
    'unknown field': (marker(colour='red'), 'episode_marker_unknown_field'),
}
KINDS = (['image'] * 5 + ['stamped image'] * 2 + ['control'] * 3 + ['malformed control',
         'backwards control', 'future control', 'speed', 'odometry', 'marker', 'marker'])


@pytest.fixture(scope='module')
def constant_checkpoint(tiny_llava_dir, tmp_path_factory):  # noqa: F811
    """Save a head that always says steer 0, throttle 0.62, brake 0.02; return its path."""
    import torch
    from llava_drive.features.extractor import LlavaFeatureExtractor
    from llava_drive.learning.checkpoint import save_checkpoint
    from llava_drive.learning.heads import build_head, HeadConfig

    extractor = LlavaFeatureExtractor(tiny_llava_dir)
    head = build_head(HeadConfig(feature_dim=extractor.feature_dim, hidden_size=8))
    with torch.no_grad():
        head.layers[-1].weight.zero_()
        head.layers[-1].bias.copy_(torch.tensor([0.0, 0.5, -4.0]))
    return save_checkpoint(tmp_path_factory.mktemp('fuzz') / 'constant', head, extractor.spec)


def total(counter_of) -> int:
    """Sum a node's counter read from another thread (retry while it is being updated)."""
    while True:
        try:
            return sum(counter_of().values())
        except RuntimeError:  # dictionary changed size during iteration
            continue


def test_hostile_traffic_is_counted_by_reason_and_only_valid_pairs_are_written(
        ros_graph, constant_checkpoint, tmp_path):
    from llava_drive.nodes.policy import Policy
    from llava_drive.nodes.recorder import Recorder
    from rclpy.parameter import Parameter

    spinners = Spinners(ros_graph.context)
    bag = tmp_path / 'bag'
    try:
        recorder = spinners.start(Recorder(context=ros_graph.context, parameter_overrides=[
            Parameter('bag_path', value=str(bag)), Parameter('control_wire', value='joy')]))
        policy = spinners.start(Policy(context=ros_graph.context, parameter_overrides=[
            Parameter('checkpoint', value=str(constant_checkpoint)),
            Parameter('cpu_threads', value=1), Parameter('control_wire', value='joy'),
            Parameter('expert_label_topic', value=''), Parameter('max_age', value=30.0)]))
        _fuzz(ros_graph, spinners, recorder, policy, bag)
    finally:
        spinners.stop_all()


def _fuzz(ros_graph, spinners, recorder, policy, bag):
    rng = np.random.default_rng(SEED)
    codec = ControlCodec('joy')
    peer = ros_graph.node('fuzzer')
    images = peer.create_publisher(Image, TOPICS.camera_image, reliable_qos(10))
    labels = peer.create_publisher(codec.msg_type, EXPERT_CONTROL_TOPIC, CONTROL_QOS)
    speeds = peer.create_publisher(Float32, TOPICS.speedometer, reliable_qos(10))
    odometries = peer.create_publisher(Odometry, TOPICS.odometry, reliable_qos(10))
    markers = peer.create_publisher(String, SIM_EPISODE_TOPIC, reliable_qos(10))
    acks, answered = [], []
    peer.create_subscription(Header, RECORDER_FRAME_DONE_TOPIC, acks.append, CONTROL_QOS)
    peer.create_subscription(codec.msg_type, TOPICS.vehicle_control_cmd,
                             lambda msg: answered.append(codec.decode(msg)[0]), CONTROL_QOS)
    publishers = {images: (recorder, policy), labels: (recorder,), speeds: (recorder, policy),
                  odometries: (recorder, policy), markers: (recorder,)}
    # A sample sent before a reader matched its writer can be lost: wait for every match.
    assert wait_for(lambda: all(pub.get_subscription_count() >= len(nodes)
                                and all(node.count_publishers(pub.topic_name)
                                        for node in nodes)
                                for pub, nodes in publishers.items())
                    and peer.count_publishers(RECORDER_FRAME_DONE_TOPIC)
                    and recorder.done_pub.get_subscription_count(), timeout=60)
    recorder_rejected = lambda: recorder.summary(include_writer=True)['rejected']  # noqa: E731
    expected = {'recorder': Counter(), 'policy': Counter()}
    sent_bad = Counter()

    def settled(recorder_count=None, policy_count=None, policy_check=None):
        """Wait until both nodes took the last message (lock step; generous deadlines)."""
        if recorder_count is not None:
            assert wait_for(lambda: total(recorder_rejected) == recorder_count, timeout=30,
                            interval=0.002), (recorder_rejected(), expected['recorder'])
        if policy_count is not None:
            assert wait_for(lambda: total(lambda: policy.rejected) == policy_count,
                            timeout=30, interval=0.002), (policy.rejected, expected['policy'])
        if policy_check is not None:
            assert wait_for(policy_check, timeout=30, interval=0.002)

    def bad(kind, recorder_reason=None, policy_reason=None):
        """Count one bad message as each node must count it."""
        sent_bad[kind] += 1
        if recorder_reason:
            expected['recorder'][recorder_reason] += 1
        if policy_reason:
            expected['policy'][policy_reason] += 1

    def send_image(msg, policy_takes: bool):
        before = policy.gate.image_received
        images.publish(msg)
        count = len(acks) + 1
        assert wait_for(lambda: len(acks) >= count, timeout=30, interval=0.002)  # every image
        settled(sum(expected['recorder'].values()), sum(expected['policy'].values()),
                (lambda: policy.gate.image_received != before) if policy_takes else None)

    def choice(table):
        return list(table)[rng.integers(len(table))]

    valid = []  # (stamp, Control) of every pair that must be in the bag
    # Hand-shakes: a best-effort reader may match its writer a moment after the writer
    # matched it, so the first valid speed and frame are repeated until both nodes have them
    # (a repeated frame is a duplicate stamp for the recorder).
    speed_value = float(np.float32(5.0))
    assert wait_for(lambda: speeds.publish(Float32(data=speed_value)) or
                    recorder.speed == speed_value == policy.speed, timeout=60, interval=0.2)
    for repeat in range(30):
        if repeat:
            expected['recorder']['duplicate_stamp'] += 1
        send_image(image(stamp(0)), policy_takes=False)
        if wait_for(lambda: policy.gate.image_received is not None, timeout=2):
            break
    assert policy.gate.image_received is not None, 'the policy never took a frame'
    markers.publish(marker())  # a valid start marker: written
    x = 0.0
    for k in range(STEPS + 1):
        if k:
            send_image(image(stamp(k)), policy_takes=True)
        bad_stamp = stamp(k) - STEP_NS // 2  # bad labels sit between two valid frames
        for _ in range(int(rng.integers(3, 10)) if 0 < k < STEPS else 0):
            kind = KINDS[rng.integers(len(KINDS))]
            if kind == 'image':
                name = choice(BAD_IMAGES)
                make, reason = BAD_IMAGES[name]
                bad(f'image {name}', reason, reason)
                send_image(make(stamp(k)), policy_takes=False)
            elif kind == 'stamped image':
                name = choice(BAD_STAMPED_IMAGES)
                stamp_of, reason = BAD_STAMPED_IMAGES[name]
                bad(f'image {name}', reason)
                send_image(image(stamp_of(k)), policy_takes=True)
            elif kind == 'control':
                name = choice(BAD_CONTROLS)
                control, reason = BAD_CONTROLS[name]
                bad(f'control {name}', reason)
                bad_stamp += 1
                labels.publish(codec.encode(control, bad_stamp))
                settled(sum(expected['recorder'].values()))
            elif kind == 'malformed control':
                msg = codec.encode(Control(), bad_stamp)
                msg.axes = msg.axes[:int(rng.integers(3))]
                bad('control with < 3 axes', 'malformed_control')
                labels.publish(msg)
                settled(sum(expected['recorder'].values()))
            elif kind == 'backwards control':
                bad('control backwards', 'backwards_control_stamp')
                labels.publish(codec.encode(Control(), stamp(k - 1) - 1))
                settled(sum(expected['recorder'].values()))
            elif kind == 'future control':
                bad('control far future', 'implausible_control_stamp')
                labels.publish(codec.encode(Control(), stamp(k) + FAR_NS))
                settled(sum(expected['recorder'].values()))
            elif kind == 'speed':
                value = [math.nan, math.inf, -math.inf][rng.integers(3)]
                bad(f'speed {value}', 'speed_not_finite', 'speed_not_finite')
                speeds.publish(Float32(data=value))
                settled(sum(expected['recorder'].values()), sum(expected['policy'].values()))
                speed_value = float(np.float32(rng.uniform(0.0, 20.0)))  # and a valid one
                speeds.publish(Float32(data=speed_value))
                settled(policy_check=lambda: recorder.speed == speed_value == policy.speed)
            elif kind == 'odometry':
                x += 1.0
                which = int(rng.integers(3))
                if which == 0:
                    bad('odometry nan position', 'odometry_not_finite', 'odometry_not_finite')
                    odometries.publish(odometry(math.nan))
                    settled(sum(expected['recorder'].values()), sum(expected['policy'].values()))
                elif which == 1:
                    bad('odometry nan orientation', 'odometry_not_finite',
                        'odometry_not_finite')
                    odometries.publish(odometry(x, orientation=(0.0, 0.0, math.nan, 1.0)))
                    settled(sum(expected['recorder'].values()), sum(expected['policy'].values()))
                else:  # the policy uses only the pose: a bad twist is the recorder's concern
                    bad('odometry inf twist', 'odometry_not_finite')
                    odometries.publish(odometry(x, twist_x=math.inf))
                    settled(sum(expected['recorder'].values()),
                            policy_check=lambda: policy.pose is not None and
                            policy.pose[0] == x)
                x += 1.0
                odometries.publish(odometry(x))  # and a valid one
                settled(policy_check=lambda: recorder.odometry is not None and
                        recorder.odometry.position[0] == x and policy.pose[0] == x)
            else:
                name = choice(BAD_MARKERS)
                msg, reason = BAD_MARKERS[name]
                bad(f'marker {name}', reason)
                markers.publish(msg)
                settled(sum(expected['recorder'].values()))
        label = Control(steer=float(np.float32(rng.uniform(-0.5, 0.5))),
                        throttle=float(np.float32(rng.uniform(0.0, 1.0))))
        labels.publish(codec.encode(label, stamp(k)))
        valid.append((stamp(k), label))
        assert wait_for(lambda: recorder.pairs_written == len(valid), timeout=30,
                        interval=0.002), (recorder.summary(), len(valid))
    markers.publish(marker(event='end', stamp_ns=stamp(STEPS)))  # a valid end marker
    assert wait_for(lambda: recorder.writer.counts.get(bagfmt.EPISODE_TOPIC) == 2, timeout=30)

    print(f'fuzz: {sum(sent_bad.values())} bad messages, {len(valid)} valid pairs; '
          f'{dict(sorted(sent_bad.items()))}')
    assert sum(sent_bad.values()) >= 200
    # Both nodes alive: still spinning, the policy still answers frames.
    assert spinners.alive(recorder) and spinners.alive(policy)
    assert wait_for(lambda: stamp(STEPS) in answered, timeout=60), answered[-5:]
    # Every rejection counted under its reason, nothing else refused.
    assert recorder_rejected() == dict(expected['recorder'])
    assert dict(policy.rejected) == dict(expected['policy'])

    client = peer.create_client(Trigger, private_name(RECORDER_NODE, RECORDER_STOP))
    assert client.wait_for_service(timeout_sec=30)
    future = client.call_async(Trigger.Request())
    assert wait_for(future.done, timeout=60)
    assert future.result().success, future.result().message
    # The bag holds exactly the valid pairs, with their labels, and the two valid markers.
    pairs = list(read_pairs(bag))
    assert [p.stamp_ns for p in pairs] == [s for s, _ in valid]
    for pair, (_, label) in zip(pairs, valid):
        assert pair.control.as_array() == pytest.approx(label.as_array(), abs=1e-6)
        assert math.isfinite(pair.speed)
        assert pair.image_rgb.shape == (HEIGHT, WIDTH, 3)
    events = [(m['event'], m['stamp_ns'])
              for _, m in read_json_topic(bag, bagfmt.EPISODE_TOPIC)]
    assert events == [('start', stamp(0)), ('end', stamp(STEPS))]
    summary = read_json_topic(bag, bagfmt.RECORDING_INFO_TOPIC)[-1][1]
    assert summary['rejected'] == dict(expected['recorder'])
    assert summary['pairs_written'] == len(valid)
