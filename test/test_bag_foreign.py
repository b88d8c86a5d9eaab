"""Bags the recorder did not write: no episode markers, sqlite3 storage, other tools' topics."""
import json

from llava_drive.bag import format as bagfmt
from llava_drive.bag.info import bag_info, format_info
from llava_drive.bag.reader import read_json_topic, read_pairs
from llava_drive.bag.writer import BagWriter, BagWriterConfig
from llava_drive.cli import main
from llava_drive.control import Control
import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin, Writer as RosbagsWriter

FRAME = np.full((48, 64, 3), 90, np.uint8)


def other_tool_bag(path, storage: StoragePlugin, with_pairs: bool):
    """Write a bag with rosbags (as ``ros2 bag record`` would): raw images, /rosout-like text."""
    store = bagfmt.typestore()
    writer = RosbagsWriter(path, version=8, storage_plugin=storage)
    writer.open()
    text = writer.add_connection('/chatter', bagfmt.STRING_TYPE, typestore=store)
    speed = writer.add_connection('/carla/hero/speedometer', bagfmt.FLOAT32_TYPE,
                                  typestore=store)
    image = control = None
    if with_pairs:
        image = writer.add_connection('/carla/hero/rgb_front/image', bagfmt.IMAGE_TYPE,
                                      typestore=store)
        control = writer.add_connection(bagfmt.CONTROL_TOPIC, bagfmt.CONTROL_TYPE,
                                        typestore=store)
    for i in range(5):
        stamp = 1_000_000_000 + i * 50_000_000
        message = store.types[bagfmt.STRING_TYPE](data='[1, 2]' if i % 2 else 'not json')
        writer.write(text, stamp, bytes(store.serialize_cdr(message, bagfmt.STRING_TYPE)))
        writer.write(speed, stamp, bagfmt.serialize_float32(2.0 + i))
        if with_pairs:
            writer.write(image, stamp, bagfmt.serialize_image(stamp, FRAME, 'bgr8'))
            writer.write(control, stamp, bagfmt.serialize_control(stamp, Control(steer=0.1 * i)))
    writer.close()


def test_recorder_bag_without_episode_markers(tmp_path, capsys):
    """A recording against a real bridge has no markers: info works, no episodes listed."""
    bag = tmp_path / 'bridge_run'
    with BagWriter(BagWriterConfig(str(bag))) as writer:
        for i in range(4):
            writer.write_pair(1_000_000_000 + i * 50_000_000, FRAME, 'bgr8', Control(), 1.0)
    assert read_json_topic(bag, bagfmt.EPISODE_TOPIC) == []
    info = bag_info(bag)
    assert info['pairs'] == 4 and info['episodes'] == []
    assert 'Episodes:         0' in format_info(info)
    assert main(['bag', 'info', str(bag)]) == 0
    assert 'Pairs:            4' in capsys.readouterr().out


@pytest.mark.parametrize('storage', [StoragePlugin.SQLITE3, StoragePlugin.MCAP])
@pytest.mark.parametrize('with_pairs', [True, False])
def test_other_tools_bags(tmp_path, capsys, storage, with_pairs):
    """sqlite3 and MCAP bags of other tools: info, --json and read_pairs work."""
    bag = tmp_path / 'other'
    other_tool_bag(bag, storage, with_pairs)
    info = bag_info(bag, check_images=True)
    assert info['storage'] == ('sqlite3' if storage == StoragePlugin.SQLITE3 else 'mcap')
    assert info['messages'] == (20 if with_pairs else 10)
    assert info['pairs'] == (5 if with_pairs else 0)
    assert info['episodes'] == [] and info['summary'] is None
    assert info['bag_format'] is None and info['recording_info'] is None
    format_info(info)
    pairs = list(read_pairs(bag))
    assert len(pairs) == info['pairs']
    if with_pairs:
        assert pairs[0].image_rgb.shape == (48, 64, 3)
        # Another role name: speed is only read from our speedometer topic naming pattern.
        assert pairs[2].speed == 4.0
    assert main(['bag', 'info', str(bag), '--json']) == 0
    assert json.loads(capsys.readouterr().out)['pairs'] == info['pairs']
