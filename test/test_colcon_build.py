"""
``colcon build`` of the package in a scratch workspace, and the installed layout ROS relies on.

``ros2 run``/``ros2 launch`` find executables in ``lib/<package>/``, launch and config files in
``share/<package>/``, and the package itself through the ament index marker.
"""
import os
from pathlib import Path
import shutil
import subprocess
import sys

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = 'llava_drive'
# What a source checkout of the package needs to build (not the venv, bags or tests).
SOURCES = ['package.xml', 'setup.py', 'setup.cfg', 'resource', PACKAGE, 'launch', 'config']
EXECUTABLES = ['sim_bridge', 'expert', 'recorder', 'llava-drive']


@pytest.fixture(scope='module')
def install(tmp_path_factory):
    """Build a copy of the package with colcon; return ``install/llava_drive``."""
    workspace = tmp_path_factory.mktemp('ws')
    source = workspace / 'src' / PACKAGE
    source.mkdir(parents=True)
    ignore = shutil.ignore_patterns('__pycache__', '*.egg-info')
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=ignore)
        else:
            shutil.copy2(ROOT / name, source / name)
    result = subprocess.run(
        [sys.executable, '-m', 'colcon', 'build', '--base-paths', 'src'],
        cwd=workspace, capture_output=True, text=True, timeout=180,
        env={**os.environ, 'COLCON_HOME': str(workspace / '.colcon')})
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    assert 'Finished <<< llava_drive' in log, log[-3000:]
    return workspace / 'install' / PACKAGE


@pytest.mark.parametrize('name', EXECUTABLES)
def test_executables_are_in_lib_package(install, name):
    path = install / 'lib' / PACKAGE / name
    assert path.is_file(), sorted(p.name for p in (install / 'lib' / PACKAGE).iterdir())
    assert os.access(path, os.X_OK)
    assert path.read_text().startswith('#!'), 'console script without an interpreter line'


def test_launch_and_config_files_are_in_share(install):
    share = install / 'share' / PACKAGE
    for launch_file in (ROOT / 'launch').glob('*.launch.py'):
        assert (share / 'launch' / launch_file.name).read_bytes() == launch_file.read_bytes()
    sources = sorted(p.name for p in (ROOT / 'config').iterdir() if p.is_file())
    assert 'carla_objects.json' in sources and 'fastdds_shm.xml' in sources
    assert sorted(p.name for p in (share / 'config').iterdir()) == sources


def test_package_is_in_the_ament_index_with_its_manifest(install):
    marker = install / 'share' / 'ament_index' / 'resource_index' / 'packages' / PACKAGE
    assert marker.is_file()
    manifest = install / 'share' / PACKAGE / 'package.xml'
    assert manifest.read_bytes() == (ROOT / 'package.xml').read_bytes()
    assert f'<name>{PACKAGE}</name>' in manifest.read_text()


def test_python_package_is_installed(install):
    [site_packages] = (install / 'lib').glob('python3.*/site-packages')
    assert (site_packages / PACKAGE / 'nodes' / 'recorder.py').is_file()
    assert (site_packages / PACKAGE / 'msg' / 'CarlaEgoVehicleControl.msg').is_file()


def test_installed_executable_runs_the_installed_package(install):
    site_packages = next((install / 'lib').glob('python3.*/site-packages'))
    script = install / 'lib' / PACKAGE / 'llava-drive'
    # What a sourced install/setup.sh provides.
    env = {**os.environ, 'PYTHONPATH': str(site_packages)}
    result = subprocess.run([str(script), '--help'], capture_output=True, text=True,
                            timeout=60, cwd=install, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'record' in result.stdout
    interpreter = script.read_text().splitlines()[0][2:].strip()
    where = subprocess.run([interpreter, '-c', 'import llava_drive; print(llava_drive.__file__)'],
                           capture_output=True, text=True, timeout=60, cwd=install, env=env)
    assert where.stdout.strip() == str(site_packages / PACKAGE / '__init__.py'), where.stderr
