"""
``llava-drive evaluate --backend carla``: closed-loop scoring with carla_bridge on the fake carla.

The options are checked without ROS; the end-to-end test runs every node as its own process on
a real rclpy graph (carla_bridge + policy or expert per episode); only the CARLA server is
faked (test/fake_carla, importable as ``carla`` by the children).
"""
import json
import os

from carla_fakes import FAKE_CARLA_DIR
import cv2
from fixtures_llava import tiny_llava_dir  # noqa: F401 - pytest fixture
from llava_drive.bringup.node_specs import CARLA_MAX_STEER_DEG
from llava_drive.cli import main
from llava_drive.evaluation.evaluate import EvaluationOptions
import pytest
# The small trained head of the simulator's evaluation tests (a module fixture there).
from test_evaluation import small_checkpoint  # noqa: F401


def test_carla_options_start_carla_bridge_with_the_route_limits(tmp_path):
    options = EvaluationOptions(backend='carla', routes=[101, 102], repetitions=1,
                                out=tmp_path / 'a', route_length=80.0, max_route_time=7.0,
                                control_timeout=3.0, carla={'town': 'Town02', 'port': 2001})
    bridge, expert = options.node_specs('expert', 102)
    assert bridge.name == 'carla_bridge' and str(bridge.params_file).endswith('carla_bridge.yaml')
    assert bridge.overrides['route_seeds'] == [102]
    # The bridge ends the route at the evaluator's limit and does not loop.
    assert bridge.overrides['time_limit'] == 7.0 and bridge.overrides['loop_routes'] is False
    assert bridge.overrides['route_length'] == 80.0
    assert bridge.overrides['control_timeout'] == 3.0
    assert bridge.overrides['town'] == 'Town02' and bridge.overrides['port'] == 2001
    assert bridge.overrides['wait_for_image_subscribers'] == 1  # the evaluator's camera
    assert 'variation' not in bridge.overrides and 'map' not in bridge.overrides
    assert expert.overrides['max_steer_deg'] == CARLA_MAX_STEER_DEG
    # Without --max-route-time the bridge keeps the leaderboard's growing limit.
    unlimited = EvaluationOptions(backend='carla', routes=[101], out=tmp_path / 'b')
    assert unlimited.node_specs('expert', 101)[0].overrides['time_limit'] == 0.0
    with pytest.raises(ValueError, match="map town is the embedded simulator's"):
        EvaluationOptions(backend='carla', map_kind='town', out=tmp_path / 'c')
    with pytest.raises(ValueError, match='backend must be one of'):
        EvaluationOptions(backend='carla_ros_bridge', out=tmp_path / 'd')


def test_evaluate_command_line_refuses_town_benchmarks_on_carla(tmp_path, capsys):
    assert main(['evaluate', '--backend', 'carla', '--driver', 'expert', '--benchmark',
                 'town-dev', '--out', str(tmp_path / 'r')]) == 1
    assert "map town is the embedded simulator's" in capsys.readouterr().err
    assert not (tmp_path / 'r').exists()  # refused before any node or report


def test_evaluate_policy_and_expert_on_carla(small_checkpoint, tiny_llava_dir,  # noqa: F811
                                             tmp_path, monkeypatch, capsys):
    monkeypatch.setenv('PYTHONPATH', os.pathsep.join(
        [str(FAKE_CARLA_DIR)] + list(filter(None, [os.environ.get('PYTHONPATH')]))))
    # A domain away from the suite's 1-100 (every node is a process of its own).
    monkeypatch.setenv('ROS_DOMAIN_ID', str(101 + (os.getpid() + 37) % 100))
    out, logs = tmp_path / 'report', tmp_path / 'logs'
    code = main(['evaluate', '--backend', 'carla', '--carla-town', 'Town02',
                 '--checkpoint', str(small_checkpoint), '--model', str(tiny_llava_dir),
                 '--routes', '101', '--repetitions', '2', '--route-length', '60',
                 '--max-route-time', '3', '--width', '96', '--height', '72',
                 '--out', str(out), '--log-dir', str(logs), '--no-progress', '--json'])
    captured = capsys.readouterr()
    assert code == 0, captured.err[-3000:]
    assert f'report: {out / "report.md"}' in captured.out

    summary = json.loads((out / 'summary.json').read_text())
    assert summary['drivers'] == ['policy', 'expert']
    assert summary['config']['backend'] == 'carla'
    assert summary['config']['carla'] == {'town': 'Town02'}
    for scores in (summary, summary['expert']):
        route = scores['per_route']['101']
        assert 0.0 <= route['driving_score'] <= 100.0
        assert route['driving_score'] == pytest.approx(route['route_completion']
                                                       * route['infraction_penalty'])
    # carla_bridge ended each route at the 3 s limit: a timeout, not penalised.
    expert = summary['expert']['per_route']['101']
    assert expert['done_reasons'] == ['timeout']
    assert expert['route_completion'] > 0.0  # the expert moved the CARLA car along its route

    episodes = json.loads((out / 'episodes.json').read_text())
    assert [(e['driver'], e['repetition']) for e in episodes] == [
        ('policy', 0), ('policy', 1), ('expert', 0), ('expert', 1)]
    for episode in episodes:
        assert episode['ended_by'] == 'simulator' and episode['route_seed'] == 101
        # Every frame of the route reached the evaluator (the bridge waits for its camera).
        assert episode['frames'] >= 0.9 * 3.0 / 0.05
        assert episode['trajectory']['time'][0] <= 0.1
    # The same seed draws the same route on CARLA's map: the repetitions start together.
    starts = {(round(e['trajectory']['x'][0], 3), round(e['trajectory']['y'][0], 3))
              for e in episodes}
    assert len(starts) == 1

    for name in ('policy_route101_rep0', 'expert_route101_rep1'):
        log = (logs / name / 'carla_bridge.log').read_text()
        assert 'CARLA 0.9.16 at localhost:2000, Town02' in log
        assert 'episode 0: route 101' in log and 'last route done' in log
    report = (out / 'report.md').read_text()
    assert 'CARLA Town02 through carla_bridge' in report
    assert '| policy |' in report and '| expert |' in report
    assert '![trajectories_route101](trajectories_route101.png)' in report
    image = cv2.imread(str(out / 'trajectories_route101.png'))
    assert image is not None and image.shape[1] > 300
    capture = cv2.VideoCapture(str(out / 'episode_policy_route101.mp4'))
    ok, frame = capture.read()
    assert ok and frame.shape[2] == 3
