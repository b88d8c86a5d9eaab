"""Recording over a real rclpy graph: sim_bridge + expert + recorder as separate processes."""
import json
import os
import signal
import subprocess
import sys
import time

from llava_drive.bag import format as bagfmt
from llava_drive.bag.reader import OpenBag, read_json_topic, read_pairs
from llava_drive.bag.recover import recover_bag
from llava_drive.bringup.environment import local_ros_environment
from llava_drive.bringup.stack import Stack
from llava_drive.recording.session import RecordingOptions
from llava_drive.sim.road import Route, RouteConfig
from llava_drive.sim.world import SimConfig
from mcap.reader import make_reader
import pytest
from ros_helpers import wait_for
from std_msgs.msg import String
import yaml

SMALL = {'width': 200, 'height': 150}


def test_record_pairs_stamps_and_expert_on_road(tmp_path):
    from llava_drive.recording.session import record
    bag = tmp_path / 'run'
    result = record(RecordingOptions(duration=12.0, route_seeds=[4], out=bag,
                                     log_dir=tmp_path / 'logs', **SMALL), progress=False)
    pairs = list(read_pairs(bag))
    assert len(pairs) >= 0.95 * 12.0 / 0.05 and result['pairs'] == len(pairs)
    stamps = [p.stamp_ns for p in pairs]
    assert stamps == sorted(set(stamps))
    assert pairs[0].image_rgb.shape == (150, 200, 3)
    assert all(p.episode == 0 for p in pairs) and all(p.speed >= 0 for p in pairs)

    # Every control is stamped like an image, checked with an independent reader (mcap).
    by_topic = {}
    with open(next(bag.glob('*.mcap')), 'rb') as stream:
        for _, channel, message in make_reader(stream).iter_messages():
            by_topic.setdefault(channel.topic, set()).add(message.log_time)
    image_topic = bagfmt.compressed_topic(bagfmt.DEFAULT_IMAGE_TOPIC)
    assert by_topic[bagfmt.CONTROL_TOPIC] == by_topic[image_topic] == set(stamps)

    # The expert stayed in its lane: odometry against the route's own geometry.
    config = SimConfig()
    route = Route.generate(4, RouteConfig(length_m=config.route_length_m))
    with OpenBag(bag) as opened:
        odometry = [m for _, _, m in opened.messages(
            opened.connections(topic='/carla/ego_vehicle/odometry'))]
    assert len(odometry) == len(pairs)
    lateral = [route.project(m.pose.pose.position.x, m.pose.pose.position.y).lateral
               for m in odometry]
    assert max(abs(v - config.lane_offset_m) for v in lateral) < 1.0
    assert odometry[-1].twist.twist.linear.x > 3.0  # it really drove
    metadata = yaml.safe_load((bag / 'metadata.yaml').read_text())
    assert metadata['rosbag2_bagfile_information']['version'] == 8
    episodes = read_json_topic(bag, bagfmt.EPISODE_TOPIC)
    assert episodes and episodes[0][1]['event'] == 'start' and episodes[0][1]['route_seed'] == 4


def test_sigkill_loses_at_most_the_last_second(tmp_path):
    """Kill the recorder with SIGKILL mid-recording; ``recover`` restores what was on disk."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    bag = tmp_path / 'killed'
    options = RecordingOptions(duration=1000.0, route_seeds=[5], out=bag, **SMALL)
    specs = options.node_specs()
    for spec in specs:
        if spec.name == 'recorder':
            spec.overrides.update(status_period=0.05, flush_interval=0.25)
        if spec.name == 'sim_bridge':
            spec.overrides.update(synchronous_mode=False)  # real time: a steady stream
    env = local_ros_environment()
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node('kill_watcher', context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    statuses = []
    node.create_subscription(String, '/recorder/status',
                             lambda m: statuses.append((time.monotonic(), json.loads(m.data))),
                             10)
    stack = Stack(specs, env=env, log_dir=tmp_path / 'logs').start()
    try:
        def enough():
            executor.spin_once(timeout_sec=0.05)
            return statuses and statuses[-1][1]['pairs_written'] > 60
        assert wait_for(enough, timeout=60), statuses[-1:] or 'no status'
        for _ in range(10):
            executor.spin_once(timeout_sec=0.05)
        os.kill(stack.processes['recorder'].pid, signal.SIGKILL)
        killed_at = time.monotonic()
        stack.processes['recorder'].wait(5)
    finally:
        stack.stop()
        node.destroy_node()
        rclpy.try_shutdown(context=context)
    assert not (bag / 'metadata.yaml').exists()  # the kill left an unfinished bag
    # What the recorder had written one second before the kill must all come back.
    before = [s for t, s in statuses if t <= killed_at - 1.0]
    assert before, 'no status older than 1 s before the kill'
    promised = before[-1]
    report = recover_bag(bag)
    recovered = [p.stamp_ns for p in read_pairs(bag)]
    assert len(recovered) >= promised['pairs_written'], report
    assert recovered[:promised['pairs_written']][-1] <= promised['last_stamp_ns'] <= \
        recovered[-1]
    assert promised['last_stamp_ns'] in recovered


def test_record_command_refuses_a_non_empty_output(tmp_path):
    (tmp_path / 'taken').mkdir()
    (tmp_path / 'taken' / 'file').write_text('x')
    completed = subprocess.run(
        [sys.executable, '-m', 'llava_drive.cli', 'record', '--out', str(tmp_path / 'taken'),
         '--duration', '1'], capture_output=True, text=True, env=local_ros_environment())
    assert completed.returncode == 1
    assert 'not empty' in completed.stderr and 'Traceback' not in completed.stderr


@pytest.mark.parametrize('args,message', [(['--duration', '0'], 'duration'),
                                          (['--seed', 'x'], 'route seeds')])
def test_record_command_validates_arguments(args, message, tmp_path):
    completed = subprocess.run(
        [sys.executable, '-m', 'llava_drive.cli', 'record', '--out', str(tmp_path / 'b')] + args,
        capture_output=True, text=True, env=local_ros_environment())
    assert completed.returncode != 0 and message in completed.stderr
    assert 'Traceback' not in completed.stderr


FULL_DISK_RECORDER = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (600_000, 600_000))
from llava_drive.nodes.recorder import main
main(sys.argv[1:])
"""


def test_full_disk_stops_recording_cleanly_and_keeps_the_data(tmp_path):
    """A recorder whose file cannot grow (EFBIG, like ENOSPC) stops, stays up, keeps data."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    bag = tmp_path / 'full'
    options = RecordingOptions(duration=1000.0, route_seeds=[6], out=bag, **SMALL)
    sim, expert, recorder = options.node_specs()
    recorder.overrides.update(status_period=0.1, flush_interval=0.05)
    env = local_ros_environment()
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node('full_disk_watcher', context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    statuses = []
    node.create_subscription(String, '/recorder/status',
                             lambda m: statuses.append(json.loads(m.data)), 10)
    command = [sys.executable, '-c', FULL_DISK_RECORDER] + recorder.command()[3:]
    log = open(tmp_path / 'recorder.log', 'w')
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    stack = Stack([sim, expert], env=env).start()
    try:
        def failed():
            executor.spin_once(timeout_sec=0.05)
            return statuses and statuses[-1]['error']
        assert wait_for(failed, timeout=60), statuses[-1:] or 'no status'
        time.sleep(0.5)
        assert process.poll() is None  # the node is still up
        status = statuses[-1]
        assert not status['recording'] and 'File too large' in status['error']
    finally:
        stack.stop()
        process.send_signal(signal.SIGINT)
        process.wait(15)
        log.close()
        node.destroy_node()
        rclpy.try_shutdown(context=context)
    assert process.returncode == 0
    assert 'recording stopped' in (tmp_path / 'recorder.log').read_text()
    recover_bag(bag)
    recovered = list(read_pairs(bag))
    assert 0 < len(recovered) <= status['pairs_written']
    # Only pairs still in memory when the write failed are gone (the unflushed interval;
    # how many pairs that is depends on how fast the synchronous simulator ran).
    assert len(recovered) >= 0.75 * status['pairs_written']


def test_unwritable_bag_path_is_a_clear_error(ros_graph, tmp_path):
    from llava_drive.nodes.recorder import Recorder
    from rclpy.parameter import Parameter
    (tmp_path / 'file').write_text('not a directory')
    bag = Parameter('bag_path', value=str(tmp_path / 'file' / 'bag'))
    # Autostart: the node refuses to exist (run_node exits 2 with this one line).
    with pytest.raises(ValueError, match='file'):
        Recorder(context=ros_graph.context, parameter_overrides=[bag])
    # Started by ~/start: the service answers with the error, the node lives on.
    recorder = ros_graph.add(Recorder(context=ros_graph.context, parameter_overrides=[
        bag, Parameter('autostart', value=False)]))
    assert recorder.start().startswith('cannot start') and recorder.writer is None
    assert 'file' in recorder.error


def test_record_command_records_a_town_route(tmp_path):
    """``record --map town --seed 9001`` records the town route with its plan and lights."""
    from llava_drive.bag.route import frame_commands, read_plans, read_traffic_lights
    bag = tmp_path / 'town'
    completed = subprocess.run(
        [sys.executable, '-m', 'llava_drive.cli', 'record', '--map', 'town', '--seed', '9001',
         '--duration', '4', '--width', '96', '--height', '72', '--out', str(bag)],
        capture_output=True, text=True, env=local_ros_environment(), timeout=600)
    assert completed.returncode == 0, completed.stderr[-2000:]
    pairs = list(read_pairs(bag, decode_images=False))
    assert len(pairs) >= 0.95 * 4.0 / 0.05
    episodes = read_json_topic(bag, bagfmt.EPISODE_TOPIC)
    assert episodes[0][1]['route_seed'] == 9001
    assert list(read_plans(bag)) == [0] and read_traffic_lights(bag)
    assert {p.stamp_ns for p in pairs} <= set(frame_commands(bag))


def test_town_recording_options(tmp_path):
    """Town recordings drive the expert by the world's hazards; held-out routes are refused."""
    options = RecordingOptions(map_kind='town', route_seeds=[9001], out=tmp_path / 'a')
    specs = {spec.name: spec for spec in options.node_specs()}
    assert specs['sim_bridge'].overrides['map'] == 'town'
    assert specs['expert'].overrides['privileged_hazards'] is True
    road = {spec.name: spec for spec in RecordingOptions(out=tmp_path / 'b').node_specs()}
    assert road['sim_bridge'].overrides['map'] == 'road'
    assert 'privileged_hazards' not in road['expert'].overrides
    with pytest.raises(ValueError, match=r'route seeds \[9101\] belong to the held-out'):
        RecordingOptions(map_kind='town', route_seeds=[9001, 9101], out=tmp_path / 'c')
    with pytest.raises(ValueError, match='map_kind must be one of'):
        RecordingOptions(map_kind='city', out=tmp_path / 'd')
    with pytest.raises(ValueError, match='embedded simulator'):
        RecordingOptions(map_kind='town', backend='carla', out=tmp_path / 'e')


@pytest.mark.parametrize('backend, sim_synchronous, expected', [
    ('sim', True, True), ('sim', False, False), ('carla', False, True),
    ('carla_ros_bridge', True, False)])
def test_a_driving_policy_is_synchronous_only_where_the_bridge_steps_per_control(
        backend, sim_synchronous, expected, tmp_path):
    """The policy judges no age on the wall clock only behind a bridge that waits for it."""
    checkpoint = tmp_path / 'ckpt'
    checkpoint.mkdir()
    (checkpoint / 'config.json').write_text('{}')  # what the options look for
    options = RecordingOptions(backend=backend, synchronous=sim_synchronous, driver='policy',
                               checkpoint=checkpoint, out=tmp_path / 'bag')
    policy = next(spec for spec in options.node_specs() if spec.name == 'policy')
    assert policy.overrides['synchronous'] is expected
