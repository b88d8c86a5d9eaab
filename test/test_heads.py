"""Action heads: bounded outputs, normalization inside the module, configuration checks."""
from llava_drive.learning.heads import bound_actions, build_head, HeadConfig, MLPHead
import numpy as np
import pytest
import torch

KINDS = ('mlp', 'gru', 'transformer')


def small_head(kind, **changes):
    """Return a small head of ``kind`` for D = 8 features."""
    config = {'kind': kind, 'feature_dim': 8, 'window': 3, 'hidden_size': 16,
              'num_layers': 2, 'num_heads': 2}
    config.update(changes)
    torch.manual_seed(0)
    return build_head(config)


@pytest.mark.parametrize('kind', KINDS)
def test_outputs_stay_in_control_ranges_for_extreme_inputs(kind):
    head = small_head(kind).eval()
    output_layer = [m for m in head.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        output_layer.weight.mul_(1e4)  # raw outputs of thousands: saturates every output
    actions = head(torch.randn(64, 3, 8) * 10)
    assert actions.shape == (64, 3)
    assert torch.all(actions[:, 0].abs() <= 1.0)
    assert torch.all((actions[:, 1:] >= 0.0) & (actions[:, 1:] <= 1.0))
    # Saturated steer reaches both signs: the range is [-1, 1], not [0, 1].
    assert actions[:, 0].min() < -0.5 < 0.5 < actions[:, 0].max()


def test_bound_actions_is_tanh_for_steer_and_sigmoid_for_pedals():
    raw = torch.tensor([[2.0, -1.0, 0.5]])
    expected = torch.tensor([[np.tanh(2.0), 1 / (1 + np.e), 1 / (1 + np.exp(-0.5))]],
                            dtype=torch.float32)
    assert torch.allclose(bound_actions(raw), expected)


def test_default_mlp_is_the_seed_architecture():
    head = build_head({'kind': 'mlp', 'feature_dim': 4096})
    assert isinstance(head, MLPHead)
    shapes = [tuple(p.shape) for p in head.parameters()]
    assert shapes == [(512, 4096), (512,), (3, 512), (3,)]


@pytest.mark.parametrize('kind', KINDS)
def test_normalization_is_applied_inside_the_module(kind):
    head = small_head(kind, use_speed=True).eval()
    features = torch.randn(5, 3, 8) * 7 + 3
    speed = torch.rand(5, 3) * 10
    mean, std = features.mean((0, 1)), features.std((0, 1))
    plain = head(((features - mean) / std), (speed - 4.0) / 2.0)
    head.set_normalization(mean.numpy(), std.numpy(), speed_mean=4.0, speed_std=2.0)
    assert torch.allclose(head(features, speed), plain, atol=1e-5)
    assert head.normalization()['speed_std'] == 2.0


def test_temporal_heads_use_earlier_frames_and_mlp_window_one_ignores_nothing():
    features = torch.randn(4, 3, 8)
    changed = features.clone()
    changed[:, 0] += 5.0  # only the oldest frame differs
    for kind in ('gru', 'transformer'):
        head = small_head(kind).eval()
        assert not torch.allclose(head(features), head(changed))
    mlp = small_head('mlp', window=1).eval()
    assert torch.allclose(mlp(features[:, -1]), mlp(features[:, -1:]))


def test_speed_is_required_and_shapes_are_checked():
    head = small_head('gru', use_speed=True)
    with pytest.raises(ValueError, match='speed'):
        head(torch.randn(2, 3, 8))
    with pytest.raises(ValueError, match=r'\[B, 3, 8\]'):
        head(torch.randn(2, 4, 8), torch.rand(2))
    assert head(torch.randn(2, 3, 8), torch.rand(2)).shape == (2, 3)  # one speed per window


def test_predict_takes_numpy_batches_and_single_windows():
    head = small_head('transformer', use_speed=True).eval()
    batch = np.random.default_rng(0).normal(size=(4, 3, 8)).astype(np.float32)
    speeds = np.full((4, 3), 5.0, dtype=np.float32)
    predicted = head.predict(batch, speeds)
    assert predicted.shape == (4, 3) and predicted.dtype == np.float32
    np.testing.assert_allclose(head.predict(batch[2], speeds[2]), predicted[2], atol=1e-6)
    one_frame_head = small_head('mlp', window=1).eval()
    assert one_frame_head.predict(batch[0, 0]).shape == (3,)


@pytest.mark.parametrize('changes, message', [
    ({'kind': 'lstm'}, "'lstm'"),
    ({'window': 0}, 'window must be a positive integer, got 0'),
    ({'dropout': 1.5}, 'dropout must be in'),
    ({'kind': 'transformer', 'hidden_size': 10, 'num_heads': 4}, 'hidden_size 10'),
])
def test_bad_configurations_name_the_value(changes, message):
    with pytest.raises(ValueError, match=message):
        HeadConfig(**changes)


def test_config_round_trips_and_refuses_unknown_keys():
    config = HeadConfig(kind='gru', feature_dim=32, window=4, use_speed=True)
    assert HeadConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match='hidden'):
        HeadConfig.from_dict(dict(config.to_dict(), hidden=3))
