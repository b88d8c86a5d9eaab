"""BagWriter: format v1 contents, metadata like rosbags' own, errors, flushing, backends."""
import errno
import json
import os
from pathlib import Path
import subprocess
import sys
import textwrap
import time
import types

import cv2
from llava_drive.bag import format as bagfmt
from llava_drive.bag import writer as bagwriter
from llava_drive.bag.reader import read_pairs
from llava_drive.bag.recover import Message, recover_bag, Scan, scan_file
from llava_drive.bag.writer import BagWriteError, BagWriter, BagWriterConfig, SampleRejected
from llava_drive.control import Control
from mcap.reader import make_reader
import numpy as np
import pytest
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import StoragePlugin, Writer as RosbagsWriter

REPO = Path(__file__).resolve().parent.parent


def road_frame(index: int, height: int = 120, width: int = 160) -> np.ndarray:
    """Return a BGR road-like frame: sky, grass, a grey road and a lane line that moves."""
    frame = np.zeros((height, width, 3), np.uint8)
    frame[:height // 2] = (200, 160, 90)
    frame[height // 2:] = (40, 140, 50)
    shift = (index * 3) % 40 - 20
    road = np.array([[width // 2 - 8 + shift, height // 2], [width // 2 + 8 + shift, height // 2],
                     [width - 10, height - 1], [10, height - 1]], np.int32)
    cv2.fillPoly(frame, [road], (90, 90, 90))
    cv2.line(frame, (width // 2 + shift, height // 2), (width // 2, height - 1),
             (255, 255, 255), 2)
    return frame


def test_pairs_roundtrip_with_both_readers(tmp_path):
    """Every message of a pair has the image stamp as header stamp and log time."""
    bag = tmp_path / 'run'
    stamps = [5_000_000_000 + i * 50_000_000 for i in range(6)]
    with BagWriter(BagWriterConfig(str(bag), jpeg_quality=95)) as writer:
        writer.set_recording_info({'simulator': 'test'})
        writer.write_episode_marker(stamps[0], {'event': 'start', 'episode': 3, 'route_seed': 7})
        for i, stamp in enumerate(stamps):
            odometry = bagfmt.OdometrySample(position=(i, 2.0, 0.0)) if i % 2 == 0 else None
            writer.write_pair(stamp, road_frame(i), 'bgr8',
                              Control(steer=-0.5 + 0.2 * i, throttle=0.6, brake=0.0),
                              speed=3.0 + i, odometry=odometry)
        writer.write_episode_marker(stamps[-1], {'event': 'end', 'episode': 3})
    assert writer.pairs_written == 6

    image_topic = '/carla/ego_vehicle/rgb_front/image/compressed'
    with AnyReader([bag]) as reader:
        counts = {c.topic: (c.msgtype, c.msgcount) for c in reader.connections}
        assert counts == {
            image_topic: ('sensor_msgs/msg/CompressedImage', 6),
            '/llava_drive/control': ('carla_msgs/msg/CarlaEgoVehicleControl', 6),
            '/carla/ego_vehicle/speedometer': ('std_msgs/msg/Float32', 6),
            '/carla/ego_vehicle/odometry': ('nav_msgs/msg/Odometry', 3),
            '/llava_drive/episode': ('std_msgs/msg/String', 2),
            '/llava_drive/recording_info': ('std_msgs/msg/String', 2),
        }
        seen = {}
        for connection, log_ns, raw in reader.messages():
            message = reader.deserialize(raw, connection.msgtype)
            if hasattr(message, 'header'):
                assert bagfmt.stamp_to_ns(message.header.stamp) == log_ns
            assert log_ns in stamps
            seen.setdefault(connection.topic, []).append(message)
    assert seen[image_topic][0].format == 'jpeg'
    decoded = cv2.imdecode(np.frombuffer(seen[image_topic][2].data, np.uint8), cv2.IMREAD_COLOR)
    assert np.abs(decoded.astype(int) - road_frame(2)).mean() < 4
    control = seen['/llava_drive/control'][1]
    assert (round(control.steer, 3), round(control.throttle, 3)) == (-0.3, 0.6)
    assert seen['/carla/ego_vehicle/odometry'][1].pose.pose.position.x == 2.0
    markers = [json.loads(m.data) for m in seen['/llava_drive/episode']]
    assert markers[0] == {'event': 'start', 'episode': 3, 'route_seed': 7}
    info = [json.loads(m.data) for m in seen['/llava_drive/recording_info']]
    assert info[0]['event'] == 'config' and info[0]['simulator'] == 'test'
    assert info[0]['writer']['jpeg_quality'] == 95
    assert info[1]['event'] == 'summary' and info[1]['pairs_written'] == 6

    with open(bag / 'run_0.mcap', 'rb') as stream:
        reader = make_reader(stream)
        summary = reader.get_summary()
        assert reader.get_header().profile == 'ros2'
        assert summary.statistics.message_count == 25
        assert {s.encoding for s in summary.schemas.values()} == {'ros2msg'}
        schemas = {s.name: s for s in summary.schemas.values()}
        control_schema = schemas['carla_msgs/msg/CarlaEgoVehicleControl']
        assert b'MSG: std_msgs/Header' in control_schema.data
        assert {c.message_encoding for c in summary.channels.values()} == {'cdr'}
        assert all('offered_qos_profiles' in c.metadata for c in summary.channels.values())


def _shape(value):
    """Return the nested key structure of a YAML value (types for leaves)."""
    if isinstance(value, dict):
        return {key: _shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    return type(value).__name__


def test_metadata_matches_rosbags_writer(tmp_path):
    """metadata.yaml has exactly the fields rosbags' own version-8 MCAP writer produces."""
    ours = tmp_path / 'ours'
    with BagWriter(BagWriterConfig(str(ours))) as writer:
        writer.write_pair(1_000, road_frame(0), 'bgr8', Control(), 0.0)
        writer.write_pair(2_000, road_frame(1), 'bgr8', Control(), 0.0)
    theirs = tmp_path / 'theirs'
    reference = RosbagsWriter(theirs, version=8, storage_plugin=StoragePlugin.MCAP)
    reference.open()
    reference.set_custom_data('k', 'v')
    connection = reference.add_connection('/llava_drive/control', bagfmt.CONTROL_TYPE,
                                          typestore=bagfmt.typestore())
    reference.write(connection, 1_000, bagfmt.serialize_control(1_000, Control()))
    reference.write(connection, 2_000, bagfmt.serialize_control(2_000, Control()))
    reference.close()

    mine = bagfmt.read_metadata(ours)
    reference_metadata = bagfmt.read_metadata(theirs)
    custom = mine.pop('custom_data')
    assert reference_metadata.pop('custom_data') == {'k': 'v'}
    assert _shape(mine) == _shape(reference_metadata)
    assert all(isinstance(value, str) for value in custom.values())  # rosbag2: string map
    assert mine['version'] == 8 and mine['storage_identifier'] == 'mcap'
    assert mine['relative_file_paths'] == ['ours_0.mcap']
    assert mine['duration'] == {'nanoseconds': 1_000}
    assert mine['starting_time'] == {'nanoseconds_since_epoch': 1_000}
    control = next(t for t in mine['topics_with_message_count']
                   if t['topic_metadata']['name'] == '/llava_drive/control')
    reference_control = reference_metadata['topics_with_message_count'][0]
    assert control['topic_metadata']['type_description_hash'] == \
        reference_control['topic_metadata']['type_description_hash']
    assert control['message_count'] == 2
    # Version 8 keeps QoS as a YAML string (a list in version 9, which Humble cannot read).
    assert isinstance(control['topic_metadata']['offered_qos_profiles'], str)
    assert 'reliability: 1' in control['topic_metadata']['offered_qos_profiles']


def test_raw_images_keep_their_encoding(tmp_path):
    """Raw mode stores the frame unchanged in its encoding; the reader returns exact RGB."""
    bag = tmp_path / 'raw'
    bgr = road_frame(1)
    frames = {'bgra8': cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA), 'bgr8': bgr,
              'rgb8': cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB),
              'rgba8': cv2.cvtColor(bgr, cv2.COLOR_BGR2RGBA),
              'mono8': cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)}
    with BagWriter(BagWriterConfig(str(bag), image_format='raw')) as writer:
        for i, (encoding, frame) in enumerate(frames.items()):
            writer.write_pair(1_000 + i, frame, encoding, Control(), 1.0)
    with AnyReader([bag]) as reader:
        connection = next(c for c in reader.connections if c.msgtype == bagfmt.IMAGE_TYPE)
        assert connection.topic == '/carla/ego_vehicle/rgb_front/image'
        encodings = [reader.deserialize(raw, connection.msgtype).encoding
                     for _, _, raw in reader.messages([connection])]
    assert encodings == list(frames)
    pairs = list(read_pairs(bag))
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    for pair in pairs[:4]:
        np.testing.assert_array_equal(pair.image_rgb, rgb)
    gray = frames['mono8']
    np.testing.assert_array_equal(pairs[4].image_rgb, np.dstack([gray] * 3))


def test_rejected_samples_are_counted_and_summarized(tmp_path):
    """Unusable pairs raise SampleRejected with a reason; counts reach metadata and topic."""
    bag = tmp_path / 'rejects'
    writer = BagWriter(BagWriterConfig(str(bag)))
    writer.write_pair(1_000, road_frame(0), 'bgr8', Control(), 0.0)
    with pytest.raises(SampleRejected) as rejected:
        writer.write_pair(2_000, road_frame(0), 'yuv422', Control(), 0.0)
    assert rejected.value.reason == 'unsupported_encoding'
    with pytest.raises(SampleRejected, match='nan_control'):
        writer.write_pair(3_000, road_frame(0), 'bgr8', Control(steer=float('nan')), 0.0)
    with pytest.raises(SampleRejected, match='bad_image'):
        writer.write_pair(4_000, road_frame(0)[:, :, :2], 'bgr8', Control(), 0.0)
    writer.close({'rejected': {'nan_control': 2, 'stale_control': 1}, 'node': 'recorder'})
    writer.close()  # idempotent
    summary = bagfmt.custom_json(bagfmt.read_metadata(bag), bagfmt.CUSTOM_SUMMARY_KEY)
    assert summary['pairs_written'] == 1
    assert summary['rejected'] == {'unsupported_encoding': 1, 'nan_control': 3,
                                   'bad_image': 1, 'stale_control': 1}
    assert summary['node'] == 'recorder'
    assert len(list(read_pairs(bag))) == 1
    with pytest.raises(RuntimeError, match='closed'):
        writer.write_pair(5_000, road_frame(0), 'bgr8', Control(), 0.0)


def test_config_validation_and_existing_bag(tmp_path):
    """Bad config values are named; an existing non-empty bag directory is refused."""
    with pytest.raises(ValueError, match='png'):
        BagWriterConfig(str(tmp_path / 'a'), image_format='png')
    with pytest.raises(ValueError, match='jpeg_quality 0'):
        BagWriterConfig(str(tmp_path / 'a'), jpeg_quality=0)
    with pytest.raises(ValueError, match='flush_interval_s'):
        BagWriterConfig(str(tmp_path / 'a'), flush_interval_s=0)
    with pytest.raises(ValueError, match='relative'):
        BagWriterConfig(str(tmp_path / 'a'), image_topic='relative/topic')
    existing = tmp_path / 'existing'
    existing.mkdir()
    (existing / 'metadata.yaml').write_text('x')
    with pytest.raises(FileExistsError, match='not empty'):
        BagWriter(BagWriterConfig(str(existing)))
    assert (existing / 'metadata.yaml').read_text() == 'x'
    (tmp_path / 'empty').mkdir()
    BagWriter(BagWriterConfig(str(tmp_path / 'empty'))).close()  # an empty dir is fine
    assert (tmp_path / 'empty' / 'metadata.yaml').is_file()


def test_unwritable_path_raises_bag_write_error(tmp_path):
    """A bag path under a regular file fails with BagWriteError naming the path."""
    blocker = tmp_path / 'file'
    blocker.write_text('not a directory')
    with pytest.raises(BagWriteError) as error:
        BagWriter(BagWriterConfig(str(blocker / 'run')))
    assert str(blocker / 'run') in str(error.value)
    assert error.value.errno == errno.ENOTDIR


FULL_DISK_CHILD = textwrap.dedent("""
    import json, resource, signal, sys
    import numpy as np
    from llava_drive.bag.writer import BagWriteError, BagWriter, BagWriterConfig
    from llava_drive.control import Control
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes then fail with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))
    writer = BagWriter(BagWriterConfig(sys.argv[1], image_format='raw', flush_interval_s=0.05))
    frame = np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8)
    written = 0
    try:
        for i in range(1000):
            writer.write_pair(1_000_000_000 + i * 50_000_000, frame, 'bgr8', Control(), 1.0)
            written += 1
            if i % 3 == 0:
                writer.flush()
    except BagWriteError as error:
        writer.close({'rejected': {'from_caller': 1}})
        print(json.dumps({'errno': error.errno, 'message': str(error), 'written': written,
                          'on_disk': writer.pairs_written, 'loss': writer.loss,
                          'summary': writer.summary()}))
""")


def test_file_size_limit_ends_the_bag_and_reports_the_loss(tmp_path):
    """EFBIG from a real rlimit: the bag is ended readable, the loss counted exactly."""
    bag = tmp_path / 'full'
    result = subprocess.run([sys.executable, '-c', FULL_DISK_CHILD, str(bag)], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert outcome['errno'] == errno.EFBIG
    assert str(bag) in outcome['message']
    assert outcome['written'] > 10
    # Pairs acknowledged since the last flush (at most 3) are lost, and said so.
    assert outcome['written'] - outcome['loss']['pairs'] == outcome['on_disk']
    assert 0 <= outcome['loss']['pairs'] <= 3
    pairs = list(read_pairs(bag))  # readable without recover: metadata.yaml was written
    assert len(pairs) == outcome['on_disk']
    assert pairs[0].image_rgb.shape == (60, 80, 3)
    metadata = bagfmt.read_metadata(bag)
    summary = bagfmt.custom_json(metadata, bagfmt.CUSTOM_SUMMARY_KEY)
    assert summary['error'] == outcome['message']
    assert summary['lost']['pairs'] == outcome['loss']['pairs']
    assert summary['rejected'] == {'from_caller': 1}
    assert summary['pairs_written'] == len(pairs)
    assert not (bag / bagwriter.LOCK_FILE).exists()
    assert recover_bag(bag).action == 'healthy'


def test_flush_thread_puts_pairs_on_disk_before_close(tmp_path):
    """Within a flush interval, written pairs are readable from the file without close()."""
    bag = tmp_path / 'live'
    writer = BagWriter(BagWriterConfig(str(bag), flush_interval_s=0.1))
    for i in range(3):
        writer.write_pair(1_000 + i, road_frame(i), 'bgr8', Control(), 0.0)
    deadline = time.monotonic() + 30.0
    messages = []
    while len(messages) < 9 and time.monotonic() < deadline:
        time.sleep(0.05)
        messages = [r for r in scan_file(bag / 'live_0.mcap', Scan()) if isinstance(r, Message)]
    assert len(messages) == 9  # image, control, speed for 3 pairs
    writer.close()


def test_context_manager_keeps_data_on_exception(tmp_path):
    """An exception inside ``with`` still closes the bag properly (rosbags would abort)."""
    bag = tmp_path / 'interrupted'
    with pytest.raises(KeyboardInterrupt):
        with BagWriter(BagWriterConfig(str(bag))) as writer:
            writer.write_pair(1_000, road_frame(0), 'bgr8', Control(), 0.0)
            raise KeyboardInterrupt
    assert len(list(read_pairs(bag))) == 1


class FakeRosbag2Py(types.ModuleType):
    """
    Stand-in for rosbag2_py, which cannot be installed here (records the calls).

    ``distro='humble'``: TopicMetadata(name, type, serialization_format), no close();
    ``distro='jazzy'``: TopicMetadata needs ``id``, the writer has close() and writes a
    version-9 metadata.yaml like Kilted would.
    """

    def __init__(self, distro: str):
        super().__init__('rosbag2_py')
        self.calls = []
        fake = self

        class StorageOptions:
            def __init__(self, uri, storage_id):
                self.uri, self.storage_id = uri, storage_id

        class ConverterOptions:
            def __init__(self, input_format, output_format):
                self.formats = (input_format, output_format)

        class HumbleTopicMetadata:
            def __init__(self, name, type, serialization_format,  # noqa: A002 (rosbag2 API)
                         offered_qos_profiles=''):
                self.name, self.type = name, type
                self.serialization_format = serialization_format

        class JazzyTopicMetadata(HumbleTopicMetadata):
            def __init__(self, id, name, type, serialization_format,  # noqa: A002
                         offered_qos_profiles=(), type_description_hash=''):
                super().__init__(name, type, serialization_format)
                self.id, self.type_description_hash = id, type_description_hash

        class SequentialWriter:
            def open(self, storage, converter):  # noqa: A003 (rosbag2_py API)
                self.uri = storage.uri
                fake.calls.append(('open', storage.uri, storage.storage_id, converter.formats))

            def create_topic(self, topic):
                fake.calls.append(('create_topic', topic.name, topic.type,
                                   topic.serialization_format,
                                   getattr(topic, 'type_description_hash', None)))

            def write(self, topic, data, stamp):
                fake.calls.append(('write', topic, bytes(data), stamp))

        class JazzySequentialWriter(SequentialWriter):
            def close(self):
                fake.calls.append(('close',))
                (Path(self.uri) / 'metadata.yaml').write_text(
                    'rosbag2_bagfile_information:\n  version: 9\n'
                    '  relative_file_paths: [ros_0.mcap]\n  ros_distro: kilted\n')

        self.StorageOptions = StorageOptions
        self.ConverterOptions = ConverterOptions
        self.TopicMetadata = HumbleTopicMetadata if distro == 'humble' else JazzyTopicMetadata
        self.SequentialWriter = (SequentialWriter if distro == 'humble'
                                 else JazzySequentialWriter)


@pytest.mark.parametrize('distro', ['humble', 'jazzy'])
def test_rosbag2_py_backend_is_used_when_importable(tmp_path, monkeypatch, distro):
    """With rosbag2_py importable, 'auto' writes through SequentialWriter with CDR bytes."""
    fake = FakeRosbag2Py(distro)
    monkeypatch.setitem(sys.modules, 'rosbag2_py', fake)
    bag = tmp_path / 'ros'
    writer = BagWriter(BagWriterConfig(str(bag)))
    assert writer.backend == 'rosbag2_py'
    writer.write_pair(7_000, road_frame(0), 'bgr8', Control(steer=0.25, throttle=0.5), 2.5)
    writer.close({})
    assert fake.calls[0] == ('open', str(bag), 'mcap', ('', ''))
    created = {call[1]: call[2:] for call in fake.calls if call[0] == 'create_topic'}
    control_hash = bagfmt.message_definition(bagfmt.CONTROL_TYPE)[1]
    assert created['/llava_drive/control'] == (
        'carla_msgs/msg/CarlaEgoVehicleControl', 'cdr',
        None if distro == 'humble' else control_hash)
    assert created['/carla/ego_vehicle/rgb_front/image/compressed'][0] == \
        'sensor_msgs/msg/CompressedImage'
    writes = {call[1]: call for call in fake.calls if call[0] == 'write'}
    control = bagfmt.deserialize(writes['/llava_drive/control'][2], bagfmt.CONTROL_TYPE)
    assert control.steer == 0.25 and writes['/llava_drive/control'][3] == 7_000
    assert bagfmt.stamp_to_ns(control.header.stamp) == 7_000
    assert (('close',) in fake.calls) == (distro == 'jazzy')
    # metadata.yaml is always version 8 with our custom data (Humble reads it).
    metadata = bagfmt.read_metadata(bag)
    assert metadata['version'] == 8
    assert bagfmt.custom_json(metadata, bagfmt.CUSTOM_SUMMARY_KEY)['pairs_written'] == 1
    assert metadata['ros_distro'] == ('kilted' if distro == 'jazzy'
                                      else os.environ.get('ROS_DISTRO', ''))


def test_backend_choice(tmp_path, monkeypatch):
    """Explicit backends are honoured; asking for an absent rosbag2_py is an error."""
    monkeypatch.setitem(sys.modules, 'rosbag2_py', FakeRosbag2Py('humble'))
    with BagWriter(BagWriterConfig(str(tmp_path / 'm'), backend='mcap')) as writer:
        assert writer.backend == 'mcap'
    monkeypatch.setitem(sys.modules, 'rosbag2_py', None)  # import now fails
    assert bagwriter.rosbag2_py_module() is None
    with pytest.raises(RuntimeError, match='rosbag2_py is not importable'):
        BagWriter(BagWriterConfig(str(tmp_path / 'r'), backend='rosbag2_py'))
    with BagWriter(BagWriterConfig(str(tmp_path / 'auto'))) as writer:
        assert writer.backend == 'mcap'
