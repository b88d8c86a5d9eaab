"""read_pairs / count_pairs: pairing by stamp, episodes, bad frames, exclusions, errors."""
import cv2
from llava_drive.bag import format as bagfmt
from llava_drive.bag.reader import BagReadError, count_pairs, read_pairs, ReadStats
from llava_drive.bag.trim import add_exclusions
from llava_drive.bag.writer import BagWriter, BagWriterConfig
from llava_drive.control import Control
import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin, Writer as RosbagsWriter

STEP_NS = 50_000_000
START_NS = 1_700_000_000_000_000_000


def gradient_frame(index: int) -> np.ndarray:
    """Return a 64x96 BGR frame whose colour encodes ``index`` (checkable after JPEG)."""
    frame = np.zeros((64, 96, 3), np.uint8)
    frame[:, :, 0] = 10 * index  # blue
    frame[:, :, 2] = np.linspace(0, 255, 96, dtype=np.uint8)[None, :]
    return frame


def write_episodes(path, episodes=(4, 3), image_format='jpeg'):
    """Write consecutive episodes of pairs; return the stamps per episode id."""
    stamps = {}
    index = 0
    with BagWriter(BagWriterConfig(str(path), image_format=image_format)) as writer:
        for episode, length in enumerate(episodes):
            episode_stamps = [START_NS + (index + k) * STEP_NS for k in range(length)]
            writer.write_episode_marker(episode_stamps[0], {'event': 'start', 'episode': episode})
            for stamp in episode_stamps:
                writer.write_pair(stamp, gradient_frame(index), 'bgr8',
                                  Control(steer=index / 10, throttle=0.5, brake=0.0),
                                  speed=float(index))
                index += 1
            writer.write_episode_marker(episode_stamps[-1], {'event': 'end', 'episode': episode})
            stamps[episode] = episode_stamps
    return stamps


def test_pairs_in_order_with_episodes_and_speed(tmp_path):
    """Pairs come in stamp order with their control, speed, episode and RGB frame."""
    bag = tmp_path / 'bag'
    stamps = write_episodes(bag)
    stats = ReadStats()
    pairs = list(read_pairs(bag, stats=stats))
    assert [p.stamp_ns for p in pairs] == stamps[0] + stamps[1]
    assert [p.episode for p in pairs] == [0] * 4 + [1] * 3
    assert [p.speed for p in pairs] == [float(i) for i in range(7)]
    assert pytest.approx([p.control.steer for p in pairs]) == [i / 10 for i in range(7)]
    assert pairs[5].image_rgb.shape == (64, 96, 3) and pairs[5].image_rgb.dtype == np.uint8
    # RGB order: the blue channel (50 for index 5) is last.
    assert abs(int(pairs[5].image_rgb[:, :, 2].mean()) - 50) <= 3
    assert abs(int(pairs[5].image_rgb[:, :, 0].mean()) - 127) <= 3
    assert stats.as_dict() == {'pairs': 7, 'excluded': 0, 'unpaired_images': 0,
                               'unpaired_controls': 0, 'undecodable': {}}
    assert count_pairs(bag) == 7
    lazy = list(read_pairs(bag, decode_images=False))
    assert [p.image_rgb for p in lazy] == [None] * 7


def test_exclusions_are_honoured_by_default(tmp_path):
    """Excluded ranges and episodes are skipped unless honour_exclusions=False."""
    bag = tmp_path / 'bag'
    stamps = write_episodes(bag)
    # 0.05 s .. 0.10 s from the start covers the 2nd and 3rd pair; episode 1 entirely.
    add_exclusions(bag, ['0.05:0.1', 'episode:1'])
    stats = ReadStats()
    kept = [p.stamp_ns for p in read_pairs(bag, stats=stats)]
    assert kept == [stamps[0][0], stamps[0][3]]
    assert stats.excluded == 5
    assert count_pairs(bag) == 2
    assert count_pairs(bag, honour_exclusions=False) == 7


def foreign_bag(path):
    """Write a bag with rosbags' own writer: one unpaired image, one control, a broken JPEG."""
    store = bagfmt.typestore()
    writer = RosbagsWriter(path, version=8, storage_plugin=StoragePlugin.MCAP)
    writer.open()
    image = writer.add_connection('/cam/compressed', bagfmt.COMPRESSED_IMAGE_TYPE,
                                  typestore=store)
    control = writer.add_connection(bagfmt.CONTROL_TOPIC, bagfmt.CONTROL_TYPE, typestore=store)
    good = cv2.imencode('.jpg', gradient_frame(1))[1].tobytes()
    frames = {1_000: good, 2_000: good, 3_000: b'\xff\xd8 broken jpeg', 5_000: good}
    for stamp, data in frames.items():
        writer.write(image, stamp, bagfmt.serialize_compressed_image(stamp, data))
    for stamp in (1_000, 3_000, 4_000, 5_000):
        writer.write(control, stamp, bagfmt.serialize_control(stamp, Control(throttle=0.1)))
    writer.close()


def test_foreign_bag_with_unpaired_and_undecodable_frames(tmp_path):
    """Unpaired messages and broken frames are counted, never fatal; no speed gives NaN."""
    bag = tmp_path / 'foreign'
    foreign_bag(bag)
    stats = ReadStats()
    pairs = list(read_pairs(bag, stats=stats))
    assert [p.stamp_ns for p in pairs] == [1_000, 5_000]
    assert stats.unpaired_images == 1 and stats.unpaired_controls == 1
    assert dict(stats.undecodable) == {'undecodable_jpeg': 1} and stats.skipped == 1
    assert np.isnan(pairs[0].speed) and pairs[0].episode == -1
    # Without decoding, the broken frame still counts as a pair.
    assert count_pairs(bag) == 3


def test_read_errors_name_the_problem(tmp_path):
    """Missing bag, missing metadata and a truncated MCAP raise BagReadError with a hint."""
    with pytest.raises(BagReadError, match='does not exist'):
        list(read_pairs(tmp_path / 'missing'))
    (tmp_path / 'file').write_text('x')
    with pytest.raises(BagReadError, match='not a directory'):
        list(read_pairs(tmp_path / 'file'))
    bag = tmp_path / 'bag'
    write_episodes(bag)
    mcap_path = bag / 'bag_0.mcap'
    data = mcap_path.read_bytes()
    mcap_path.write_bytes(data[:len(data) // 2])  # metadata.yaml still claims a full file
    with pytest.raises(BagReadError, match='llava-drive bag recover'):
        list(read_pairs(bag))
    (bag / 'metadata.yaml').unlink()
    with pytest.raises(BagReadError, match='no metadata.yaml.*recover'):
        count_pairs(bag)
    empty = tmp_path / 'empty'
    empty.mkdir()
    with pytest.raises(BagReadError, match='no metadata.yaml and no .mcap'):
        list(read_pairs(empty))
