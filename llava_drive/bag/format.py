"""
Bag format v1: topics, message types, serialization and metadata (architecture: Bag format v1).

Messages are serialized with the pure-Python ``rosbags`` typestore, so bags are written and
read the same way with or without a ROS install; ``carla_msgs/msg/CarlaEgoVehicleControl`` is
registered from the package's own ``.msg`` copy because carla_msgs is rarely installed.
"""
from dataclasses import dataclass
import functools
import json
import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from llava_drive.control import Control
from llava_drive.nodes.interfaces import DEFAULT_ROLE_NAME, vehicle_topics
import numpy as np
from rosbags.interfaces import (Qos, QosDurability, QosHistory, QosLiveliness, QosReliability,
                                QosTime)
from rosbags.rosbag2.metadata import dump_qos_v8
from rosbags.typesys import get_types_from_msg, get_typestore, Stores
import yaml

BAG_FORMAT_VERSION = 1
METADATA_VERSION = 8  # Humble cannot read version 9
STORAGE_IDENTIFIER = 'mcap'

DEFAULT_IMAGE_TOPIC = vehicle_topics(DEFAULT_ROLE_NAME).camera_image
# Bag-only topics (not on the live graph): the bag-file contract.
CONTROL_TOPIC = '/llava_drive/control'
EPISODE_TOPIC = '/llava_drive/episode'
RECORDING_INFO_TOPIC = '/llava_drive/recording_info'
# Traffic light states per frame (std_msgs/String JSON as on /carla/<role>/traffic_lights); the
# global plan rides in the episode start marker (its 'global_plan'). Bags without them read.
TRAFFIC_LIGHTS_TOPIC = '/llava_drive/traffic_lights'

IMAGE_TYPE = 'sensor_msgs/msg/Image'
COMPRESSED_IMAGE_TYPE = 'sensor_msgs/msg/CompressedImage'
CONTROL_TYPE = 'carla_msgs/msg/CarlaEgoVehicleControl'
FLOAT32_TYPE = 'std_msgs/msg/Float32'
ODOMETRY_TYPE = 'nav_msgs/msg/Odometry'
STRING_TYPE = 'std_msgs/msg/String'

# metadata.yaml custom_data keys (values are strings, as rosbag2 stores them).
CUSTOM_FORMAT_KEY = 'llava_drive.bag_format'
CUSTOM_RECORDING_INFO_KEY = 'llava_drive.recording_info'
CUSTOM_SUMMARY_KEY = 'llava_drive.summary'

EXCLUSIONS_FILE = 'exclusions.yaml'
METADATA_FILE = 'metadata.yaml'
LOCK_FILE = 'writer.lock'  # flock-held by a live writer, with its pid; removed on close

_CONTROL_MSG = Path(__file__).resolve().parent.parent / 'msg' / 'CarlaEgoVehicleControl.msg'


def compressed_topic(image_topic: str) -> str:
    """
    Return the CompressedImage topic for a raw image topic base.

    :param image_topic: raw image topic, e.g. ``/carla/ego_vehicle/rgb_front/image``.
    """
    return image_topic.rstrip('/') + '/compressed'


def speed_topic(role_name: str = DEFAULT_ROLE_NAME) -> str:
    """
    Return the speedometer topic of a vehicle.

    :param role_name: CARLA role name of the ego vehicle.
    """
    return vehicle_topics(role_name).speedometer


def odometry_topic(role_name: str = DEFAULT_ROLE_NAME) -> str:
    """
    Return the odometry topic of a vehicle.

    :param role_name: CARLA role name of the ego vehicle.
    """
    return vehicle_topics(role_name).odometry


@functools.lru_cache(maxsize=1)
def typestore():
    """Return the shared typestore: rosbags Humble types plus the carla_msgs control."""
    store = get_typestore(Stores.ROS2_HUMBLE)
    store.register(get_types_from_msg(_CONTROL_MSG.read_text(), CONTROL_TYPE))
    return store


@functools.lru_cache(maxsize=None)
def message_definition(msgtype: str) -> Tuple[str, str]:
    """
    Return ``(definition text, RIHS01 hash)`` of a type, as rosbag2 stores them in MCAP.

    :param msgtype: full type name, e.g. ``sensor_msgs/msg/Image``.
    """
    store = typestore()
    text, _ = store.generate_msgdef(msgtype, ros_version=2)
    return text, store.hash_rihs01(msgtype)


def qos_profile_yaml(reliable: bool = True, transient_local: bool = False,
                     depth: int = 10) -> str:
    """
    Return one offered QoS profile in the metadata version 8 string form.

    :param reliable: reliable (True) or best-effort delivery.
    :param transient_local: latched (transient local) durability.
    :param depth: history depth.
    """
    # RMW_DURATION_INFINITE as rosbag2 (Humble+) writes it; {2147483647, 4294967295} is the
    # Foxy-era Fast DDS sentinel that rosbag2 only translates when reading old bags.
    infinite = QosTime(sec=9223372036, nsec=854775807)
    qos = Qos(
        history=QosHistory.KEEP_LAST, depth=depth,
        reliability=QosReliability.RELIABLE if reliable else QosReliability.BEST_EFFORT,
        durability=QosDurability.TRANSIENT_LOCAL if transient_local else QosDurability.VOLATILE,
        deadline=infinite, lifespan=infinite, liveliness=QosLiveliness.AUTOMATIC,
        liveliness_lease_duration=infinite, avoid_ros_namespace_conventions=False)
    return dump_qos_v8([qos])


def topic_qos_yaml(topic: str) -> str:
    """
    Return the QoS profile recorded for one of our topics (latched for the info topics).

    metadata.yaml and the MCAP channel metadata must carry the same string: rosbags matches
    the two connection lists by it, and reads no message of a topic where they differ.

    :param topic: topic name.
    """
    latched = topic in (EPISODE_TOPIC, RECORDING_INFO_TOPIC)
    return qos_profile_yaml(reliable=True, transient_local=latched, depth=10 if latched else 1)


@dataclass(frozen=True)
class OdometrySample:
    """Vehicle odometry as plain data (position, orientation quaternion, twist)."""

    position: Tuple[float, float, float] = (0.0, 0.0, 0.0)
    orientation: Tuple[float, float, float, float] = (0.0, 0.0, 0.0, 1.0)  # x, y, z, w
    linear_velocity: Tuple[float, float, float] = (0.0, 0.0, 0.0)
    angular_velocity: Tuple[float, float, float] = (0.0, 0.0, 0.0)
    frame_id: str = 'map'
    child_frame_id: str = DEFAULT_ROLE_NAME

    def __post_init__(self):
        """Check the vector lengths."""
        for name, size in (('position', 3), ('orientation', 4), ('linear_velocity', 3),
                           ('angular_velocity', 3)):
            if len(getattr(self, name)) != size:
                raise ValueError(f'OdometrySample.{name} needs {size} values, got '
                                 f'{getattr(self, name)!r}')


def ns_to_stamp(stamp_ns: int):
    """
    Return a ``builtin_interfaces/Time`` for a stamp in nanoseconds.

    :param stamp_ns: stamp in nanoseconds since the epoch (or simulation start).
    """
    time_type = typestore().types['builtin_interfaces/msg/Time']
    return time_type(sec=int(stamp_ns // 1_000_000_000), nanosec=int(stamp_ns % 1_000_000_000))


def stamp_to_ns(stamp) -> int:
    """
    Return a ``builtin_interfaces/Time`` as integer nanoseconds.

    :param stamp: message stamp with ``sec`` and ``nanosec``.
    """
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def _header(stamp_ns: int, frame_id: str):
    return typestore().types['std_msgs/msg/Header'](stamp=ns_to_stamp(stamp_ns),
                                                    frame_id=frame_id)


def _serialize(message, msgtype: str) -> bytes:
    return bytes(typestore().serialize_cdr(message, msgtype))


def serialize_control(stamp_ns: int, control: Control, frame_id: str = '') -> bytes:
    """
    Serialize a control as ``carla_msgs/msg/CarlaEgoVehicleControl`` (CDR).

    :param stamp_ns: header stamp (the stamp of the image the control belongs to).
    :param control: the control.
    :param frame_id: header frame id.
    """
    msg_type = typestore().types[CONTROL_TYPE]
    message = msg_type(header=_header(stamp_ns, frame_id), throttle=float(control.throttle),
                       steer=float(control.steer), brake=float(control.brake),
                       hand_brake=bool(control.hand_brake), reverse=bool(control.reverse),
                       gear=0, manual_gear_shift=False)
    return _serialize(message, CONTROL_TYPE)


def control_from_message(message) -> Control:
    """
    Return the plain :class:`Control` of a deserialized CarlaEgoVehicleControl.

    :param message: deserialized control message.
    """
    return Control(steer=float(message.steer), throttle=float(message.throttle),
                   brake=float(message.brake), hand_brake=bool(message.hand_brake),
                   reverse=bool(message.reverse))


def serialize_compressed_image(stamp_ns: int, data: bytes, image_format: str = 'jpeg',
                               frame_id: str = '') -> bytes:
    """
    Serialize an encoded image as ``sensor_msgs/msg/CompressedImage`` (CDR).

    :param stamp_ns: header stamp.
    :param data: encoded image bytes.
    :param image_format: ``format`` field, e.g. ``jpeg``.
    :param frame_id: header frame id.
    """
    msg_type = typestore().types[COMPRESSED_IMAGE_TYPE]
    message = msg_type(header=_header(stamp_ns, frame_id), format=image_format,
                       data=np.frombuffer(data, dtype=np.uint8))
    return _serialize(message, COMPRESSED_IMAGE_TYPE)


def serialize_image(stamp_ns: int, image: np.ndarray, encoding: str,
                    frame_id: str = '') -> bytes:
    """
    Serialize an ``H x W x C`` uint8 array as ``sensor_msgs/msg/Image`` (CDR).

    :param stamp_ns: header stamp.
    :param image: pixels in ``encoding``.
    :param encoding: ROS encoding, kept as received (e.g. ``bgra8``).
    :param frame_id: header frame id.
    """
    image = np.ascontiguousarray(image)
    msg_type = typestore().types[IMAGE_TYPE]
    message = msg_type(header=_header(stamp_ns, frame_id), height=image.shape[0],
                       width=image.shape[1], encoding=encoding, is_bigendian=0,
                       step=image.strides[0], data=image.reshape(-1))
    return _serialize(message, IMAGE_TYPE)


def serialize_float32(value: float) -> bytes:
    """
    Serialize a ``std_msgs/msg/Float32``.

    :param value: the value.
    """
    message = typestore().types[FLOAT32_TYPE](data=float(value))
    return _serialize(message, FLOAT32_TYPE)


def serialize_json_string(info: dict) -> bytes:
    """
    Serialize a dict as JSON in a ``std_msgs/msg/String``.

    :param info: JSON-serializable dict.
    """
    message = typestore().types[STRING_TYPE](data=json.dumps(info, sort_keys=True))
    return _serialize(message, STRING_TYPE)


def serialize_odometry(stamp_ns: int, odometry: OdometrySample) -> bytes:
    """
    Serialize odometry as ``nav_msgs/msg/Odometry`` (zero covariance).

    :param stamp_ns: header stamp.
    :param odometry: the sample.
    """
    types = typestore().types
    vector = types['geometry_msgs/msg/Vector3']
    message = types[ODOMETRY_TYPE](
        header=_header(stamp_ns, odometry.frame_id),
        child_frame_id=odometry.child_frame_id,
        pose=types['geometry_msgs/msg/PoseWithCovariance'](
            pose=types['geometry_msgs/msg/Pose'](
                position=types['geometry_msgs/msg/Point'](*map(float, odometry.position)),
                orientation=types['geometry_msgs/msg/Quaternion'](
                    *map(float, odometry.orientation))),
            covariance=np.zeros(36, dtype=np.float64)),
        twist=types['geometry_msgs/msg/TwistWithCovariance'](
            twist=types['geometry_msgs/msg/Twist'](
                linear=vector(*map(float, odometry.linear_velocity)),
                angular=vector(*map(float, odometry.angular_velocity))),
            covariance=np.zeros(36, dtype=np.float64)))
    return _serialize(message, ODOMETRY_TYPE)


def deserialize(data: bytes, msgtype: str):
    """
    Deserialize CDR bytes of one of the bag's types.

    :param data: serialized message.
    :param msgtype: full type name.
    """
    return typestore().deserialize_cdr(data, msgtype)


@dataclass
class TopicCount:
    """One topic of a bag and its message count, for metadata.yaml."""

    name: str
    msgtype: str
    count: int
    qos_yaml: str = ''
    type_hash: str = ''

    def description_hash(self) -> str:
        """Return the RIHS01 type hash (computed from the typestore when not recorded)."""
        if self.type_hash:
            return self.type_hash
        try:
            return message_definition(self.msgtype)[1]
        except KeyError:
            return ''  # a type our typestore does not know; rosbag2 accepts an empty hash


def build_metadata(relative_path: str, topics: Sequence[TopicCount], start_ns: int,
                   end_ns: int, custom_data: Optional[Dict[str, str]] = None,
                   ros_distro: str = '') -> dict:
    """
    Return the ``metadata.yaml`` content for a single-file MCAP bag (version 8).

    Same fields and layout as rosbag2 (and rosbags' writer) produce for version 8.

    :param relative_path: MCAP file name inside the bag directory.
    :param topics: topics with message counts.
    :param start_ns: first message log time (0 when empty).
    :param end_ns: last message log time.
    :param custom_data: string key/value pairs.
    :param ros_distro: the ROS distro that wrote it (default: ``ROS_DISTRO``, else '' as
        rosbag2 itself stores it when the variable is unset).
    """
    count = sum(topic.count for topic in topics)
    duration = max(0, end_ns - start_ns) if count else 0
    start = start_ns if count else 0
    return {'rosbag2_bagfile_information': {
        'version': METADATA_VERSION,
        'storage_identifier': STORAGE_IDENTIFIER,
        'relative_file_paths': [relative_path],
        'duration': {'nanoseconds': duration},
        'starting_time': {'nanoseconds_since_epoch': start},
        'message_count': count,
        'topics_with_message_count': [
            {'topic_metadata': {'name': topic.name, 'type': topic.msgtype,
                                'serialization_format': 'cdr',
                                'offered_qos_profiles': topic.qos_yaml,
                                'type_description_hash': topic.description_hash()},
             'message_count': topic.count}
            for topic in topics],
        'compression_format': '',
        'compression_mode': '',
        'files': [{'path': relative_path, 'starting_time': {'nanoseconds_since_epoch': start},
                   'duration': {'nanoseconds': duration}, 'message_count': count}],
        # A map even when empty: rosbag2 (Iron+) reads it as a map and refuses null.
        'custom_data': dict(custom_data or {}),
        'ros_distro': ros_distro or os.environ.get('ROS_DISTRO', ''),
    }}


def write_metadata(bag_dir: Path, metadata: dict) -> Path:
    """
    Write ``metadata.yaml`` atomically (temporary file, then rename).

    :param bag_dir: bag directory.
    :param metadata: content from :func:`build_metadata`.
    """
    target = Path(bag_dir) / METADATA_FILE
    temporary = target.with_suffix('.yaml.tmp')
    temporary.write_text(yaml.safe_dump(metadata, default_flow_style=False, sort_keys=False))
    os.replace(temporary, target)
    return target


class BagReadError(Exception):
    """A bag that cannot be read: missing, without metadata, or with a broken MCAP."""


class MetadataError(BagReadError, ValueError):
    """A ``metadata.yaml`` that is not valid YAML or not a rosbag2 bag information mapping."""


def read_metadata(bag_dir: Path) -> Optional[dict]:
    """
    Return the ``rosbag2_bagfile_information`` mapping, or None without metadata.yaml.

    :param bag_dir: bag directory.
    :raises MetadataError: the file is damaged (one line naming it and the problem).
    """
    path = Path(bag_dir) / METADATA_FILE
    if not path.is_file():
        return None
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        problem = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise MetadataError(f'{path} cannot be read ({problem}); try `llava-drive bag '
                            f'recover {path.parent}`') from None
    information = document.get('rosbag2_bagfile_information') if isinstance(
        document, dict) else None
    if not isinstance(information, dict):
        raise MetadataError(f'{path} is not rosbag2 metadata (no rosbag2_bagfile_information '
                            f'mapping in a {type(document).__name__}); try `llava-drive bag '
                            f'recover {path.parent}` after moving it away')
    return information


def custom_json(metadata: Optional[dict], key: str) -> Optional[dict]:
    """
    Return a JSON value stored in metadata ``custom_data``, or None.

    :param metadata: ``rosbag2_bagfile_information`` mapping (or None).
    :param key: custom_data key.
    """
    custom = (metadata or {}).get('custom_data') or {}
    try:
        return json.loads(custom[key]) if key in custom else None
    except ValueError:
        return None


def mcap_files(bag_dir: Path) -> List[Path]:
    """
    Return the MCAP files of a bag directory, sorted by name.

    :param bag_dir: bag directory.
    """
    return sorted(Path(bag_dir).glob('*.mcap'))
