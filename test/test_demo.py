"""The README's main command, shrunk: every demo step runs for real and the report appears."""
import json
import subprocess
import sys

from llava_drive.bringup.environment import local_ros_environment


def test_demo_runs_every_step_and_writes_the_report(tmp_path):
    # Two 4 s training routes: enough to wire every step, not to drive well.
    completed = subprocess.run(
        [sys.executable, '-m', 'llava_drive.cli', 'demo', '--workdir', str(tmp_path),
         '--train-routes', '1-2', '--check-route', '3', '--heldout-routes', '101',
         '--duration', '4', '--repetitions', '1', '--route-length', '50',
         '--max-route-time', '15', '--width', '96', '--height', '72', '--name', 'smoke'],
        capture_output=True, text=True, env=local_ros_environment(), timeout=600)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    assert 'Traceback' not in completed.stderr
    for step in ('record route 1', 'review the first bag', 'create the tiny random LLaVA',
                 'extract LLaVA features (vision_grid)', 'train the action head',
                 'offline check', 'closed-loop evaluation'):
        assert f'=== {step}' in completed.stdout, step
    assert 'demo finished' in completed.stdout
    [report] = (tmp_path / 'reports').iterdir()
    assert (report / 'report.md').is_file()
    summary = json.loads((report / 'summary.json').read_text())
    assert set(summary['per_route']) == {'101'}
    assert summary['expert']['driving_score'] > 90  # the expert drives the held-out route
    assert 'token0' in summary['baselines']
    assert 0 <= summary['driving_score'] <= 100
    checkpoints = {p.name for p in (tmp_path / 'trained_models').iterdir()}
    assert any(name.endswith('_token0') for name in checkpoints) and len(checkpoints) == 2
    assert (tmp_path / 'models' / 'llava-tiny' / 'config.json').is_file()
    assert (tmp_path / 'review' / 'train_route001' / 'contact_sheet.png').is_file()
