"""The leaderboard agent against a stand-in AutonomousAgent base and the fake carla."""
import importlib
import math
from pathlib import Path
import sys

from carla_fakes import install_fake_carla
from fixtures_llava import tiny_llava_dir  # noqa: F401
import numpy as np
import pytest

FAKE_LEADERBOARD = Path(__file__).resolve().parent / 'fake_leaderboard'


def forget_leaderboard(monkeypatch):
    """Drop every imported leaderboard module (restored after the test)."""
    for name in [n for n in sys.modules if n == 'leaderboard' or n.startswith('leaderboard.')]:
        monkeypatch.delitem(sys.modules, name)


@pytest.fixture
def agent_module(monkeypatch):
    """Import the agent module with the leaderboard stand-in on the path."""
    install_fake_carla(monkeypatch)
    forget_leaderboard(monkeypatch)
    monkeypatch.syspath_prepend(str(FAKE_LEADERBOARD))
    module = importlib.import_module('llava_drive.carla.leaderboard_agent')
    module = importlib.reload(module)  # binds the stand-in base class
    yield module
    for name in [n for n in sys.modules if n == 'leaderboard' or n.startswith('leaderboard.')]:
        del sys.modules[name]  # the stand-in, imported during the test
    monkeypatch.undo()
    importlib.reload(module)


def constant_checkpoint(root: Path, tiny_llava_dir, bias, poison=False) -> Path:  # noqa: F811
    """Save a head that always outputs ``bias`` through its activations."""
    import torch
    from llava_drive.features.extractor import LlavaFeatureExtractor
    from llava_drive.learning.checkpoint import save_checkpoint
    from llava_drive.learning.heads import build_head, HeadConfig

    extractor = LlavaFeatureExtractor(tiny_llava_dir)
    head = build_head(HeadConfig(feature_dim=extractor.feature_dim, hidden_size=8))
    with torch.no_grad():
        head.layers[-1].weight.zero_()
        head.layers[-1].bias.copy_(torch.tensor(bias))
        if poison:  # finite weights (NaN ones are refused on save), NaN outputs: x / 0
            head.feature_std.zero_()
    return save_checkpoint(root, head, extractor.spec)


def inputs(step, width=800, height=600, speed=3.0):
    """Return leaderboard-style input data: (frame, BGRA array) and (frame, {'speed'})."""
    image = np.full((height, width, 4), 90, np.uint8)
    image[:, : width // 2, 0] = 200
    return {'rgb_front': (step, image), 'speed': (step, {'speed': speed})}


def test_agent_drives_through_the_policy_and_the_gate(agent_module, tmp_path, tiny_llava_dir):  # noqa: F811,E501
    checkpoint = constant_checkpoint(tmp_path / 'constant', tiny_llava_dir, [0.0, 0.5, -4.0])
    assert agent_module.get_entry_point() == 'LlavaDriveAgent'
    agent_class = getattr(agent_module, agent_module.get_entry_point())
    agent = agent_class('localhost', 2000)
    agent.setup(str(checkpoint))
    assert agent.track.name == 'SENSORS'
    camera, speed = agent.sensors()
    assert camera['type'] == 'sensor.camera.rgb' and camera['id'] == 'rgb_front'
    assert (camera['width'], camera['height'], camera['fov'], camera['x'], camera['z']) == (
        800, 600, 90.0, 2.0, 2.0)  # config/carla_objects.json: the recorded camera
    assert speed['type'] == 'sensor.speedometer'
    controls = [agent(inputs(step), 0.05 * step) for step in range(1, 4)]
    carla = sys.modules['carla']
    assert all(isinstance(c, carla.VehicleControl) for c in controls)
    # sigmoid(0.5) throttle, sigmoid(-4) brake below the gate threshold: released.
    assert controls[-1].throttle == pytest.approx(1 / (1 + math.exp(-0.5)), abs=1e-3)
    assert controls[-1].brake == 0.0 and abs(controls[-1].steer) < 1e-3
    assert controls[-1].manual_gear_shift is False
    agent.destroy()


def test_a_nan_head_brakes(agent_module, tmp_path, tiny_llava_dir):  # noqa: F811
    checkpoint = constant_checkpoint(tmp_path / 'nan', tiny_llava_dir, [0.0, 0.5, -4.0],
                                     poison=True)
    config = tmp_path / 'agent.yaml'
    config.write_text(f'checkpoint: {checkpoint.name}\ngate: {{brake_threshold: 0.2}}\n')
    agent = agent_module.LlavaDriveAgent('localhost', 2000)
    agent.setup(str(config))
    assert agent.gate.config.brake_threshold == 0.2
    control = agent(inputs(1), 0.05)
    assert (control.throttle, control.brake) == (0.0, 1.0)
    assert agent.gate.interventions['nan_output'] == 1


def test_a_failing_frame_brakes_and_is_counted(agent_module, tmp_path, tiny_llava_dir):  # noqa: F811,E501
    checkpoint = constant_checkpoint(tmp_path / 'constant', tiny_llava_dir, [0.0, 0.5, -4.0])
    agent = agent_module.LlavaDriveAgent('localhost', 2000)
    agent.setup(str(checkpoint))

    def fail(frame):
        raise RuntimeError('CUDA out of memory')
    agent.worker.infer = fail
    control = agent(inputs(1), 0.05)
    assert (control.throttle, control.brake) == (0.0, 1.0) and agent.inference_errors == 1


@pytest.mark.parametrize('content, message', [
    ('device: cpu\n', 'must be a checkpoint directory or a YAML mapping with "checkpoint"'),
    ('checkpoint: x\nspeed: 3\n', r"unknown keys \['speed'\]"),
    ('checkpoint: [unclosed\n', 'agent config'),
])
def test_bad_agent_configs_name_the_problem(agent_module, tmp_path, content, message):
    config = tmp_path / 'agent.yaml'
    config.write_text(content)
    with pytest.raises(ValueError, match=message):
        agent_module.read_agent_config(config)


def test_without_the_leaderboard_setup_says_what_is_missing(monkeypatch, tmp_path):
    forget_leaderboard(monkeypatch)
    monkeypatch.setitem(sys.modules, 'leaderboard', None)  # import leaderboard fails
    module = importlib.reload(importlib.import_module('llava_drive.carla.leaderboard_agent'))
    with pytest.raises(RuntimeError, match='put carla-simulator/leaderboard'):
        module.LlavaDriveAgent().setup(str(tmp_path))
    monkeypatch.undo()
    importlib.reload(module)
