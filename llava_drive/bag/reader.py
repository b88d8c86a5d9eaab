"""
Read image/control pairs from a bag (format v1) with rosbags' AnyReader, no ROS needed.

A pair is an image and a control with equal ``header.stamp``; speed comes from the speedometer
message logged at that stamp and the episode from the latest ``start`` marker. Frames that do
not decode are skipped and counted in :class:`ReadStats`, never fatal.
"""
from collections import Counter
from dataclasses import dataclass, field
import json
import math
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import cv2
from llava_drive.bag import format as bagfmt
from llava_drive.bag.format import BagReadError
from llava_drive.bag.trim import load_exclusions
from llava_drive.control import Control
from llava_drive.image_codec import (decode_compressed, decode_raw, ImageError,
                                     to_rgb)
from llava_drive.nodes.interfaces import SPEEDOMETER_LEAF
import numpy as np
from rosbags.highlevel import AnyReader
from rosbags.interfaces import Connection

IMAGE_TYPES = (bagfmt.COMPRESSED_IMAGE_TYPE, bagfmt.IMAGE_TYPE)
NO_EPISODE = -1


@dataclass
class Pair:
    """
    One training sample: an RGB frame and the control recorded for it.

    :param stamp_ns: header stamp of image and control.
    :param image_rgb: ``H x W x 3`` uint8 RGB, or None when read without decoding.
    :param control: the recorded control.
    :param speed: speed in m/s (NaN when no speedometer message has this stamp).
    :param episode: episode id from the markers, or -1 outside any episode.
    """

    stamp_ns: int
    image_rgb: Optional[np.ndarray]
    control: Control
    speed: float
    episode: int


@dataclass
class ReadStats:
    """What a :func:`read_pairs` pass yielded and skipped (filled in while iterating)."""

    pairs: int = 0
    excluded: int = 0
    unpaired_images: int = 0
    unpaired_controls: int = 0
    undecodable: Counter = field(default_factory=Counter)

    @property
    def skipped(self) -> int:
        """Return the number of pairs skipped because their frame did not decode."""
        return sum(self.undecodable.values())

    def as_dict(self) -> dict:
        """Return the counts as a plain dict."""
        return {'pairs': self.pairs, 'excluded': self.excluded,
                'unpaired_images': self.unpaired_images,
                'unpaired_controls': self.unpaired_controls,
                'undecodable': dict(self.undecodable)}


def _one_line(error: Exception) -> str:
    """Return an error's text on one line (rosbags' YAML errors span several)."""
    return ' '.join(str(error).split()) or type(error).__name__


def _recover_hint(path) -> str:
    return f'try `llava-drive bag recover {path}`'


def check_bag_dir(path) -> Path:
    """
    Return the bag directory, or raise :class:`BagReadError` saying what is missing.

    :param path: bag directory.
    """
    bag_dir = Path(path)
    if not bag_dir.exists():
        raise BagReadError(f'bag {bag_dir} does not exist')
    if not bag_dir.is_dir():
        raise BagReadError(f'bag {bag_dir} is not a directory (a bag is a rosbag2 directory '
                           'with metadata.yaml and an .mcap file)')
    if not (bag_dir / bagfmt.METADATA_FILE).is_file():
        if bagfmt.mcap_files(bag_dir):
            raise BagReadError(f'bag {bag_dir} has no metadata.yaml (the recorder did not close '
                               f'it, e.g. it was killed); {_recover_hint(bag_dir)}')
        raise BagReadError(f'bag {bag_dir} has no metadata.yaml and no .mcap file')
    return bag_dir


class OpenBag:
    """
    An open bag: rosbags AnyReader plus the topics of format v1, as a context manager.

    :param path: bag directory.
    """

    def __init__(self, path):
        self.path = check_bag_dir(path)
        self._reader = AnyReader([self.path], default_typestore=bagfmt.typestore())

    def __enter__(self):
        """Open the storage, turning rosbags' errors into :class:`BagReadError`."""
        try:
            self._reader.open()
        except Exception as error:  # rosbags raises several types for broken files
            raise BagReadError(f'cannot read bag {self.path}: {_one_line(error)}; '
                               f'{_recover_hint(self.path)}') from error
        return self

    def __exit__(self, *exc):
        """Close the storage."""
        self._reader.close()
        return False

    @property
    def reader(self) -> AnyReader:
        """Return the underlying rosbags AnyReader."""
        return self._reader

    def connections(self, msgtypes=(), topic: Optional[str] = None) -> List[Connection]:
        """
        Return connections by message type and/or topic.

        :param msgtypes: accepted message types (any when empty).
        :param topic: accepted topic (any when None).
        """
        return [c for c in self._reader.connections
                if (not msgtypes or c.msgtype in msgtypes) and (topic is None or c.topic == topic)]

    def image_connection(self) -> Optional[Connection]:
        """Return the recorded image connection (compressed preferred), or None."""
        images = self.connections(IMAGE_TYPES)
        images.sort(key=lambda c: (c.msgtype != bagfmt.COMPRESSED_IMAGE_TYPE, c.topic))
        return images[0] if images else None

    def messages(self, connections) -> Iterator[Tuple[Connection, int, object]]:
        """
        Yield ``(connection, log time, deserialized message)`` in log-time order.

        :param connections: connections to read (none: nothing is read).
        """
        if not connections:
            return  # rosbags reads every message of the bag when given an empty list
        try:
            for connection, log_ns, raw in self._reader.messages(connections=connections):
                yield connection, log_ns, self._reader.deserialize(raw, connection.msgtype)
        except BagReadError:
            raise
        except Exception as error:
            raise BagReadError(f'bag {self.path} is corrupt or truncated ({_one_line(error)}); '
                               f'{_recover_hint(self.path)}') from error


def decode_image(message, msgtype: str) -> np.ndarray:
    """
    Return the RGB frame of an Image or CompressedImage, or raise :class:`ImageError`.

    :param message: deserialized image message.
    :param msgtype: its type name.
    """
    if msgtype == bagfmt.COMPRESSED_IMAGE_TYPE:
        return cv2.cvtColor(decode_compressed(message.data), cv2.COLOR_BGR2RGB)
    image = decode_raw(message.encoding, message.height, message.width, message.step,
                       message.data)
    return to_rgb(image, message.encoding)


def read_json_topic(path, topic: str) -> List[Tuple[int, dict]]:
    """
    Return ``(log time, dict)`` for every JSON String message of a topic.

    :param path: bag directory.
    :param topic: e.g. :data:`format.EPISODE_TOPIC`.
    """
    with OpenBag(path) as bag:
        return [(log_ns, _json(message.data))
                for _, log_ns, message in bag.messages(bag.connections(topic=topic))]


def _json(text: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError:
        return {'unparsable': text}
    return value if isinstance(value, dict) else {'value': value}


def read_pairs(path, honour_exclusions: bool = True, decode_images: bool = True,
               stats: Optional[ReadStats] = None) -> Iterator[Pair]:
    """
    Yield the image/control pairs of a bag in stamp order.

    :param path: bag directory.
    :param honour_exclusions: skip pairs excluded by ``exclusions.yaml`` (``bag trim``).
    :param decode_images: decode frames to RGB (False: ``image_rgb`` is None, much faster).
    :param stats: optional :class:`ReadStats` filled in while iterating.
    :raises BagReadError: missing bag or metadata, corrupt or truncated MCAP.
    """
    stats = stats if stats is not None else ReadStats()
    with OpenBag(path) as bag:
        exclusions = load_exclusions(bag.path) if honour_exclusions else None
        image_connection = bag.image_connection()
        if image_connection is None:
            return
        wanted = [image_connection, *bag.connections((bagfmt.CONTROL_TYPE,)),
                  *bag.connections((bagfmt.FLOAT32_TYPE,)),
                  *bag.connections(topic=bagfmt.EPISODE_TOPIC)]
        pairing = _Pairing(image_connection, decode_images, exclusions, stats)
        bucket_ns = None
        bucket = []
        for connection, log_ns, message in bag.messages(wanted):
            if log_ns != bucket_ns:
                yield from pairing.pairs(bucket)
                bucket, bucket_ns = [], log_ns
            bucket.append((connection, message))
        yield from pairing.pairs(bucket)


class _Pairing:
    """Turn the messages logged at one time into pairs, tracking the current episode."""

    def __init__(self, image_connection, decode_images, exclusions, stats: ReadStats):
        self.image_connection = image_connection
        self.decode_images = decode_images
        self.exclusions = exclusions
        self.stats = stats
        self.episode = NO_EPISODE

    def pairs(self, bucket) -> Iterator[Pair]:
        images: Dict[int, object] = {}
        controls: Dict[int, object] = {}
        speed = float('nan')
        ended = False
        for connection, message in bucket:
            if connection.topic == bagfmt.EPISODE_TOPIC:
                event = _json(message.data)
                if event.get('event') == 'start' and isinstance(event.get('episode'), int):
                    self.episode = event['episode']
                elif event.get('event') == 'end':
                    ended = True  # the pairs at the end stamp still belong to the episode
            elif connection is self.image_connection:
                images[bagfmt.stamp_to_ns(message.header.stamp)] = message
            elif connection.msgtype == bagfmt.CONTROL_TYPE:
                controls[bagfmt.stamp_to_ns(message.header.stamp)] = message
            elif connection.topic.rpartition('/')[2] == SPEEDOMETER_LEAF:
                speed = float(message.data)
        self.stats.unpaired_images += len(images.keys() - controls.keys())
        self.stats.unpaired_controls += len(controls.keys() - images.keys())
        for stamp_ns in sorted(images.keys() & controls.keys()):
            pair = self._pair(stamp_ns, images[stamp_ns], controls[stamp_ns], speed)
            if pair is not None:
                yield pair
        if ended:
            self.episode = NO_EPISODE

    def _pair(self, stamp_ns, image_message, control_message, speed) -> Optional[Pair]:
        if self.exclusions is not None and self.exclusions.excludes(stamp_ns, self.episode):
            self.stats.excluded += 1
            return None
        image = None
        if self.decode_images:
            try:
                image = decode_image(image_message, self.image_connection.msgtype)
            except ImageError as error:
                self.stats.undecodable[error.reason] += 1
                return None
        self.stats.pairs += 1
        return Pair(stamp_ns=stamp_ns, image_rgb=image,
                    control=bagfmt.control_from_message(control_message), speed=speed,
                    episode=self.episode)


def count_pairs(path, honour_exclusions: bool = True) -> int:
    """
    Return the number of complete pairs in a bag (frames are not decoded).

    :param path: bag directory.
    :param honour_exclusions: leave out pairs excluded by ``exclusions.yaml``.
    """
    return sum(1 for _ in read_pairs(path, honour_exclusions=honour_exclusions,
                                     decode_images=False))


def read_odometry(path) -> Dict[int, Tuple[float, float, float]]:
    """
    Return the recorded odometry poses by header stamp: ``{stamp_ns: (x, y, yaw)}``.

    The recorder writes one odometry message per pair with the pair's stamp, so a pair's pose
    is ``poses.get(pair.stamp_ns)``. Messages with a non-finite pose are left out.

    :param path: bag directory.
    :raises BagReadError: missing bag or metadata, corrupt or truncated MCAP.
    """
    poses = {}
    with OpenBag(path) as bag:
        for _, _, message in bag.messages(bag.connections((bagfmt.ODOMETRY_TYPE,))):
            position, q = message.pose.pose.position, message.pose.pose.orientation
            yaw = math.atan2(2.0 * (q.w * q.z + q.x * q.y), 1.0 - 2.0 * (q.y * q.y + q.z * q.z))
            pose = (float(position.x), float(position.y), yaw)
            if all(math.isfinite(value) for value in pose):
                poses[bagfmt.stamp_to_ns(message.header.stamp)] = pose
    return poses
