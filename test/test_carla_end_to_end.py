"""
record -> extract -> train -> drive with ``--backend carla``: carla_bridge on the fake carla.

Every node runs as its own process on a real rclpy graph, as a user would run them; only the
CARLA server is faked (test/fake_carla, importable as ``carla`` by the children).
"""
import os

from carla_fakes import FAKE_CARLA_DIR
from fixtures_llava import tiny_llava_dir  # noqa: F401
from llava_drive.bag import format as bagfmt
from llava_drive.bag.reader import OpenBag, read_pairs
from llava_drive.cli import main
from llava_drive.features.store import load_feature_file
from llava_drive.nodes.control_codec import stamp_to_ns


def test_record_extract_train_drive_on_carla(tmp_path, monkeypatch, capsys,
                                             tiny_llava_dir):  # noqa: F811
    monkeypatch.setenv('PYTHONPATH', os.pathsep.join(
        [str(FAKE_CARLA_DIR)] + list(filter(None, [os.environ.get('PYTHONPATH')]))))
    # A domain away from the suite's 1-100: other test runs on this host must not cross-talk
    # with a stack whose every node is a separate process.
    monkeypatch.setenv('ROS_DOMAIN_ID', str(101 + os.getpid() % 100))
    features, model = tmp_path / 'features', tmp_path / 'model'
    small = ['--width', '96', '--height', '72']
    bags = []
    for seed in (3, 4):  # two bags: training splits by bag
        bag = tmp_path / f'bag_{seed}'
        code = main(['record', '--backend', 'carla', '--carla-town', 'Town02', '--seed',
                     str(seed), '--duration', '4', '--out', str(bag), '--log-dir',
                     str(tmp_path / f'rec_logs_{seed}'), *small])
        assert code == 0, capsys.readouterr().err[-2000:]
        bags.append(bag)
    pairs = list(read_pairs(bags[0]))
    assert len(pairs) >= 0.9 * 4.0 / 0.05
    assert pairs[0].image_rgb.shape == (72, 96, 3)
    stamps = [p.stamp_ns for p in pairs]
    assert all(b - a == 50_000_000 for a, b in zip(stamps, stamps[1:]))  # one tick per frame
    with OpenBag(bags[0]) as opened:
        odometry = [m for _, _, m in opened.messages(
            opened.connections(topic='/carla/ego_vehicle/odometry'))]
        controls = [stamp_to_ns(m.header.stamp) for _, _, m in opened.messages(
            opened.connections(topic=bagfmt.CONTROL_TOPIC))]
    assert odometry[-1].twist.twist.linear.x > 2.0  # the expert drove the CARLA car
    assert controls == stamps  # each control answers the frame it was computed from
    log = (tmp_path / 'rec_logs_3' / 'carla_bridge.log').read_text()
    assert 'CARLA 0.9.16 at localhost:2000, Town02' in log

    assert main(['extract', *map(str, bags), '--model', str(tiny_llava_dir), '--out',
                 str(features), '--batch-size', '16']) == 0
    stored = load_feature_file(features / 'bag_3.safetensors')
    assert stored.num_frames == len(pairs)
    assert main(['train', str(features), '--out', str(model), '--epochs', '3',
                 '--hidden-size', '32', '--no-progress']) == 0
    capsys.readouterr()

    code = main(['drive', '--backend', 'carla', '--checkpoint', str(model), '--seed', '3',
                 '--carla-town', 'Town02', '--duration', '60', '--log-dir',
                 str(tmp_path / 'drive_logs'), *small])
    output = capsys.readouterr().out
    assert code == 0, output
    log = (tmp_path / 'drive_logs' / 'carla_bridge.log').read_text()
    assert 'episode 0: route 3' in log
    assert 'steer' in output and 'route 3 RC' in output  # controls and the score arrived
