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
