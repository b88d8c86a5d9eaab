"""The recorder node on a real rclpy graph: bad input is counted, never written, never fatal."""
import json
import math

from llava_drive.bag import format as bagfmt
from llava_drive.bag.reader import read_json_topic, read_pairs
from llava_drive.control import Control
from llava_drive.image_codec import raw_fields
from llava_drive.nodes.control_codec import ControlCodec, ns_to_stamp
from llava_drive.nodes.interfaces import CONTROL_QOS, reliable_qos
from llava_drive.nodes.recorder import Recorder
import numpy as np
from rclpy.parameter import Parameter
from ros_helpers import wait_for
from sensor_msgs.msg import Image
from std_msgs.msg import Float32, String
from std_srvs.srv import Trigger

IMAGE_TOPIC = '/carla/ego_vehicle/rgb_front/image'
LABEL_TOPIC = '/llava_drive/expert/control'


def stamp(k):
    """Return the stamp of step ``k``: 1 s + k x 50 ms."""
    return 1_000_000_000 + k * 50_000_000


def frame(k, encoding='bgra8', width=32, height=24, cut=0):
    """Return a camera message at step ``k`` (``cut`` bytes removed from its data)."""
    pixels = np.full((height, width, 4), k * 10 % 256, np.uint8)
    msg = Image(encoding=encoding)
    ns_to_stamp(stamp(k), msg.header.stamp)
    msg.height, msg.width, msg.step, data = raw_fields(pixels)
    msg.data = data[:len(data) - cut] if width else b''
    if not width:
        msg.height = msg.width = msg.step = 0
    return msg


def test_bad_input_is_counted_not_written_and_recording_continues(ros_graph, tmp_path):
    bag = tmp_path / 'bag'
    recorder = ros_graph.add(Recorder(context=ros_graph.context, parameter_overrides=[
        Parameter('bag_path', value=str(bag)), Parameter('status_period', value=0.05),
        Parameter('control_wire', value='joy')]))
    codec = ControlCodec('joy')
    peer = ros_graph.node('peer')
    images = peer.create_publisher(Image, IMAGE_TOPIC, reliable_qos(100))
    controls = peer.create_publisher(codec.msg_type, LABEL_TOPIC, CONTROL_QOS)
    speed = peer.create_publisher(Float32, '/carla/ego_vehicle/speedometer', reliable_qos(10))
    statuses = []
    peer.create_subscription(String, '/recorder/status',
                             lambda m: statuses.append(json.loads(m.data)), 10)
    assert wait_for(lambda: images.get_subscription_count() and controls.get_subscription_count()
                    and speed.get_subscription_count() and statuses)
    speed.publish(Float32(data=5.0))
    assert wait_for(lambda: recorder.speed == 5.0)

    def send(k, image=None, control=Control(steer=0.1, throttle=0.5)):
        images.publish(image or frame(k))
        if control is not None:
            controls.publish(codec.encode(control, stamp(k)))

    for k in (1, 2, 3):
        send(k)
    send(4, frame(4, encoding='yuv422'))                 # unsupported_encoding
    send(5, frame(5, width=0))                           # empty_image
    send(6, frame(6, cut=100))                           # truncated_image
    send(7, control=Control(steer=math.nan))             # nan_control + invalid_label
    send(8)
    send(9, control=Control(throttle=1.5))               # control_out_of_range + invalid_label
    send(10)
    images.publish(frame(10))                            # duplicate_stamp
    images.publish(frame(5))                             # backwards_stamp
    send(20, control=None)                               # control_too_old (label of step 10)
    send(22, control=None)                               # paired with the label of step 21
    controls.publish(codec.encode(Control(), stamp(21)))
    for k in (30, 31, 32):
        send(k)                                          # recording continues
    assert wait_for(lambda: statuses[-1]['pairs_written'] == 9 and
                    statuses[-1]['rejected'].get('control_too_old') == 1)

    client = peer.create_client(Trigger, '/recorder/stop')
    assert client.wait_for_service(timeout_sec=5)
    response = wait_for(lambda: client.call_async(Trigger.Request()), timeout=1)
    assert wait_for(lambda: response.done(), timeout=10)
    assert response.result().success, response.result().message

    written = [p.stamp_ns for p in read_pairs(bag)]
    assert written == [stamp(k) for k in (1, 2, 3, 8, 10, 22, 30, 31, 32)]
    expected = {'unsupported_encoding': 1, 'empty_image': 1, 'truncated_image': 1,
                'nan_control': 1, 'control_out_of_range': 1, 'invalid_label': 2,
                'duplicate_stamp': 1, 'backwards_stamp': 1, 'control_too_old': 1}
    summary = read_json_topic(bag, bagfmt.RECORDING_INFO_TOPIC)[-1][1]
    for reason, count in expected.items():
        assert summary['rejected'].get(reason) == count, (reason, summary)
    assert summary['pairs_written'] == len(written)


def start_recorder(ros_graph, bag, **overrides):
    """Return a recorder writing ``bag`` and a peer node publishing to it."""
    params = dict(bag_path=str(bag), status_period=0.05, control_wire='joy', **overrides)
    recorder = ros_graph.add(Recorder(context=ros_graph.context, parameter_overrides=[
        Parameter(name, value=value) for name, value in params.items()]))
    return recorder, ros_graph.node('peer')


def stop(peer):
    """Call ``/recorder/stop`` and return the response."""
    client = peer.create_client(Trigger, '/recorder/stop')
    assert client.wait_for_service(timeout_sec=30)
    future = client.call_async(Trigger.Request())
    assert wait_for(future.done, timeout=30)
    return future.result()


def test_hostile_episode_markers_and_stamps_never_reach_the_bag(ros_graph, tmp_path):
    bag = tmp_path / 'bag'
    recorder, peer = start_recorder(ros_graph, bag)
    codec = ControlCodec('joy')
    images = peer.create_publisher(Image, IMAGE_TOPIC, reliable_qos(100))
    controls = peer.create_publisher(codec.msg_type, LABEL_TOPIC, CONTROL_QOS)
    markers = peer.create_publisher(String, '/llava_drive/sim/episode', reliable_qos(100))
    speed = peer.create_publisher(Float32, '/carla/ego_vehicle/speedometer', reliable_qos(10))
    # Both sides matched: a sample sent before the reader matched the writer can be lost.
    topics = (IMAGE_TOPIC, LABEL_TOPIC, '/llava_drive/sim/episode',
              '/carla/ego_vehicle/speedometer')
    assert wait_for(lambda: images.get_subscription_count() and controls.get_subscription_count()
                    and markers.get_subscription_count() and speed.get_subscription_count()
                    and all(recorder.count_publishers(topic) for topic in topics), timeout=30)
    speed.publish(Float32(data=3.0))
    assert wait_for(lambda: recorder.speed == 3.0, timeout=30)

    def marker(**changes):
        info = {'version': 1, 'event': 'start', 'episode': 0, 'route_seed': 1,
                'stamp_ns': stamp(1)}
        info.update(changes)
        return String(data=json.dumps(info))

    def send(k, stamp_ns=None):
        msg = frame(k)
        if stamp_ns is not None:
            ns_to_stamp(stamp_ns, msg.header.stamp)
        images.publish(msg)
        controls.publish(codec.encode(Control(steer=0.1), stamp_ns or stamp(k)))

    markers.publish(marker())                                     # written
    send(1)
    assert wait_for(lambda: recorder.pairs_written == 1, timeout=30)
    far_future = stamp(2) + 63 * 365 * 86400 * 10**9
    hostile = [marker(stamp_ns=-1), marker(stamp_ns=2 ** 64), marker(stamp_ns='1'),
               String(data='[1, 2]'), String(data='{"event": "start"'), String(data='7'),
               marker(event='pause'), marker(episode=True),
               marker(stamp_ns=far_future)]                     # implausible_stamp
    for msg in hostile:
        markers.publish(msg)
    send(2, stamp_ns=far_future)                                  # implausible image stamp
    for k in (3, 4, 5):
        send(k)
    markers.publish(marker(event='end', stamp_ns=stamp(5)))        # written
    assert wait_for(lambda: recorder.pairs_written == 4, timeout=30), recorder.summary()
    expected = {'episode_marker_out_of_range': 3, 'episode_marker_bad_type': 2,
                'episode_marker_not_an_object': 2, 'episode_marker_not_json': 1,
                'episode_marker_implausible_stamp': 1, 'implausible_image_stamp': 1,
                'implausible_control_stamp': 1}
    assert wait_for(lambda: recorder.summary()['rejected'] == expected, timeout=30), \
        recorder.summary()
    assert stop(peer).success
    assert [p.stamp_ns for p in read_pairs(bag)] == [stamp(k) for k in (1, 3, 4, 5)]
    written = [info for _, info in read_json_topic(bag, bagfmt.EPISODE_TOPIC)]
    assert [(m['event'], m['stamp_ns']) for m in written] == [
        ('start', stamp(1)), ('end', stamp(5))]
