"""
Crash-safe writer of bag format v1: image/control pairs into a rosbag2 MCAP directory.

The default storage backend writes MCAP with the ``mcap`` library and flushes a chunk every
``flush_interval_s`` (from a small background thread, so a SIGKILL loses at most that interval
even when pairs stop arriving); ``metadata.yaml`` is written on :meth:`BagWriter.close`.

A failed write (full disk, file size limit, an exception inside the MCAP writer) never leaves
the bag half-closed: the file is cut back to the end of the last flushed chunk (chunks are only
closed by :meth:`BagWriter.flush`, so a pair never straddles two chunks), ended with a footer,
and ``metadata.yaml`` is written for what is on disk; :attr:`BagWriter.loss` says exactly what
was acknowledged but lost. While open, ``writer.lock`` in the bag directory holds an exclusive
``flock`` and the writer's pid, so ``bag recover`` can refuse a bag that is still being written.
Where ``rosbag2_py`` is importable (a sourced ROS 2 install) it is used instead
(architecture: Bag format v1); both get the same CDR bytes from :mod:`llava_drive.bag.format`.
"""
from dataclasses import dataclass
import fcntl
import importlib
import json
import logging
import os
from pathlib import Path
import socket
import threading
import time
from typing import Dict, Optional
import weakref

import cv2
from llava_drive import __version__
from llava_drive.bag import format as bagfmt
from llava_drive.control import Control
from llava_drive.image_codec import CHANNELS, ImageError, to_bgr
from mcap.data_stream import RecordBuilder
from mcap.records import Channel as McapChannel, DataEnd, Footer, Schema as McapSchema
from mcap.writer import CompressionType, Writer
import numpy as np
import yaml

LOG = logging.getLogger(__name__)

IMAGE_FORMATS = ('jpeg', 'raw')
BACKENDS = ('auto', 'mcap', 'rosbag2_py')
CHUNK_COMPRESSIONS = ('none', 'zstd', 'lz4')
LOCK_FILE = bagfmt.LOCK_FILE
MAX_STAMP_NS = 2 ** 63 - 1  # rosbag2 stores time as int64 nanoseconds; MCAP as uint64
MCAP_MAGIC = b'\x89MCAP0\r\n'
# Chunks are closed by BagWriter.flush only (see the module docstring).
_NO_AUTOMATIC_CHUNKS = 2 ** 62


class BagWriteError(OSError):
    """
    Writing to the bag failed (disk full, file too large, unwritable, MCAP writer error).

    ``errno`` is the OS error number, or None when the MCAP writer itself raised.
    """

    def __init__(self, path, error: Exception):
        reason = getattr(error, 'strerror', None) or f'{type(error).__name__}: {error}'
        number = getattr(error, 'errno', None)
        message = f'cannot write bag {path}: {reason}'
        super().__init__(*((message,) if number is None else (number, message)))
        self.path = Path(path)
        self.os_error = error


class SampleRejected(ValueError):
    """A pair not written because it is unusable; ``reason`` is a counter key."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f'{reason}: {detail}')
        self.reason = reason


@dataclass
class BagWriterConfig:
    """
    Where and how to write one bag.

    :param path: bag directory to create (``bags/<run>``).
    :param image_format: ``jpeg`` (CompressedImage on ``<image_topic>/compressed``) or ``raw``.
    :param jpeg_quality: cv2 JPEG quality, 1..100.
    :param image_topic: raw image topic base.
    :param role_name: CARLA role name for the speedometer and odometry topics.
    :param flush_interval_s: close the open MCAP chunk and flush at least this often.
    :param fsync: also ``os.fsync`` after each flush (survives power loss, costs I/O).
    :param backend: ``auto`` (rosbag2_py when importable), ``mcap`` or ``rosbag2_py``.
    :param chunk_compression: MCAP chunk compression for the mcap backend; JPEG frames do not
        compress further, so ``none`` unless recording raw.
    :param chunk_size: bytes after which a chunk is closed even between flushes.
    :param max_stamp_span_s: refuse stamps further than this from the bag's first stamp (a
        second line of defence against far-future or garbage stamps; the recorder checks first).
    """

    path: str
    image_format: str = 'jpeg'
    jpeg_quality: int = 90
    image_topic: str = bagfmt.DEFAULT_IMAGE_TOPIC
    role_name: str = bagfmt.DEFAULT_ROLE_NAME
    flush_interval_s: float = 0.5
    fsync: bool = False
    backend: str = 'auto'
    chunk_compression: str = 'none'
    chunk_size: int = 4 * 1024 * 1024
    max_stamp_span_s: float = 7 * 24 * 3600.0

    def __post_init__(self):
        """Validate every field; errors name the bad value."""
        self.path = str(self.path)
        if not self.path:
            raise ValueError('BagWriterConfig.path is empty')
        if self.image_format not in IMAGE_FORMATS:
            raise ValueError(f'image_format {self.image_format!r} is not one of {IMAGE_FORMATS}')
        if not 1 <= int(self.jpeg_quality) <= 100:
            raise ValueError(f'jpeg_quality {self.jpeg_quality!r} is not in 1..100')
        if not self.image_topic.startswith('/'):
            raise ValueError(f'image_topic {self.image_topic!r} must be absolute (start with /)')
        if not self.role_name or '/' in self.role_name:
            raise ValueError(f'role_name {self.role_name!r} must be a non-empty name without /')
        if not self.flush_interval_s > 0:
            raise ValueError(f'flush_interval_s {self.flush_interval_s!r} must be > 0')
        if self.backend not in BACKENDS:
            raise ValueError(f'backend {self.backend!r} is not one of {BACKENDS}')
        if self.chunk_compression not in CHUNK_COMPRESSIONS:
            raise ValueError(f'chunk_compression {self.chunk_compression!r} is not one of '
                             f'{CHUNK_COMPRESSIONS}')
        if self.chunk_size < 1024:
            raise ValueError(f'chunk_size {self.chunk_size!r} must be >= 1024 bytes')
        if not 1.0 <= self.max_stamp_span_s <= MAX_STAMP_NS / 1e9:
            raise ValueError(f'max_stamp_span_s {self.max_stamp_span_s!r} is not in '
                             f'1..{MAX_STAMP_NS / 1e9:.0f}')

    @property
    def recorded_image_topic(self) -> str:
        """Return the topic the images go to (``/compressed`` suffix for JPEG)."""
        if self.image_format == 'jpeg':
            return bagfmt.compressed_topic(self.image_topic)
        return self.image_topic

    def as_dict(self) -> dict:
        """Return the configuration as recorded in ``recording_info``."""
        return {'image_format': self.image_format, 'jpeg_quality': self.jpeg_quality,
                'image_topic': self.recorded_image_topic, 'role_name': self.role_name,
                'flush_interval_s': self.flush_interval_s, 'fsync': self.fsync,
                'chunk_compression': self.chunk_compression}


def rosbag2_py_module():
    """Return the ``rosbag2_py`` module, or None when it is not importable here."""
    try:
        return importlib.import_module('rosbag2_py')
    except ImportError:
        return None


def _open_stream(file_path: Path):
    """Open a new MCAP file for writing (a seam for tests that simulate a full disk)."""
    return open(file_path, 'xb')


def mcap_end_records() -> bytes:
    """Return DataEnd, a Footer without summary, and the closing magic: a complete MCAP end."""
    builder = RecordBuilder()
    DataEnd(data_section_crc=0).write(builder)
    # summary_start 0: no summary section; readers scan the data section (rosbags does, and
    # rosbag2's MCAP plugin reads with fallback scanning).
    Footer(summary_start=0, summary_offset_start=0, summary_crc=0).write(builder)
    return builder.end() + MCAP_MAGIC


class _McapBackend:
    """Storage through ``mcap.writer.Writer``; chunks are closed only by :meth:`flush`."""

    name = 'mcap'

    def __init__(self, file_path: Path, config: BagWriterConfig):
        self._file_path = file_path
        self._stream = _open_stream(file_path)
        compression = {'none': CompressionType.NONE, 'zstd': CompressionType.ZSTD,
                       'lz4': CompressionType.LZ4}[config.chunk_compression]
        self._writer = Writer(self._stream, chunk_size=_NO_AUTOMATIC_CHUNKS,
                              compression=compression)
        self._schemas: Dict[str, int] = {}
        self._copies = []  # schema/channel records to repeat after the chunk that has them
        self._fsync = config.fsync
        self.durable_offset = 0  # everything before it is complete records on disk
        self._writer.start(profile='ros2', library=f'llava_drive-{__version__}')
        self._stream.flush()
        self.durable_offset = self._stream.tell()

    def add_topic(self, topic: str, msgtype: str, qos_yaml: str) -> int:
        if msgtype not in self._schemas:
            text, _ = bagfmt.message_definition(msgtype)
            self._schemas[msgtype] = self._writer.register_schema(
                name=msgtype, encoding='ros2msg', data=text.encode())
            self._copies.append(McapSchema(id=self._schemas[msgtype], name=msgtype,
                                           encoding='ros2msg', data=text.encode()))
        _, rihs01 = bagfmt.message_definition(msgtype)
        metadata = {'offered_qos_profiles': qos_yaml, 'topic_type_hash': rihs01}
        channel = self._writer.register_channel(
            topic=topic, message_encoding='cdr', schema_id=self._schemas[msgtype],
            metadata=metadata)
        self._copies.append(McapChannel(id=channel, topic=topic, message_encoding='cdr',
                                        schema_id=self._schemas[msgtype], metadata=metadata))
        return channel

    def write(self, channel: int, topic: str, stamp_ns: int, data: bytes) -> None:
        self._writer.add_message(channel_id=channel, log_time=stamp_ns, data=data,
                                 publish_time=stamp_ns)

    def flush(self) -> None:
        self._writer.flush()
        if self._copies:
            # A second copy of new schema and channel records, outside the chunk: if that
            # chunk is ever damaged (and the summary with it), recovery still knows the topics.
            # MCAP allows identical duplicates; the mcap Writer's offsets follow tell().
            builder = RecordBuilder()
            for record in self._copies:
                record.write(builder)
            self._stream.write(builder.end())
            self._stream.flush()
            self._copies = []
        if self._fsync:
            os.fsync(self._stream.fileno())
        self.durable_offset = self._stream.tell()

    def finish(self, metadata_yaml: str) -> None:
        # The same 'rosbag2' metadata record rosbag2 (Iron+) and rosbags embed in the MCAP.
        self._writer.add_metadata('rosbag2', {'serialized_metadata': metadata_yaml})
        self._writer.finish()
        self._stream.flush()
        if self._fsync:
            os.fsync(self._stream.fileno())
        self._stream.close()

    def salvage(self) -> str:
        """
        After a failed write: cut the file back to the last flushed chunk and end it.

        Truncating first also gives back the space a full disk needs for the footer and
        metadata.yaml. Return what was done, for the log.
        """
        try:
            self._stream.close()
        except OSError:
            pass  # the buffered tail cannot reach the disk; it is cut off below anyway
        with open(self._file_path, 'r+b') as stream:
            stream.truncate(self.durable_offset)
            stream.seek(self.durable_offset)
            stream.write(mcap_end_records())
            stream.flush()
            os.fsync(stream.fileno())
        return f'cut back to {self.durable_offset} bytes (last flushed chunk) and ended'


class _Rosbag2PyBackend:
    """Storage through ``rosbag2_py.SequentialWriter`` (storage ``mcap``)."""

    name = 'rosbag2_py'

    def __init__(self, bag_dir: Path, module):
        self._module = module
        self._writer = module.SequentialWriter()
        self._writer.open(module.StorageOptions(uri=str(bag_dir), storage_id='mcap'),
                          module.ConverterOptions('', ''))
        self._topics = []

    def add_topic(self, topic: str, msgtype: str, qos_yaml: str) -> int:
        _, rihs01 = bagfmt.message_definition(msgtype)
        try:  # Iron and newer: id is required, the type hash goes into the metadata
            metadata = self._module.TopicMetadata(
                id=len(self._topics) + 1, name=topic, type=msgtype, serialization_format='cdr',
                type_description_hash=rihs01)
        except TypeError:  # Humble: TopicMetadata(name, type, serialization_format, qos='')
            metadata = self._module.TopicMetadata(name=topic, type=msgtype,
                                                  serialization_format='cdr')
        self._writer.create_topic(metadata)
        self._topics.append(topic)
        return len(self._topics)

    def write(self, channel: int, topic: str, stamp_ns: int, data: bytes) -> None:
        self._writer.write(topic, data, stamp_ns)

    def flush(self) -> None:
        pass  # rosbag2's MCAP plugin closes chunks on its own

    def finish(self, metadata_yaml: str) -> None:
        close = getattr(self._writer, 'close', None)
        if close is not None:
            close()
        # Humble has no close(): dropping the last reference closes the bag.
        self._writer = None

    def salvage(self) -> str:
        self._writer = None  # rosbag2 finishes the file when its writer is dropped
        return 'left to rosbag2_py'


@dataclass
class _Durable:
    """What the file holds up to the last successful flush (the state a failure falls back to)."""

    counts: Dict[str, int]
    pairs: int = 0
    start_ns: Optional[int] = None
    end_ns: Optional[int] = None


class WriterLock:
    """
    ``writer.lock`` in a bag directory: an exclusive ``flock`` held while a writer runs.

    The kernel drops the lock when the writer's process dies, so a stale file from a SIGKILL
    never blocks recovery; the pid and host inside are for the message only.

    :param bag_dir: bag directory.
    """

    def __init__(self, bag_dir: Path):
        self.path = Path(bag_dir) / LOCK_FILE
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._fd)
            raise
        os.ftruncate(self._fd, 0)
        os.write(self._fd, json.dumps({'pid': os.getpid(), 'host': socket.gethostname(),
                                       'since_unix_s': round(time.time(), 3)}).encode())

    def release(self) -> None:
        """Remove the file and drop the lock (idempotent)."""
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        except OSError:
            pass  # a read-only or vanished directory: the flock still goes with the fd
        os.close(self._fd)
        self._fd = None


def lock_holder(bag_dir) -> Optional[dict]:
    """
    Return ``{'pid': ..., 'host': ...}`` when a live writer holds the bag's lock, else None.

    :param bag_dir: bag directory.
    """
    path = Path(bag_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            text = os.read(fd, 4096).decode(errors='replace')
            try:
                holder = json.loads(text)
            except ValueError:
                holder = None
            return holder if isinstance(holder, dict) else {'pid': None, 'raw': text}
        return None  # nobody holds it: a writer that died without removing the file
    finally:
        os.close(fd)


class BagWriter:
    """
    Write image/control pairs, episode markers and recording info to a new bag.

    Thread-safe; use as a context manager or call :meth:`close` (idempotent). After a
    :class:`BagWriteError` the bag is already closed as well as it can be (see the module
    docstring); :attr:`error` and :attr:`loss` say what happened.

    :param config: a :class:`BagWriterConfig`.
    """

    def __init__(self, config: BagWriterConfig):
        self.config = config
        self.path = Path(config.path)
        if self.path.exists() and (not self.path.is_dir() or any(self.path.iterdir())):
            raise FileExistsError(
                f'bag directory {self.path} already exists and is not empty; '
                'choose a new run name (bags are never overwritten)')
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._file_lock = WriterLock(self.path)
        except OSError as error:
            raise BagWriteError(self.path, error) from error
        self.file_path = self.path / f'{self.path.name}_0.mcap'
        self._lock = threading.RLock()
        self._channels: Dict[str, int] = {}
        self._types: Dict[str, str] = {}
        self.counts: Dict[str, int] = {}
        self.rejected: Dict[str, int] = {}
        self.pairs_written = 0
        self.loss: Optional[dict] = None
        self._start_ns: Optional[int] = None
        self._end_ns: Optional[int] = None
        self._recording_info: Optional[dict] = None
        self._pending_info = False
        self._failed: Optional[BagWriteError] = None
        self._failure_reported = False
        self._closed = False
        self._dirty = False
        self._pending_bytes = 0
        self._pending_stamps = [None, None]
        self._durable = _Durable(counts={})
        try:
            self._backend = self._open_backend()
        except BaseException:
            self._file_lock.release()
            raise
        LOG.info('recording to %s (%s backend, %s images)', self.path, self._backend.name,
                 config.image_format)
        self._stop_flusher = threading.Event()
        self._flusher = None
        if self._backend.name == 'mcap':
            # A weak reference, so a writer dropped without close() is collected.
            self._flusher = threading.Thread(
                target=_flush_loop, name='bag-flush', daemon=True,
                args=(weakref.ref(self), self._stop_flusher, config.flush_interval_s))
            self._flusher.start()

    @property
    def backend(self) -> str:
        """Return the storage backend in use (``mcap`` or ``rosbag2_py``)."""
        return self._backend.name

    @property
    def error(self) -> Optional[str]:
        """Return the write error that ended this bag, or None."""
        return None if self._failed is None else str(self._failed)

    def _open_backend(self):
        module = None
        if self.config.backend in ('auto', 'rosbag2_py'):
            module = rosbag2_py_module()
            if module is None and self.config.backend == 'rosbag2_py':
                raise RuntimeError('backend rosbag2_py requested but rosbag2_py is not '
                                   'importable (source a ROS 2 install, or use backend mcap)')
            if module is None:
                LOG.info('rosbag2_py not importable: writing MCAP with the mcap library')
        try:
            if module is not None:
                return _Rosbag2PyBackend(self.path, module)
            return _McapBackend(self.file_path, self.config)
        except OSError as error:
            raise BagWriteError(self.path, error) from error

    def _check_open(self):
        if self._closed:
            raise RuntimeError(f'bag {self.path} is closed')
        if self._failed is not None:
            self._failure_reported = True
            raise self._failed

    def _check_stamp(self, stamp_ns) -> int:
        """Return the stamp as int, or reject it (negative, beyond int64, far from the bag)."""
        if isinstance(stamp_ns, bool) or not isinstance(stamp_ns, (int, np.integer)):
            self._reject('bad_stamp', f'stamp {stamp_ns!r} is not an integer of nanoseconds')
        stamp_ns = int(stamp_ns)
        if not 0 <= stamp_ns <= MAX_STAMP_NS:
            self._reject('bad_stamp', f'stamp {stamp_ns} ns is outside 0..{MAX_STAMP_NS}')
        with self._lock:
            first = self._start_ns
        span_ns = int(self.config.max_stamp_span_s * 1e9)
        if first is not None and abs(stamp_ns - first) > span_ns:
            self._reject('implausible_stamp',
                         f'stamp {stamp_ns} ns is {(stamp_ns - first) / 1e9:+.0f} s from the '
                         f'bag start {first} ns (max_stamp_span_s {self.config.max_stamp_span_s})')
        return stamp_ns

    def _write(self, topic: str, msgtype: str, stamp_ns: int, data: bytes) -> None:
        """Write one message; the caller holds the lock and checked the stamp."""
        try:
            channel = self._channels.get(topic)
            if channel is None:
                channel = self._backend.add_topic(topic, msgtype, bagfmt.topic_qos_yaml(topic))
                self._channels[topic] = channel
                self._types[topic] = msgtype
                self.counts[topic] = 0
            self._backend.write(channel, topic, stamp_ns, data)
        except Exception as error:  # noqa: B902 - any storage failure ends the bag cleanly
            raise self._fail(error) from error
        self.counts[topic] += 1
        self._dirty = True
        self._pending_bytes += len(data)
        low, high = self._pending_stamps
        self._pending_stamps = [stamp_ns if low is None else min(low, stamp_ns),
                                stamp_ns if high is None else max(high, stamp_ns)]
        self._start_ns = stamp_ns if self._start_ns is None else min(self._start_ns, stamp_ns)
        self._end_ns = stamp_ns if self._end_ns is None else max(self._end_ns, stamp_ns)

    def _fail(self, error: Exception) -> BagWriteError:
        """
        End the bag after a failed write and return the error to raise.

        The file is cut back to the last flushed chunk and ended, metadata.yaml is written for
        what it holds, and :attr:`loss` counts what had been acknowledged since that flush.
        The caller holds the lock.
        """
        self._failed = BagWriteError(self.file_path, error)
        # A failure in the flush thread is raised to the caller by its next call (or close).
        self._failure_reported = threading.current_thread() is not self._flusher
        durable = self._durable
        self.loss = {
            'pairs': self.pairs_written - durable.pairs,
            'messages': sum(self.counts.values()) - sum(durable.counts.values()),
            'first_stamp_ns': self._pending_stamps[0],
            'last_stamp_ns': self._pending_stamps[1],
            'by_topic': {topic: count - durable.counts.get(topic, 0)
                         for topic, count in self.counts.items()
                         if count != durable.counts.get(topic, 0)},
        }
        self.counts = {topic: durable.counts.get(topic, 0) for topic in self.counts}
        self.pairs_written = durable.pairs
        self._start_ns, self._end_ns = durable.start_ns, durable.end_ns
        self._dirty = False
        try:
            done = self._backend.salvage()
            if self._backend.name == 'mcap':
                bagfmt.write_metadata(self.path, self._metadata(self.summary()))
            LOG.error('bag %s: %s; the file was %s with metadata.yaml for the %d pairs on '
                      'disk; lost %d acknowledged pairs (%d messages) since the last flush',
                      self.path, self._failed, done, self.pairs_written, self.loss['pairs'],
                      self.loss['messages'])
        except Exception as salvage_error:  # noqa: B902 - report both, never mask the first
            LOG.error('bag %s: %s; could not end the file (%s): run `llava-drive bag recover '
                      '%s`', self.path, self._failed, salvage_error, self.path)
            self.loss['salvage_error'] = str(salvage_error)
        return self._failed

    def _reject(self, reason: str, detail: str):
        with self._lock:
            self.rejected[reason] = self.rejected.get(reason, 0) + 1
        raise SampleRejected(reason, detail)

    def _encode_image(self, stamp_ns: int, image: np.ndarray, encoding: str,
                      frame_id: str) -> bytes:
        channels = CHANNELS.get(encoding)
        if channels is None:
            self._reject('unsupported_encoding', f'{encoding!r} (supported: {sorted(CHANNELS)})')
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
            self._reject('bad_image', f'need a uint8 numpy array, got {type(image).__name__} '
                         f'{getattr(image, "dtype", "")}')
        shape_ok = image.ndim == 3 and image.shape[2] == channels or (
            channels == 1 and image.ndim == 2)
        if not shape_ok or image.size == 0:
            self._reject('bad_image', f'shape {image.shape} does not fit {encoding}')
        if self.config.image_format == 'raw':
            return bagfmt.serialize_image(stamp_ns, image, encoding, frame_id)
        try:
            bgr = image if channels == 1 else to_bgr(image, encoding)
        except ImageError as error:
            self._reject(error.reason, str(error))
        ok, encoded = cv2.imencode('.jpg', bgr,
                                   [cv2.IMWRITE_JPEG_QUALITY, int(self.config.jpeg_quality)])
        if not ok:
            self._reject('jpeg_encode_failed', f'cv2.imencode failed for shape {image.shape}')
        return bagfmt.serialize_compressed_image(stamp_ns, encoded.tobytes(), 'jpeg', frame_id)

    def write_pair(self, stamp_ns: int, image: np.ndarray, encoding: str, control: Control,
                   speed: float, odometry: Optional[bagfmt.OdometrySample] = None,
                   frame_id: str = 'ego_vehicle/rgb_front') -> None:
        """
        Write one image/control pair (plus speed and optional odometry) at ``stamp_ns``.

        Every message of the pair gets ``stamp_ns`` as header stamp and log time.

        :param stamp_ns: the image's header stamp in nanoseconds.
        :param image: ``H x W x C`` uint8 pixels in ``encoding``.
        :param encoding: ``bgra8``, ``bgr8``, ``rgb8``, ``rgba8`` or ``mono8``.
        :param control: the control in effect for this image.
        :param speed: vehicle speed in m/s.
        :param odometry: optional odometry sample.
        :param frame_id: camera frame id of the image header.
        :raises SampleRejected: the pair is unusable (counted in :attr:`rejected`).
        :raises BagWriteError: the write failed; the bag is ended (see :meth:`_fail`).
        """
        stamp_ns = self._check_stamp(stamp_ns)
        problem = control.problem()
        if problem is not None:
            self._reject(problem, f'{control.as_array()}')
        if not np.isfinite(speed):
            self._reject('nan_speed', f'speed {speed!r}')
        # Encode outside the lock: JPEG encoding is the expensive part.
        image_data = self._encode_image(stamp_ns, image, encoding, frame_id)
        control_data = bagfmt.serialize_control(stamp_ns, control, frame_id)
        speed_data = bagfmt.serialize_float32(speed)
        odometry_data = None
        if odometry is not None:
            odometry_data = bagfmt.serialize_odometry(stamp_ns, odometry)
        image_type = bagfmt.IMAGE_TYPE if self.config.image_format == 'raw' else (
            bagfmt.COMPRESSED_IMAGE_TYPE)
        with self._lock:
            self._check_open()
            self._write_pending_info(stamp_ns)
            self._write(self.config.recorded_image_topic, image_type, stamp_ns, image_data)
            self._write(bagfmt.CONTROL_TOPIC, bagfmt.CONTROL_TYPE, stamp_ns, control_data)
            self._write(bagfmt.speed_topic(self.config.role_name), bagfmt.FLOAT32_TYPE,
                        stamp_ns, speed_data)
            if odometry_data is not None:
                self._write(bagfmt.odometry_topic(self.config.role_name), bagfmt.ODOMETRY_TYPE,
                            stamp_ns, odometry_data)
            self.pairs_written += 1
            if self._pending_bytes >= self.config.chunk_size:
                self._flush_locked()

    def write_episode_marker(self, stamp_ns: int, info: dict) -> None:
        """
        Write an episode boundary, e.g. ``{'event': 'start', 'episode': 3, 'route_seed': 7}``.

        :param stamp_ns: log time (the stamp of the first/last image of the episode).
        :param info: JSON-serializable dict with ``event`` (``start``/``end``) and ``episode``.
        :raises SampleRejected: a malformed marker or stamp (counted in :attr:`rejected`).
        :raises BagWriteError: the write failed; the bag is ended.
        """
        if not isinstance(info, dict):
            self._reject('malformed_episode_marker',
                         f'marker is a {type(info).__name__}, not a JSON object')
        if info.get('event') not in ('start', 'end'):
            self._reject('malformed_episode_marker',
                         f'event {info.get("event")!r} is not start or end')
        episode = info.get('episode')
        if isinstance(episode, bool) or not isinstance(episode, int):
            self._reject('malformed_episode_marker', f'episode {episode!r} is not an int')
        try:
            json.dumps(info, allow_nan=False)  # NaN/inf would make invalid JSON
            data = bagfmt.serialize_json_string(info)
        except (TypeError, ValueError) as error:
            self._reject('malformed_episode_marker', f'not JSON-serializable: {error}')
        stamp_ns = self._check_stamp(stamp_ns)
        with self._lock:
            self._check_open()
            self._write(bagfmt.EPISODE_TOPIC, bagfmt.STRING_TYPE, stamp_ns, data)

    def write_traffic_lights(self, stamp_ns: int, info: dict) -> None:
        """
        Write the traffic light states of one frame (``{'stamp_ns', 'lights': [...]}``).

        :param stamp_ns: the frame's stamp (log time)
        :param info: the decoded light-state message
        :raises SampleRejected: not a JSON object with a ``lights`` list, or a bad stamp
        :raises BagWriteError: the write failed; the bag is ended
        """
        if not isinstance(info, dict) or not isinstance(info.get('lights'), list):
            self._reject('malformed_traffic_lights', f'{info!r:.80} has no "lights" list')
        try:
            data = bagfmt.serialize_json_string(info)
        except (TypeError, ValueError) as error:
            self._reject('malformed_traffic_lights', f'not JSON-serializable: {error}')
        stamp_ns = self._check_stamp(stamp_ns)
        with self._lock:
            self._check_open()
            self._write(bagfmt.TRAFFIC_LIGHTS_TOPIC, bagfmt.STRING_TYPE, stamp_ns, data)

    def set_recording_info(self, info: dict) -> None:
        """
        Record the recording configuration (written before the next message and on close).

        :param info: JSON-serializable dict (simulator, expert, route, rates ...).
        """
        json.dumps(info, allow_nan=False)  # fail now, not at close
        with self._lock:
            self._recording_info = {'event': 'config', 'bag_format': bagfmt.BAG_FORMAT_VERSION,
                                    'writer': self.config.as_dict(), **info}
            self._pending_info = True

    def _write_pending_info(self, stamp_ns: int) -> None:
        if self._pending_info:
            self._write(bagfmt.RECORDING_INFO_TOPIC, bagfmt.STRING_TYPE, stamp_ns,
                        bagfmt.serialize_json_string(self._recording_info))
            self._pending_info = False

    def flush(self) -> None:
        """
        Close the open chunk and flush it to the OS (and fsync if configured).

        :raises BagWriteError: the write failed; the bag is ended.
        """
        with self._lock:
            if self._closed or self._failed is not None or not self._dirty:
                return
            self._flush_locked()

    def _flush_locked(self) -> None:
        try:
            self._backend.flush()
        except Exception as error:  # noqa: B902 - any storage failure ends the bag cleanly
            raise self._fail(error) from error
        self._dirty = False
        self._pending_bytes = 0
        self._pending_stamps = [None, None]
        self._durable = _Durable(dict(self.counts), self.pairs_written, self._start_ns,
                                 self._end_ns)

    def summary(self, extra: Optional[dict] = None) -> dict:
        """
        Return the closing summary: pairs on disk, rejected counts merged with ``extra``.

        After a write error it also holds ``error`` (the message) and ``lost`` (pairs and
        messages acknowledged but not on disk, with their stamp range).

        :param extra: the caller's own summary (its ``rejected`` counts are added).
        """
        extra = dict(extra or {})
        rejected = dict(self.rejected)
        for reason, count in (extra.pop('rejected', None) or {}).items():
            rejected[reason] = rejected.get(reason, 0) + int(count)
        result = {'event': 'summary', 'pairs_written': self.pairs_written,
                  'rejected': rejected, **extra}
        if self._failed is not None:
            result.update(error=str(self._failed), lost=dict(self.loss or {}),
                          pairs_written=self.pairs_written)
        return result

    def close(self, summary: Optional[dict] = None) -> None:
        """
        Write the summary, finish the MCAP, write ``metadata.yaml`` and drop the lock.

        Idempotent. After a write error the bag was already ended; close only adds the
        caller's summary to metadata.yaml and raises the error if no call has raised it yet.

        :param summary: the recorder's summary (e.g. ``{'rejected': {'nan_control': 1}}``).
        :raises BagWriteError: the bag could not be finished (what is on disk stays readable).
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._stop_flusher.set()
        if self._flusher is not None:
            self._flusher.join()
        try:
            with self._lock:
                if self._failed is None:
                    self._finish(summary)
                else:
                    self._rewrite_failed_metadata(summary)
                    if not self._failure_reported:
                        self._failure_reported = True
                        raise self._failed
        finally:
            self._file_lock.release()

    def _finish(self, summary: Optional[dict]) -> None:
        final = self.summary(summary)
        if self._end_ns is not None:
            self._write_pending_info(self._end_ns)
            self._write(bagfmt.RECORDING_INFO_TOPIC, bagfmt.STRING_TYPE, self._end_ns,
                        bagfmt.serialize_json_string(final))
        if self._dirty:
            self._flush_locked()  # the last chunk is safe before the summary is written
        try:
            metadata = self._metadata(final)
            self._backend.finish(yaml_text(metadata['rosbag2_bagfile_information']))
        except Exception as error:  # noqa: B902 - any storage failure ends the bag cleanly
            raise self._fail(error) from error
        if self._backend.name == 'rosbag2_py':
            metadata = self._merge_rosbag2_metadata(metadata)
        try:
            bagfmt.write_metadata(self.path, metadata)
        except OSError as error:
            self._failed = BagWriteError(self.path / bagfmt.METADATA_FILE, error)
            self._failure_reported = True
            LOG.error('bag %s: the MCAP is complete but %s; run `llava-drive bag recover %s`',
                      self.path, self._failed, self.path)
            raise self._failed from error
        LOG.info('closed bag %s: %d pairs', self.path, self.pairs_written)

    def _rewrite_failed_metadata(self, summary: Optional[dict]) -> None:
        if self._backend.name != 'mcap' or 'salvage_error' in (self.loss or {}):
            return
        try:
            bagfmt.write_metadata(self.path, self._metadata(self.summary(summary)))
        except OSError as error:  # the first metadata.yaml (without the caller's part) stays
            LOG.error('bag %s: could not add the summary to metadata.yaml: %s', self.path,
                      error)

    def _custom_data(self, final: dict) -> Dict[str, str]:
        custom = {bagfmt.CUSTOM_FORMAT_KEY: str(bagfmt.BAG_FORMAT_VERSION),
                  bagfmt.CUSTOM_SUMMARY_KEY: json.dumps(final, sort_keys=True)}
        if self._recording_info is not None:
            custom[bagfmt.CUSTOM_RECORDING_INFO_KEY] = json.dumps(self._recording_info,
                                                                  sort_keys=True)
        return custom

    def _metadata(self, final: dict) -> dict:
        # After a failure, a topic whose channel record was in the lost chunk is not in the file.
        topics = [bagfmt.TopicCount(topic, self._types[topic], self.counts[topic],
                                    bagfmt.topic_qos_yaml(topic))
                  for topic in self._channels if self._failed is None or self.counts[topic]]
        return bagfmt.build_metadata(self.file_path.name, topics, self._start_ns or 0,
                                     self._end_ns or 0, self._custom_data(final))

    def _merge_rosbag2_metadata(self, ours: dict) -> dict:
        """
        Return our version-8 metadata with rosbag2's file list and distro.

        rosbag2 on Kilted writes version 9, which Humble cannot read (architecture: Bag format v1),
        and only Iron+ stores custom_data; our counts are the same messages.
        """
        try:
            theirs = bagfmt.read_metadata(self.path)
        except bagfmt.MetadataError as error:
            LOG.warning('ignoring rosbag2_py metadata: %s', error)
            theirs = None
        if theirs is None:
            return ours
        merged = dict(ours['rosbag2_bagfile_information'])
        for key in ('relative_file_paths', 'files', 'ros_distro'):
            if theirs.get(key):
                merged[key] = theirs[key]
        return {'rosbag2_bagfile_information': merged}

    def __enter__(self):
        """Return self."""
        return self

    def __exit__(self, *exc):
        """Close and keep the data, whatever the exception (unlike rosbags' writer)."""
        self.close()
        return False

    def __del__(self):
        """Stop the flush thread of a writer that was never closed."""
        stop = getattr(self, '_stop_flusher', None)
        if stop is not None:
            stop.set()
        lock = getattr(self, '_file_lock', None)
        if lock is not None:
            lock.release()


def _flush_loop(writer_ref, stop: threading.Event, interval_s: float) -> None:
    """Flush the writer every interval until stopped, closed or garbage collected."""
    while not stop.wait(interval_s):
        writer = writer_ref()
        if writer is None:
            return
        try:
            writer.flush()
        except BagWriteError:
            return  # reported to the caller by the next write_pair
        del writer


def yaml_text(mapping: dict) -> str:
    """
    Return a mapping as block-style YAML text.

    :param mapping: the mapping.
    """
    return yaml.safe_dump(mapping, default_flow_style=False, sort_keys=False).strip()
