"""scripts/setup_venv.sh and scripts/run_tests.sh: ROS wheel choice, VENV, extras in step."""
import ast
import os
from pathlib import Path
import re
import subprocess

ROOT = Path(__file__).resolve().parents[1]


def setup_lists() -> dict:
    """Return the module-level lists of setup.py by name (read, not run)."""
    tree = ast.parse((ROOT / 'setup.py').read_text())
    return {node.targets[0].id: ast.literal_eval(node.value) for node in tree.body
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.List)}


def test_the_jazzy_extra_names_the_same_ros_packages_as_the_kilted_one():
    lists = setup_lists()

    def names(requirements, prefix):
        return {re.match(prefix + r'([a-z0-9-]+)', item).group(1) for item in requirements}

    assert names(lists['ROS_WHEELS'], 'ros-') == names(lists['ROS_WHEELS_JAZZY'], 'ros-jazzy-')
    assert all('==' in item for item in lists['ROS_WHEELS'] + lists['ROS_WHEELS_JAZZY'])
    # The linters come unpinned in `test`, pinned per distribution beside rclpy.
    assert 'ros-ament-flake8' in lists['TEST']


def test_setup_venv_refuses_an_unknown_ros_distribution(tmp_path):
    result = subprocess.run([str(ROOT / 'scripts' / 'setup_venv.sh')], capture_output=True,
                            text=True, timeout=60,
                            env=dict(os.environ, ROS_WHEELS='humble', VENV=str(tmp_path / 'v')))
    assert result.returncode == 2
    assert result.stderr.strip() == "ROS_WHEELS must be kilted or jazzy, not 'humble'"
    assert not (tmp_path / 'v').exists()


def test_run_tests_uses_the_venv_it_is_given(tmp_path):
    python = tmp_path / 'venv' / 'bin' / 'python'
    python.parent.mkdir(parents=True)
    python.write_text('#!/bin/sh\necho "$*"\n')
    python.chmod(0o755)
    result = subprocess.run([str(ROOT / 'scripts' / 'run_tests.sh'), 'test/test_x.py', '-x'],
                            capture_output=True, text=True, timeout=60,
                            env=dict(os.environ, VENV=str(tmp_path / 'venv')))
    assert result.returncode == 0, result.stderr
    assert result.stdout == '-m pytest -q test/test_x.py -x\n'
