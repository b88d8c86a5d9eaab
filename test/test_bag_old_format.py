"""Bags written before the metadata and recovery changes stay readable by every tool."""
from llava_drive.bag import format as bagfmt
from llava_drive.bag.info import bag_info
from llava_drive.bag.reader import read_pairs
from llava_drive.bag.recover import recover_bag
from llava_drive.bag.trim import add_exclusions, load_exclusions
from llava_drive.bag.writer import BagWriter, BagWriterConfig
from llava_drive.cli import main
from llava_drive.control import Control
import numpy as np
import yaml

FOXY_INFINITE = '{nsec: 4294967295, sec: 2147483647}'


def old_style_bag(path, monkeypatch):
    """Write a bag with the QoS, metadata and leftovers of the earlier releases."""
    current = bagfmt.topic_qos_yaml
    # Channel metadata in the MCAP and metadata.yaml both carried the Foxy sentinel.
    monkeypatch.setattr(bagfmt, 'topic_qos_yaml', lambda topic: current(topic).replace(
        '{nsec: 854775807, sec: 9223372036}', FOXY_INFINITE))
    with BagWriter(BagWriterConfig(str(path))) as writer:
        writer.write_episode_marker(1_000_000_000, {'event': 'start', 'episode': 0})
        for i in range(5):
            writer.write_pair(1_000_000_000 + i * 50_000_000, np.zeros((24, 32, 3), np.uint8),
                              'bgr8', Control(steer=0.1 * i, throttle=0.5), float(i))
    document = yaml.safe_load((path / 'metadata.yaml').read_text())
    info = document['rosbag2_bagfile_information']
    info['ros_distro'] = 'llava_drive'  # what the earlier writer stored without ROS_DISTRO
    for topic in info['topics_with_message_count']:
        assert FOXY_INFINITE in topic['topic_metadata']['offered_qos_profiles']
    monkeypatch.undo()
    (path / 'metadata.yaml').write_text(yaml.safe_dump(document, sort_keys=False))
    # Earlier recoveries kept the original inside the bag directory.
    (path / f'{path.name}_0.mcap.orig').write_bytes((path / f'{path.name}_0.mcap').read_bytes())
    # An exclusions file as the earlier `bag trim` wrote it.
    (path / 'exclusions.yaml').write_text(
        'version: 1\nexclusions:\n- start_ns: 1100000000\n  end_ns: 1100000000\n'
        '  spec: 0.1:0.1\n  reason: bump\n')


def test_old_bags_read_inspect_trim_and_recover(tmp_path, capsys, monkeypatch):
    """Old metadata values, a .orig file inside and an old exclusions file: all tools work."""
    bag = tmp_path / 'old'
    old_style_bag(bag, monkeypatch)
    assert [p.stamp_ns for p in read_pairs(bag)] == [1_000_000_000, 1_050_000_000,
                                                     1_150_000_000, 1_200_000_000]
    info = bag_info(bag)
    assert info['pairs'] == 5 and info['pairs_after_exclusions'] == 4
    assert info['episodes'][0]['pairs'] == 5 and info['exclusions_error'] is None
    assert main(['bag', 'info', str(bag)]) == 0
    assert 'Exclusions:       1' in capsys.readouterr().out
    assert load_exclusions(bag).items[0].reason == 'bump'
    add_exclusions(bag, ['episode:0'])
    assert len(load_exclusions(bag)) == 2
    # The .orig file is not a second MCAP of the bag: recovery finds the bag healthy.
    report = recover_bag(bag)
    assert report.action == 'healthy' and report.pairs == 5
    assert bagfmt.read_metadata(bag)['ros_distro'] == 'llava_drive'  # left as it was
    # An old bag that needs recovery keeps its own QoS strings (they must match the MCAP).
    (bag / 'metadata.yaml').unlink()
    (bag / 'exclusions.yaml').unlink()
    assert recover_bag(bag).action == 'metadata_written'
    assert len(list(read_pairs(bag))) == 5
    topic = bagfmt.read_metadata(bag)['topics_with_message_count'][0]['topic_metadata']
    assert FOXY_INFINITE in topic['offered_qos_profiles']
