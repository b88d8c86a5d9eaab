"""
The policy node over a real rclpy graph.

A checkpoint is trained once per session on the tiny LLaVA's features of expert drives
rendered by the simulator; the node drives the sim_bridge car with it. Two more
checkpoints (a constant "drive on" head and one with NaN weights) exercise the safety gate.
"""
import json
import math
import shutil
import subprocess
import threading
import time

import cv2
from fixtures_llava import scene_frame, tiny_llava_dir  # noqa: F401 (a fixture)
from llava_drive.bringup.environment import config_path, local_ros_environment
from llava_drive.bringup.stack import NodeSpec
from llava_drive.control import Control, FULL_BRAKE
from llava_drive.expert.driver import ExpertDriver
from llava_drive.expert.noise import ExpertNoise, NoiseConfig
from llava_drive.image_codec import raw_fields
from llava_drive.nodes.control_codec import ControlCodec, ns_to_stamp
from llava_drive.nodes.policy import EMERGENCY_STOP_TOPIC, Policy
from llava_drive.policy.inference import PolicyLoadError
from llava_drive.sim.world import SimConfig, Simulator
import numpy as np
import pytest
from ros_helpers import Spinners, wait_for
from sensor_msgs.msg import Image
from std_msgs.msg import Bool, String
from std_srvs.srv import SetBool

CONTROL_TOPIC = '/carla/ego_vehicle/vehicle_control_cmd'
IMAGE_TOPIC = '/carla/ego_vehicle/rgb_front/image'
SIZE = (120, 160)  # small frames keep the tiny model and the renderer fast


def expert_drive(seed: int, frames: int):
    """Return (BGRA frames, actions, speeds) of the noisy expert driving route ``seed``."""
    sim = Simulator(SimConfig(width=SIZE[1], height=SIZE[0], route_seed=seed))
    sim.reset(seed)
    driver, noise = ExpertDriver(), ExpertNoise(NoiseConfig(ou_sigma=0.08), seed=seed)
    waypoints = sim.route_waypoints()
    images, actions, speeds = [], [], []
    for _ in range(frames):
        state = sim.state
        label = driver.control(state.x, state.y, state.yaw, state.speed, waypoints)
        images.append(sim.render())
        actions.append(label.as_array())
        speeds.append(state.speed)
        sim.step(noise.perturb(label, 0.05))  # recoveries in the data; the label stays clean
    return images, np.asarray(actions), np.asarray(speeds)


@pytest.fixture(scope='session')
def checkpoints(tiny_llava_dir, tmp_path_factory):  # noqa: F811
    """Train a head on tiny-LLaVA features of expert drives; add constant and NaN heads."""
    import torch
    from llava_drive.features.extractor import LlavaFeatureExtractor
    from llava_drive.features.store import write_feature_file
    from llava_drive.learning.checkpoint import save_checkpoint
    from llava_drive.learning.heads import build_head, HeadConfig
    from llava_drive.learning.train import train, TrainConfig

    torch.set_num_threads(1)  # OpenMP threads spin badly on a busy 2-core machine
    root = tmp_path_factory.mktemp('policy')
    extractor = LlavaFeatureExtractor(tiny_llava_dir)
    paths = []
    for seed in (2, 3, 4):
        images, actions, speeds = expert_drive(seed, 160)
        rgb = [cv2.cvtColor(image, cv2.COLOR_BGRA2RGB) for image in images]
        features = torch.cat([extractor.extract(rgb[i:i + 32]) for i in range(0, len(rgb), 32)])
        stamps = np.arange(len(rgb), dtype=np.int64) * 50_000_000 + 50_000_000
        paths.append(write_feature_file(
            root / 'features' / f'route_{seed}.safetensors', features.numpy(), actions, stamps,
            speeds, np.zeros(len(rgb)), extractor.spec))
    trained = root / 'trained'
    # Random tiny-LLaVA features carry little steering information: the regularized
    # defaults keep the head near the mean steering instead of memorising three routes.
    train(paths, trained, TrainConfig(hidden_size=64, epochs=60, batch_size=32, lr=3e-3,
                                      patience=0), progress=False, log=None)

    def constant(name, poison=False):
        head = build_head(HeadConfig(feature_dim=extractor.feature_dim, hidden_size=8))
        with torch.no_grad():
            head.layers[-1].weight.zero_()
            head.layers[-1].bias.copy_(torch.tensor([0.0, 0.5, -4.0]))  # thr 0.62, brk 0.02
            if poison:  # finite weights (NaN ones are refused on load), NaN outputs: x / 0
                head.feature_std.zero_()
        return save_checkpoint(root / name, head, extractor.spec)

    waypoint_head = build_head(HeadConfig(feature_dim=extractor.feature_dim, hidden_size=8,
                                          output='waypoints', num_waypoints=4))
    with torch.no_grad():
        waypoint_head.layers[-1].weight.zero_()
        waypoint_head.layers[-1].bias.zero_()
    # A path bending left, 2 m per point, target 6 m/s: the controller steers left, drives.
    waypoint_head.set_output_normalization(WAYPOINT_PATH, np.ones(9))
    return {'trained': trained, 'constant': constant('constant'),
            'nan': constant('nan', poison=True), 'root': root,
            'waypoints': save_checkpoint(root / 'waypoints', waypoint_head, extractor.spec)}


WAYPOINT_PATH = [2.0, 0.1, 4.0, 0.4, 6.0, 0.9, 8.0, 1.6, 6.0]


@pytest.fixture
def alone(ros_graph):
    """Provide :class:`~ros_helpers.Spinners` on the test graph's context; stop them afterwards."""
    spinners = Spinners(ros_graph.context)
    yield spinners
    spinners.stop_all()


def start_policy(alone, checkpoint, **params):
    """Start a policy node with ``params`` on its own executor."""
    from rclpy.parameter import Parameter
    params = dict({'checkpoint': str(checkpoint), 'cpu_threads': 1}, **params)
    return alone.start(Policy(context=alone.context, parameter_overrides=[
        Parameter(name, value=value) for name, value in params.items()]))


class Controls:
    """Every control on the wire: (arrival wall time, stamp_ns, Control)."""

    def __init__(self, node):
        self.codec = ControlCodec()
        self.items = []
        node.create_subscription(self.codec.msg_type, CONTROL_TOPIC, self.on_control, 100)

    def on_control(self, msg):
        self.items.append((time.monotonic(),) + self.codec.decode(msg))

    def after(self, moment):
        """Return the controls that arrived after ``moment``."""
        return [item for item in list(self.items) if item[0] > moment]

    def driving(self, since=0.0):
        """Return True once a control with throttle arrived after ``since``."""
        return any(c.throttle > 0 for _, _, c in self.after(since))


class Camera:
    """Publishes 20 Hz bgra8 frames with increasing stamps while ``running``."""

    def __init__(self, node):
        self.pub = node.create_publisher(Image, IMAGE_TOPIC, 10)
        self.running = True
        self.sent = []  # (wall time, stamp_ns)
        self.count = 0
        node.create_timer(0.05, self.tick)

    def tick(self):
        if not self.running:
            return
        self.count += 1
        stamp_ns = 1_000_000_000 + self.count * 50_000_000
        image = Image()
        ns_to_stamp(stamp_ns, image.header.stamp)
        image.encoding = 'bgra8'
        frame = cv2.cvtColor(scene_frame(self.count, *SIZE), cv2.COLOR_RGB2BGRA)
        image.height, image.width, image.step, image.data = raw_fields(frame)
        self.pub.publish(image)
        self.sent.append((time.monotonic(), stamp_ns))


def test_policy_drives_the_simulated_car_along_the_route(alone, checkpoints, tmp_path):
    from llava_drive.nodes.sim_bridge import SimBridge
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import Image as ImageMsg
    from visualization_msgs.msg import MarkerArray

    # A generous max_age: a busy CI machine must not turn this into a test of the gate.
    policy = start_policy(alone, checkpoints['trained'], max_age=10.0)
    watcher = alone.node('drive_watcher')
    controls = Controls(watcher)
    statuses, annotated, markers = [], [], []
    watcher.create_subscription(String, '/llava_drive/sim/status',
                                lambda m: statuses.append(json.loads(m.data)), 100)
    watcher.create_subscription(ImageMsg, '/policy/annotated_image', annotated.append, 1)
    watcher.create_subscription(MarkerArray, '/policy/predicted_path', markers.append, 1)
    alone.start(SimBridge(context=alone.context, parameter_overrides=[
        Parameter('image_width', value=SIZE[1]), Parameter('image_height', value=SIZE[0]),
        Parameter('route_seeds', value=[101]), Parameter('start_delay', value=0.5)]))
    assert wait_for(lambda: statuses and statuses[-1]['stamp_ns'] >= 10_000_000_000,
                    timeout=120), statuses[-1:] or 'the simulator never started'
    seen = list(statuses)  # a snapshot: the simulator keeps going
    last = seen[-1]
    # The car drove: it has speed and covered part of the route.
    assert max(s['speed'] for s in seen) > 1.0
    assert last['route_completion'] > 1.0 and last['episode'] == 0, last
    # One inference result per frame, stamped with the frame it came from: every frame
    # the simulator stepped past was answered by a control carrying exactly its stamp.
    frame_stamps = [s['stamp_ns'] for s in seen[:-1]]
    answered = {stamp for _, stamp, _ in controls.items}
    assert set(frame_stamps) <= answered
    assert policy.worker.stats()['processed'] >= 0.9 * len(frame_stamps)
    print('drive:', {k: last[k] for k in ('route_completion', 'speed', 'x', 'y', 'counts')})
    # RViz outputs: the annotated frame and the path in the vehicle frame.
    assert wait_for(lambda: annotated and markers, timeout=5)
    image = annotated[-1]
    assert image.encoding == 'bgr8' and image.width >= SIZE[1]
    frame = np.frombuffer(image.data, np.uint8).reshape(image.height, image.width, 3)
    assert cv2.imwrite(str(tmp_path / 'annotated.png'), frame)
    line, text = markers[-1].markers
    assert line.header.frame_id == 'ego_vehicle' and len(line.points) == 30
    assert line.points[0].x == 0.0 and line.points[-1].x > 4.0
    assert text.text.startswith('LANEFOLLOW: steer')  # no plan on the road map


def test_a_synchronous_simulator_gets_exactly_one_control_per_frame(alone, checkpoints):
    """The control rate contract (architecture: Control rate) measured on a real graph."""
    from collections import Counter
    from llava_drive.nodes.sim_bridge import SimBridge
    from rclpy.parameter import Parameter

    # A generous max_age and control timeout: a busy machine must not make the gate brake
    # or the simulator step without waiting.
    policy = start_policy(alone, checkpoints['constant'], max_age=30.0, gate_rate=50.0)
    watcher = alone.node('rate_watcher')
    controls = Controls(watcher)
    statuses = []
    watcher.create_subscription(String, '/llava_drive/sim/status',
                                lambda m: statuses.append(json.loads(m.data)), 100)
    alone.start(SimBridge(context=alone.context, parameter_overrides=[
        Parameter('image_width', value=SIZE[1]), Parameter('image_height', value=SIZE[0]),
        Parameter('route_seeds', value=[101]), Parameter('start_delay', value=0.5),
        Parameter('control_timeout', value=60.0)]))
    assert wait_for(lambda: len(statuses) >= 60, timeout=180), \
        statuses[-1:] or 'the simulator never started'
    seen = list(statuses)
    assert seen[-1]['control_timeouts'] == 0
    frames = [s['stamp_ns'] for s in seen[:-1]]  # every frame the simulator stepped past
    # The simulator had each frame's control; the watcher gets it too.
    assert wait_for(lambda: {stamp for _, stamp, _ in controls.items} >= set(frames),
                    timeout=30)
    per_stamp = Counter(stamp for _, stamp, _ in list(controls.items))
    answers = [per_stamp[stamp] for stamp in frames]
    # Exactly one control per frame: the gate timer (50 Hz here) added nothing.
    assert answers == [1] * len(frames), Counter(answers)
    # Otherwise only brakes before the first image (stamp 0) and answers to frames newer
    # than the snapshot.
    extra = {stamp for stamp in per_stamp if stamp not in set(frames)}
    assert all(stamp == 0 or stamp > frames[-1] for stamp in extra), extra
    print(f'controls per frame: {sum(answers) / len(frames):.3f} over {len(frames)} frames; '
          f'{policy.published} controls published')


def test_images_that_stop_are_braked_for_within_max_age(alone, checkpoints):
    max_age = 0.8
    start_policy(alone, checkpoints['constant'], max_age=max_age, gate_rate=20.0)
    helper = alone.node('camera')
    controls, camera = Controls(helper), Camera(helper)
    assert wait_for(controls.driving, timeout=15), controls.items[-3:]
    time.sleep(0.5)
    camera.running = False
    last_image, last_stamp = camera.sent[-1]
    time.sleep(max_age + 0.8)
    after = controls.after(last_image)
    brakes = [item for item in after if item[2] == FULL_BRAKE]
    assert brakes, after[-3:]
    first_brake, brake_stamp, _ = brakes[0]
    # Not before max_age (the gate keeps the last command until then), and within max_age
    # plus one gate period and slack for a busy machine.
    waited = first_brake - last_image
    assert max_age <= waited <= max_age + 0.05 + 0.35, \
        [(round(t - last_image, 3), s, c.throttle) for t, s, c in after[:12]]
    assert brake_stamp == last_stamp  # a waiting bridge gets it for its current frame
    late = [c for t, _, c in after if t > first_brake]
    assert late and all(c == FULL_BRAKE for c in late)


def test_inference_slower_than_max_age_never_drives(alone, checkpoints):
    policy = start_policy(alone, checkpoints['constant'], max_age=0.3,
                          debug_inference_delay=1.0)
    windows = []  # (start, end) of each inference, wall time
    infer = policy.worker.infer

    def timed_infer(frame):
        started = time.monotonic()
        try:
            return infer(frame)
        finally:
            windows.append((started, time.monotonic()))

    policy.worker.infer = timed_infer
    helper = alone.node('camera')
    controls, camera = Controls(helper), Camera(helper)
    assert wait_for(lambda: policy.worker.processed >= 3, timeout=20)
    camera.running = False
    sent = {stamp for _, stamp in camera.sent}
    items = list(controls.items)
    assert items and all(c == FULL_BRAKE for _, _, c in items)  # never a throttle
    # Results still go out (as brakes, with their frame's stamp) ...
    assert sum(1 for _, stamp, _ in items if stamp in sent) >= 3
    # ... and the gate timer keeps publishing while an inference runs (20 Hz over 1 s; the
    # best window counts, so one stall of a busy machine does not decide).
    during = [sum(1 for t, _, _ in items if start < t < end) for start, end in windows]
    assert max(during) >= 10, during
    assert policy.gate.interventions['stale_inference'] >= 3
    assert policy.worker.dropped_stale > 0  # frames that arrived while it was busy


def test_synchronous_policy_drives_however_slow_inference_is(alone, checkpoints):
    # A synchronous simulator waits for the control: slow is not late, and no timer brake
    # may answer a frame in the model's place.
    policy = start_policy(alone, checkpoints['constant'], max_age=0.3, synchronous=True,
                          debug_inference_delay=1.0)
    helper = alone.node('camera')
    controls, camera = Controls(helper), Camera(helper)
    assert wait_for(lambda: policy.worker.processed >= 3 and len(controls.items) >= 3,
                    timeout=60)
    camera.running = False
    sent = {stamp for _, stamp in camera.sent}
    items = list(controls.items)
    assert all(c.throttle > 0.5 and c.brake == 0.0 for _, _, c in items), items[:3]
    assert all(stamp in sent for _, stamp, _ in items)  # each one answers its frame
    assert not policy.gate.interventions['stale_inference']
    assert not policy.gate.interventions['stale_image']


def test_nan_outputs_brake(alone, checkpoints):
    policy = start_policy(alone, checkpoints['nan'])
    helper = alone.node('camera')
    controls, camera = Controls(helper), Camera(helper)
    assert wait_for(lambda: policy.worker.processed >= 5, timeout=15)
    camera.running = False
    sent = {stamp for _, stamp in camera.sent}
    items = list(controls.items)
    assert all(c == FULL_BRAKE for _, _, c in items)
    assert any(stamp in sent for _, stamp, _ in items)
    assert policy.gate.interventions['nan_output'] >= 5


def test_waypoint_head_drives_through_the_controller_with_markers(alone, checkpoints):
    from nav_msgs.msg import Odometry
    from visualization_msgs.msg import MarkerArray

    policy = start_policy(alone, checkpoints['waypoints'], max_age=10.0,
                          controller_kp=0.5, controller_stop_brake=0.7)
    assert policy.worker.controller is not None
    assert policy.worker.controller.config.kp == 0.5
    helper = alone.node('camera')
    markers = []
    helper.create_subscription(MarkerArray, '/policy/predicted_path', markers.append, 10)
    odometry = helper.create_publisher(Odometry, '/carla/ego_vehicle/odometry', 10)
    bad = Odometry()
    bad.pose.pose.position.x = math.nan
    controls, camera = Controls(helper), Camera(helper)
    assert wait_for(lambda: policy.worker.processed >= 5 and markers, timeout=60)
    odometry.publish(bad)
    assert wait_for(lambda: policy.rejected['odometry_not_finite'] >= 1, timeout=30)
    camera.running = False
    sent = {stamp for _, stamp in camera.sent}
    answered = [c for _, stamp, c in list(controls.items) if stamp in sent]
    assert answered and all(c.steer < -0.05 and c.throttle > 0.1 and c.brake == 0
                            for c in answered[-3:])
    names = {(m.ns, m.id) for m in markers[-1].markers}
    assert ('predicted_path', 2) in names
    waypoints = [m for m in markers[-1].markers if m.id == 2][0]
    assert [round(p.x, 3) for p in waypoints.points] == [0.0, 2.0, 4.0, 6.0, 8.0]
    text = [m for m in markers[-1].markers if m.id == 1][0].text
    assert text.startswith('LANEFOLLOW: steer') and 'target 6.0 m/s' in text
    # With a global plan (latched) and odometry the route command comes from the plan.
    from llava_drive.nodes.interfaces import LATCHED_QOS
    from llava_drive.nodes.route_codec import encode_plan, plan_type
    from llava_drive.planning import GlobalPlan
    from nav_msgs.msg import Path

    plan = GlobalPlan([(0, 0, 0), (10, 0, 0), (30, 0, 0), (40, 10, math.pi / 2)],
                      ['LANEFOLLOW', 'LANEFOLLOW', 'LEFT', 'LANEFOLLOW'])
    plans = helper.create_publisher(plan_type(), '/carla/ego_vehicle/global_plan', LATCHED_QOS)
    plans.publish(encode_plan(plan, helper.get_clock().now().to_msg()))
    assert wait_for(lambda: policy.route_tracker.plan is not None, timeout=30)
    here = Odometry()
    here.pose.pose.position.x, here.pose.pose.position.y = 12.0, 0.2
    here.pose.pose.orientation.w = 1.0
    odometry.publish(here)
    assert wait_for(lambda: policy.pose is not None, timeout=30)
    camera.running = True
    assert wait_for(lambda: any(m.id == 1 and m.text.startswith('LEFT: ')
                                for m in markers[-1].markers), timeout=60)
    camera.running = False
    if plan_type() is Path:  # an unknown option name is refused and counted
        broken = encode_plan(plan, helper.get_clock().now().to_msg())
        broken.poses[1].header.frame_id = 'NORTH'
        plans.publish(broken)
        assert wait_for(lambda: policy.rejected['global_plan_malformed'] >= 1,
                        timeout=30)


def test_annotated_frame_shows_route_waypoints_and_controller():
    from llava_drive.policy.annotate import annotate_frame, WAYPOINT_COLOUR

    frame = scene_frame(3, 240, 320)
    plain = annotate_frame(frame, Control(steer=-0.3, throttle=0.5))
    drawn = annotate_frame(frame, Control(steer=-0.3, throttle=0.5), command='LEFT',
                           waypoints=np.array(WAYPOINT_PATH[:-1]).reshape(4, 2),
                           target_speed=6.0, lookahead=(4.0, 0.4))
    blue = np.all(drawn == WAYPOINT_COLOUR, axis=2)
    assert blue.sum() > 30 and not np.all(plain == WAYPOINT_COLOUR, axis=2).any()
    # The inset sits in the top-right corner.
    assert blue[:, 220:].sum() > 20
    broken = annotate_frame(frame, Control(), waypoints=np.full((4, 2), np.nan))
    assert broken.shape == drawn.shape


def test_emergency_stop_enable_service_diagnostics_and_final_brake(alone, checkpoints):
    from diagnostic_msgs.msg import DiagnosticArray

    policy = start_policy(alone, checkpoints['constant'])
    helper = alone.node('operator')
    controls = Controls(helper)
    Camera(helper)
    diagnostics = []
    helper.create_subscription(DiagnosticArray, '/diagnostics', diagnostics.append, 10)
    estop = helper.create_publisher(Bool, EMERGENCY_STOP_TOPIC, 10)
    assert wait_for(controls.driving, timeout=15)

    def brakes_after(moment):
        """Wait for the first brake after ``moment``; check only brakes follow it."""
        assert wait_for(lambda: any(c == FULL_BRAKE for _, _, c in controls.after(moment)),
                        timeout=5)
        first = next(t for t, _, c in controls.after(moment) if c == FULL_BRAKE)
        time.sleep(0.5)
        later = [c for _, _, c in controls.after(first)]
        assert later and all(c == FULL_BRAKE for c in later), later
        return first - moment

    assert wait_for(lambda: estop.get_subscription_count() > 0, timeout=5)
    pressed = time.monotonic()
    estop.publish(Bool(data=True))
    assert brakes_after(pressed) < 1.0
    released = time.monotonic()
    estop.publish(Bool(data=False))
    assert wait_for(lambda: controls.driving(released), timeout=5)

    client = helper.create_client(SetBool, '/policy/enable')
    assert client.wait_for_service(timeout_sec=5)

    def call(value):
        future = client.call_async(SetBool.Request(data=value))
        assert wait_for(future.done, timeout=5)
        return future.result()

    disabled = time.monotonic()
    assert call(False).success
    assert brakes_after(disabled) < 1.0
    enabled = time.monotonic()
    assert call(True).success
    assert wait_for(lambda: controls.driving(enabled), timeout=5)

    assert wait_for(lambda: diagnostics, timeout=3)
    values = {kv.key: kv.value for kv in diagnostics[-1].status[0].values}
    for key in ('inference_latency_p50_ms', 'inference_latency_p99_ms', 'frames_per_s',
                'frames_dropped_stale', 'intervention_emergency_stop',
                'intervention_disabled', 'enabled', 'emergency_stop'):
        assert key in values, sorted(values)
    assert int(values['intervention_emergency_stop']) > 0
    assert float(values['frames_per_s']) > 5.0

    # Shutting down sends a final full brake: the bridge would apply the last control forever.
    assert controls.driving(time.monotonic() - 0.2)
    removed = time.monotonic()
    alone.stop(policy)
    assert wait_for(lambda: controls.items[-1][2] == FULL_BRAKE, timeout=3), \
        [(t - removed, s, c) for t, s, c in controls.items[-4:]]
    count = len(controls.items)
    time.sleep(0.3)
    assert len(controls.items) == count  # nothing after it


def test_node_process_sends_a_final_brake_on_ctrl_c(alone, checkpoints, tmp_path):
    """Ctrl-C (SIGINT, as ros2 launch and Stack send it) still gets the brake out."""
    from llava_drive.bringup.stack import Stack

    helper = alone.node('camera')
    controls = Controls(helper)
    Camera(helper)
    spec = NodeSpec('policy', 'llava_drive.nodes.policy', str(config_path('policy.yaml')),
                    {'checkpoint': str(checkpoints['constant']), 'cpu_threads': 1})
    stack = Stack([spec], env=local_ros_environment(), log_dir=tmp_path).start()
    try:
        assert wait_for(controls.driving, timeout=60), (tmp_path / 'policy.log').read_text()
        assert stack.stop_node('policy') == 0
    finally:
        stack.stop()
    assert wait_for(lambda: controls.items[-1][2] == FULL_BRAKE, timeout=3)


@pytest.fixture
def other_model(tmp_path_factory):
    """Create a second tiny LLaVA with different weights (same architecture)."""
    from llava_drive.features.tiny_model import create_tiny_llava
    return create_tiny_llava(tmp_path_factory.mktemp('other') / 'tiny', seed=1)


def test_a_checkpoint_for_another_model_is_refused_at_start_up(
        alone, checkpoints, other_model):
    with pytest.raises(PolicyLoadError, match='model_hash: checkpoint "[0-9a-f]+", '
                                              'extractor "[0-9a-f]+"'):
        start_policy(alone, checkpoints['constant'], model=str(other_model))
    # The same refusal from the node process: exit code 2, a message, no traceback.
    spec = NodeSpec('policy', 'llava_drive.nodes.policy', str(config_path('policy.yaml')),
                    {'checkpoint': str(checkpoints['constant']), 'model': str(other_model)})
    completed = subprocess.run(spec.command(), capture_output=True, text=True, timeout=120,
                               env=local_ros_environment())
    assert completed.returncode == 2, completed.stderr[-2000:]
    assert 'refused to start' in completed.stderr and 'model_hash' in completed.stderr
    assert 'Traceback' not in completed.stderr


def test_a_changed_feature_spec_is_refused_naming_the_field(alone, checkpoints):
    edited = checkpoints['root'] / 'edited'
    shutil.copytree(checkpoints['constant'], edited)
    config = json.loads((edited / 'config.json').read_text())
    config['feature_spec']['image_size'] = 224  # trained on a differently sized input
    (edited / 'config.json').write_text(json.dumps(config))
    with pytest.raises(PolicyLoadError, match='image_size: checkpoint 224, extractor 112'):
        start_policy(alone, edited)


@pytest.mark.parametrize('checkpoint, message', [
    ('', 'no checkpoint given'),
    ('/nonexistent/checkpoint', 'checkpoint directory not found: /nonexistent/checkpoint'),
])
def test_missing_checkpoint_is_a_clear_error(alone, checkpoint, message):
    with pytest.raises(PolicyLoadError, match=message):
        start_policy(alone, checkpoint)


def test_worker_keeps_a_frame_history_for_temporal_heads(checkpoints):
    """A K=3 speed head gets [3, D] windows and speeds, padded at the start."""
    from llava_drive.policy.inference import FeatureHistory, Frame, InferenceWorker, LoadedPolicy

    history = FeatureHistory(3)
    first, speeds, commands, targets = history.push(np.ones(4), 1.0)
    assert first.shape == (3, 4) and speeds.tolist() == [1.0, 1.0, 1.0]
    assert commands.tolist() == [4, 4, 4] and np.isnan(targets).all()  # LANEFOLLOW, unknown
    _, speeds, _, _ = history.push(np.zeros(4), 2.0, 1, (20.0, 3.0))
    assert speeds.tolist() == [1.0, 1.0, 2.0]
    _, speeds, _, _ = history.push(np.zeros(4), 3.0)
    window, speeds, commands, targets = history.push(np.full(4, 5.0), 4.0, 2, (9.0, -1.0))
    assert speeds.tolist() == [2.0, 3.0, 4.0] and window[-1].tolist() == [5.0] * 4
    assert commands.tolist() == [1, 4, 2] and targets[0].tolist() == [20.0, 3.0]

    seen = []

    class Head:
        window, uses_speed = 3, True

        def predict(self, features, speed, command=None, target=None):
            seen.append((features.shape, list(speed)))
            return np.array([0.1, 0.2, 0.0], np.float32)

    class Extractor:
        def extract(self, frames, routes=None):
            import torch
            return torch.full((len(frames), 6), float(frames[0][0, 0, 0]))

    results = []
    done = threading.Event()

    def collect(result):
        results.append(result)
        done.set()

    worker = InferenceWorker(LoadedPolicy(Extractor(), Head(), {}), collect).start()
    try:
        for index in range(3):
            done.clear()
            worker.submit(Frame(index, np.full((2, 2, 3), index, np.uint8), 'rgb8',
                                time.monotonic(), speed=float(index)))
            assert done.wait(5)
    finally:
        worker.stop()
    assert [r.stamp_ns for r in results] == [0, 1, 2]
    assert results[-1].control == Control(steer=pytest.approx(0.1), throttle=pytest.approx(0.2))
    assert seen == [((3, 6), [0.0, 0.0, 0.0]), ((3, 6), [0.0, 0.0, 1.0]),
                    ((3, 6), [0.0, 1.0, 2.0])]


def test_yaml_sets_only_declared_parameters_with_their_types(alone):
    import yaml
    from llava_drive.nodes.policy import declare_parameters

    node = alone.node('policy_parameters')
    declared = declare_parameters(node)
    document = yaml.safe_load(config_path('policy.yaml').read_text())
    assert list(document) == ['policy'] and list(document['policy']) == ['ros__parameters']
    values = document['policy']['ros__parameters']
    assert set(values) == set(declared)
    for name, value in values.items():
        assert type(value) is type(declared[name]) and value == declared[name], name


@pytest.mark.parametrize('steer', [-1.0, -0.3, 0.0, 0.5, 1.0])
def test_steering_path_is_a_bicycle_model_arc_turning_right_for_positive_steer(steer):
    from llava_drive.policy.annotate import steering_path

    points = steering_path(steer, speed=5.0, max_steer_deg=35.0, wheelbase=2.9)
    assert points.shape == (30, 2) and points[0].tolist() == [0.0, 0.0]
    # Arc length: 2 s at 5 m/s.
    length = np.sum(np.linalg.norm(np.diff(points, axis=0), axis=1))
    assert length == pytest.approx(10.0, rel=1e-3)
    if steer == 0.0:
        assert np.all(points[:, 1] == 0.0)
        return
    radius = 2.9 / math.tan(math.radians(35.0 * abs(steer)))
    centre = np.array([0.0, -math.copysign(radius, steer)])  # right turn: centre at -y
    assert np.linalg.norm(points - centre, axis=1) == pytest.approx(radius)
    assert np.all(np.sign(points[1:, 1]) == -np.sign(steer))


def test_annotated_frame_shows_expert_and_gate():
    from llava_drive.policy.annotate import annotate_frame

    frame = scene_frame(3, 240, 320)
    plain = annotate_frame(frame, Control(steer=0.3, throttle=0.5))
    both = annotate_frame(frame, Control(steer=0.3, throttle=0.5),
                          expert=Control(steer=-0.5, throttle=0.2), gate_reason='stale_image')
    assert plain.shape == both.shape == (240, 320, 3)
    magenta = np.all(both == (255, 0, 255), axis=2)
    assert magenta.sum() > 50 and not np.all(plain == (255, 0, 255), axis=2).any()
    # Expert arrow on the left half (steer -0.5 turns left), red frame around the image.
    rows, cols = np.nonzero(magenta[120:])
    assert np.median(cols) < 160
    assert np.all(both[0, :] == (0, 0, 255)) and np.all(both[:, -1] == (0, 0, 255))
