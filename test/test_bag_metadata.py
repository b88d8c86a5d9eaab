"""metadata.yaml against the keys and value formats rosbag2 itself writes for version 8."""
from pathlib import Path
import re
import xml.etree.ElementTree as ElementTree

from llava_drive.bag import format as bagfmt
from llava_drive.bag.recover import recover_bag
from llava_drive.bag.writer import BagWriter, BagWriterConfig
from llava_drive.control import Control
import numpy as np
import pytest
import yaml

# From ros2/rosbag2 (jazzy branch) rosbag2_storage/include/rosbag2_storage/yaml.hpp, the
# encoders of BagMetadata, TopicInformation, TopicMetadata and FileInformation, and
# rosbag2_storage/src/rosbag2_storage/qos.cpp (rclcpp::QoS, rmw_time_t) for version < 9.
BAG_KEYS = {'version', 'storage_identifier', 'duration', 'starting_time', 'message_count',
            'topics_with_message_count', 'compression_format', 'compression_mode',
            'relative_file_paths', 'files', 'custom_data', 'ros_distro'}
TOPIC_INFORMATION_KEYS = {'topic_metadata', 'message_count'}
TOPIC_METADATA_KEYS = {'name', 'type', 'serialization_format', 'offered_qos_profiles',
                       'type_description_hash'}
FILE_KEYS = {'path', 'starting_time', 'duration', 'message_count'}
QOS_KEYS = {'history', 'depth', 'reliability', 'durability', 'deadline', 'lifespan',
            'liveliness', 'liveliness_lease_duration', 'avoid_ros_namespace_conventions'}
# rmw's RMW_DURATION_INFINITE as rmw_time_t; the Foxy sentinels are only translated on read.
INFINITE = {'sec': 9223372036, 'nsec': 854775807}
FOXY_SENTINELS = ({'sec': 2147483647, 'nsec': 4294967295},
                  {'sec': 2147483647, 'nsec': 2147483647},
                  {'sec': 9, 'nsec': 223372036854775807})
TYPE_HASH = re.compile(r'^RIHS01_[0-9a-f]{64}$')


def check_rosbag2_v8(bag_dir, ros_distro: str) -> dict:
    """Assert metadata.yaml has rosbag2's version-8 keys and value formats; return it."""
    document = yaml.safe_load((bag_dir / 'metadata.yaml').read_text())
    assert set(document) == {'rosbag2_bagfile_information'}
    info = document['rosbag2_bagfile_information']
    assert set(info) == BAG_KEYS
    assert info['version'] == 8
    assert info['storage_identifier'] == 'mcap'
    assert set(info['duration']) == {'nanoseconds'}
    assert set(info['starting_time']) == {'nanoseconds_since_epoch'}
    assert isinstance(info['compression_format'], str)
    assert isinstance(info['compression_mode'], str)
    assert all(isinstance(path, str) for path in info['relative_file_paths'])
    # rosbag2 (Iron+) decodes custom_data as a string map: null is refused.
    assert isinstance(info['custom_data'], dict)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in info['custom_data'].items())
    assert info['ros_distro'] == ros_distro
    for file_info in info['files']:
        assert set(file_info) == FILE_KEYS
        assert set(file_info['duration']) == {'nanoseconds'}
        assert set(file_info['starting_time']) == {'nanoseconds_since_epoch'}
    assert info['message_count'] == sum(t['message_count']
                                        for t in info['topics_with_message_count'])
    for topic in info['topics_with_message_count']:
        assert set(topic) == TOPIC_INFORMATION_KEYS
        metadata = topic['topic_metadata']
        assert set(metadata) == TOPIC_METADATA_KEYS
        assert metadata['serialization_format'] == 'cdr'
        assert TYPE_HASH.match(metadata['type_description_hash']), metadata
        # Version < 9: the profiles are a YAML string; enums are integers.
        assert isinstance(metadata['offered_qos_profiles'], str)
        profiles = yaml.safe_load(metadata['offered_qos_profiles'])
        assert profiles
        for profile in profiles:
            assert set(profile) == QOS_KEYS
            for enum in ('history', 'reliability', 'durability', 'liveliness'):
                assert isinstance(profile[enum], int) and not isinstance(profile[enum], bool)
            for duration in ('deadline', 'lifespan', 'liveliness_lease_duration'):
                assert profile[duration] == INFINITE
                assert profile[duration] not in FOXY_SENTINELS
            assert isinstance(profile['avoid_ros_namespace_conventions'], bool)
    for key in ('message_count',):
        assert isinstance(info[key], int)
    return info


def write(bag_dir, pairs: int = 3, close: bool = True) -> BagWriter:
    """Write ``pairs`` pairs with an episode marker."""
    writer = BagWriter(BagWriterConfig(str(bag_dir), flush_interval_s=3600.0))
    writer.write_episode_marker(1_000, {'event': 'start', 'episode': 0})
    frame = np.zeros((24, 32, 3), np.uint8)
    for i in range(pairs):
        writer.write_pair(1_000 + i, frame, 'bgr8', Control(throttle=0.3), 1.0)
    writer.flush()
    if close:
        writer.close()
    return writer


@pytest.mark.parametrize('distro', [None, 'humble', 'jazzy'])
def test_recorded_bag_metadata_is_rosbag2_v8(tmp_path, monkeypatch, distro):
    """A closed bag: rosbag2's keys and formats; ros_distro from ROS_DISTRO, else ''."""
    if distro is None:
        monkeypatch.delenv('ROS_DISTRO', raising=False)
    else:
        monkeypatch.setenv('ROS_DISTRO', distro)
    write(tmp_path / 'run')
    info = check_rosbag2_v8(tmp_path / 'run', distro or '')
    assert info['message_count'] == 3 * 3 + 1 + 1  # pairs, marker and the closing summary
    assert info['ros_distro'] != 'llava_drive'


def test_recovered_and_empty_bags_metadata_is_rosbag2_v8(tmp_path, monkeypatch):
    """Recovery writes the same format; an empty bag has an empty custom map, not null."""
    monkeypatch.delenv('ROS_DISTRO', raising=False)
    bag = tmp_path / 'killed'
    writer = write(bag, close=False)
    writer._file_lock.release()  # as if SIGKILLed
    assert recover_bag(bag).action == 'rebuilt'
    check_rosbag2_v8(bag, '')
    empty = bagfmt.build_metadata('x_0.mcap', [], 0, 0)['rosbag2_bagfile_information']
    assert empty['custom_data'] == {} and empty['ros_distro'] == ''


def test_package_declares_what_ros2_bag_needs():
    """package.xml pulls in ros2bag and the MCAP storage plugin (not default on Humble)."""
    root = ElementTree.parse(Path(__file__).resolve().parent.parent / 'package.xml').getroot()
    exec_depends = {element.text for element in root.iter('exec_depend')}
    assert {'ros2bag', 'rosbag2_storage_mcap'} <= exec_depends
