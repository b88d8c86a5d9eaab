"""Waypoint heads: labels from odometry, the controller, heads with route inputs, training."""
import json
import math

from learning_data import DIM, write_driving_bag
from llava_drive.control import FULL_BRAKE
from llava_drive.learning.checkpoint import load_checkpoint
from llava_drive.learning.dataset import build_windows, DatasetError, load_feature_files
from llava_drive.learning.evaluate_offline import evaluate_offline
from llava_drive.learning.heads import build_head, HeadConfig
from llava_drive.learning.train import train, TrainConfig
from llava_drive.learning.waypoints import waypoint_labels, WaypointSpec
from llava_drive.policy.controller import ControllerConfig, WaypointController
import numpy as np
import pytest
import torch

NS = 50_000_000  # 20 Hz


def straight_drive(count=60, speed=4.0, yaw=0.5):
    """Return stamps, poses and speeds of a car driving straight at ``speed`` along ``yaw``."""
    t = np.arange(count) * NS / 1e9
    pose = np.stack([10 + speed * t * math.cos(yaw), -3 + speed * t * math.sin(yaw),
                     np.full(count, yaw)], axis=1)
    return 1_000 + np.arange(count) * NS, pose, np.full(count, speed)


def test_labels_are_future_positions_in_the_vehicle_frame():
    stamps, pose, speed = straight_drive()
    spec = WaypointSpec(num_waypoints=4, spacing_s=0.5, speed_horizon_s=1.0)
    labels, valid = waypoint_labels(stamps, pose, speed, np.zeros(len(stamps)), spec)
    # The last 2 s (40 frames at 20 Hz) cannot see 2 s ahead.
    assert valid[:20].all() and not valid[21:].any()
    np.testing.assert_allclose(labels[0, 0:-1:2], [2.0, 4.0, 6.0, 8.0], atol=1e-5)
    np.testing.assert_allclose(labels[0, 1:-1:2], 0.0, atol=1e-5)
    assert labels[0, -1] == pytest.approx(4.0)
    assert spec.names()[:2] == ['wp1_forward', 'wp1_left'] and spec.label_size == 9
    # A left-turning car sees its future points to the left.
    t = np.arange(60) * 0.05
    yaw = 0.3 * t
    turning = np.stack([np.cumsum(4 * np.cos(yaw) * 0.05), np.cumsum(4 * np.sin(yaw) * 0.05),
                        yaw], axis=1)
    labels, valid = waypoint_labels(stamps, turning, speed, np.zeros(60), spec)
    assert (labels[valid][:, 1:-1:2] > 0).all()


def test_labels_never_span_runs_or_unknown_poses():
    stamps, pose, speed = straight_drive(count=80)
    segments = np.repeat([0, 1], 40)
    spec = WaypointSpec(num_waypoints=2, spacing_s=0.5, speed_horizon_s=0.5)
    _, valid = waypoint_labels(stamps, pose, speed, segments, spec)
    assert valid[:20].all() and not valid[21:40].any() and valid[40:60].all()
    holed = pose.copy()
    holed[10] = np.nan
    _, valid = waypoint_labels(stamps, holed, speed, np.zeros(80), spec)
    assert not valid[0:11].any() and valid[11:60].all()
    _, none = waypoint_labels(stamps, np.full_like(pose, np.nan), speed, np.zeros(80), spec)
    assert not none.any()
    for bad in ({'num_waypoints': 0}, {'num_waypoints': 2.0}, {'spacing_s': 0.0},
                {'spacing_s': math.nan}, {'speed_horizon_s': -1.0}):
        with pytest.raises(ValueError):
            WaypointSpec(**bad)


def test_controller_pursues_the_path_and_holds_the_target_speed():
    controller = WaypointController()
    straight = [(2.0 * k, 0.0) for k in range(1, 5)]
    out = controller.control(straight, target_speed=6.0, speed=3.0)
    assert out.valid and out.control.steer == pytest.approx(0.0, abs=1e-9)
    assert out.control.throttle > 0 and out.control.brake == 0
    left = [(2.0 * k, 0.15 * k * k) for k in range(1, 5)]
    right = [(f, -l) for f, l in left]
    assert controller.control(left, 6.0, 5.0).control.steer < -0.05  # CARLA: left < 0
    assert controller.control(right, 6.0, 5.0).control.steer > 0.05
    assert controller.control(left, 6.0, 5.0).lookahead[1] > 0
    stop = controller.control(straight, target_speed=0.1, speed=5.0)
    assert stop.control.throttle == 0 and stop.control.brake == pytest.approx(0.6)
    slower = WaypointController().control(straight, target_speed=3.0, speed=6.0)
    assert slower.control.throttle == 0 and slower.control.brake > 0
    # A prediction shorter than the lookahead is extended along its last segment.
    short = WaypointController().control([(0.5, 0.1), (1.0, 0.2)], 5.0, 8.0)
    assert short.valid and short.control.steer < 0


def test_controller_integral_is_bounded_and_bad_input_brakes():
    controller = WaypointController(ControllerConfig(ki=1.0, integral_limit=2.0, kp=0.0))
    for _ in range(1000):
        out = controller.control([(4.0, 0.0)], 20.0, 0.0, dt=0.1)
    assert out.control.throttle == pytest.approx(min(0.75, 2.0))
    for waypoints, target, speed, dt in (([(math.nan, 0.0)], 5.0, 1.0, 0.05),
                                         ([(1.0, 0.0)], math.inf, 1.0, 0.05),
                                         ([(1.0, 0.0)], 5.0, math.nan, 0.05),
                                         ([], 5.0, 1.0, 0.05), ([1.0, 2.0, 3.0], 5.0, 1.0, 0.05),
                                         ([(1.0, 0.0)], 5.0, 1.0, 0.0)):
        out = controller.control(waypoints, target, speed, dt)
        assert not out.valid and out.control == FULL_BRAKE
    for bad in ({'kp': -1.0}, {'max_steer_deg': 90.0}, {'wheelbase_m': 0.0},
                {'min_lookahead_m': 20.0}, {'stop_brake': 1.5}, {'ki': math.nan}):
        with pytest.raises(ValueError, match='ControllerConfig'):
            ControllerConfig(**bad)


@pytest.mark.parametrize('kind', ['mlp', 'gru', 'transformer'])
def test_waypoint_heads_with_route_inputs(kind):
    config = HeadConfig(kind=kind, feature_dim=DIM, window=3, hidden_size=16, num_heads=2,
                        output='waypoints', num_waypoints=5, use_speed=True, use_command=True,
                        use_target=True)
    head = build_head(config).eval()
    head.set_output_normalization(np.arange(11.0), np.full(11, 2.0))
    features = torch.randn(4, 3, DIM)
    speed, command = torch.full((4, 3), 5.0), torch.full((4, 3), 1)
    target = torch.tensor([[20.0, 3.0]]).expand(4, 3, 2).clone()
    target[0, 0] = math.nan  # unknown targets count as none
    out = head(features, speed, command, target)
    assert out.shape == (4, 11) and torch.isfinite(out).all() and (out[:, -1] >= 0).all()
    assert head.predict(features[0].numpy(), [5.0] * 3, [1] * 3,
                        [[20.0, 3.0]] * 3).shape == (11,)
    assert not torch.allclose(out, head(features, speed, torch.full((4, 3), 2), target))
    with pytest.raises(ValueError, match='command input'):
        head(features, speed, None, target)
    with pytest.raises(ValueError, match='no RoadOption'):
        head(features, speed, torch.full((4, 3), 9), target)
    with pytest.raises(ValueError, match='target'):
        head(features, speed, command, torch.zeros(4, 3))
    with pytest.raises(ValueError, match='output'):
        HeadConfig(output='trajectory')
    with pytest.raises(ValueError, match='use_command'):
        HeadConfig(use_command='yes')


def _fit(tmp_path, name, informative, **options):
    features = tmp_path / f'features_{name}'
    features.mkdir()
    for index in range(5):
        write_driving_bag(features / f'drive_{index}.safetensors', seed=index,
                          informative=informative)
    config = TrainConfig(output='waypoints', hidden_size=64, epochs=60, patience=0, lr=3e-3,
                         warmup_steps=10, **options)
    return train([features], tmp_path / f'model_{name}', config, progress=False, log=None)


def test_waypoint_head_learns_the_path_from_features(tmp_path):
    metrics = _fit(tmp_path, 'seen', informative=True, use_speed=True)
    assert metrics['val_lateral_r2'] > 0.8 and metrics['val_ade'] < 1.0
    assert metrics['val_speed_r2'] > 0.5
    head, config = load_checkpoint(tmp_path / 'model_seen')
    assert config['output'] == 'waypoints' and config['head']['output'] == 'waypoints'
    assert config['output_names'][-1] == 'target_speed'
    report = evaluate_offline(tmp_path / 'model_seen', [tmp_path / 'features_seen'],
                              tmp_path / 'report')
    assert report['output'] == 'waypoints' and report['metrics']['ade'] < 1.0
    assert json.loads((tmp_path / 'report' / 'metrics.json').read_text())['windows'] > 0


def test_command_input_tells_the_turn_the_image_cannot(tmp_path):
    blind = _fit(tmp_path, 'blind', informative=False)
    told = _fit(tmp_path, 'told', informative=False, use_command=True)
    assert blind['val_lateral_r2'] < 0.3
    assert told['val_lateral_r2'] > 0.7


def test_waypoint_training_needs_poses(tmp_path):
    from learning_data import write_synthetic_bag

    write_synthetic_bag(tmp_path / 'old.safetensors')  # no poses: written before them
    with pytest.raises(DatasetError, match='extract again'):
        build_windows(load_feature_files([tmp_path / 'old.safetensors']), 1,
                      waypoints=WaypointSpec())
