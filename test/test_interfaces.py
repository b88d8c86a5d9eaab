"""One definition of every shared name: topics, backends, the held-out seed boundary."""
import ast
from collections import defaultdict
from pathlib import Path
import re

from llava_drive.evaluation.drive import DriveOptions
from llava_drive.evaluation.evaluate import EvaluationOptions
from llava_drive.nodes import interfaces
from llava_drive.nodes.interfaces import FIRST_EVALUATION_SEED, vehicle_topics
import pytest

ROOT = Path(__file__).resolve().parent.parent
# Where names may be defined: the interfaces module and the bag-file contract.
DEFINING_MODULES = {'llava_drive/nodes/interfaces.py', 'llava_drive/bag/format.py'}
TOPIC_LITERAL = re.compile(r'^/[A-Za-z_]\w*(/[\w~]+)*/?$')
TOPIC_ROOTS = ('/carla', '/llava_drive', '/recorder', '/policy', '/diagnostics', '/clock',
               '/tf', '/sim_bridge', '/expert')


def string_literals(path: Path):
    """Yield every string constant of a module, f-string parts included."""
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.value


def python_sources():
    """Return the package's and the launch files' Python modules."""
    return sorted(list((ROOT / 'llava_drive').rglob('*.py')) +
                  list((ROOT / 'launch').glob('*.py')))


def test_no_topic_name_is_written_in_two_modules():
    modules = defaultdict(set)
    for path in python_sources():
        for text in string_literals(path):
            if TOPIC_LITERAL.match(text):
                modules[text].add(str(path.relative_to(ROOT)))
    assert modules, 'the scan found no topic literal at all: the pattern is broken'
    repeated = {name: where for name, where in modules.items() if len(where) > 1}
    assert not repeated, f'topic names written in more than one module: {repeated}'
    outside = {name: where for name, where in modules.items()
               if name.startswith(TOPIC_ROOTS) and not where <= DEFINING_MODULES}
    assert not outside, f'topic names defined outside the interfaces module: {outside}'


def test_the_scan_sees_a_hard_coded_topic(tmp_path):
    module = tmp_path / 'm.py'
    module.write_text("x = f'/carla/{role}/odometry'\ny = '/llava_drive/sim/status'\n")
    found = [text for text in string_literals(module) if TOPIC_LITERAL.match(text)]
    assert '/llava_drive/sim/status' in found and '/carla/' in found


def test_vehicle_topics_follow_the_role_name():
    topics = vehicle_topics('hero')
    assert topics.camera_image == '/carla/hero/rgb_front/image'
    assert topics.camera_info == '/carla/hero/rgb_front/camera_info'
    assert topics.odometry == '/carla/hero/odometry'
    assert topics.speedometer == '/carla/hero/speedometer'
    assert topics.waypoints == '/carla/hero/waypoints'
    assert topics.vehicle_control_cmd == '/carla/hero/vehicle_control_cmd'
    assert topics.camera_frame == 'hero/rgb_front'
    assert interfaces.RECORDER_STATUS_TOPIC == '/recorder/status'
    assert interfaces.RECORDER_FRAME_DONE_TOPIC == '/recorder/frame_done'


@pytest.mark.parametrize('role', ['', 'ego vehicle', 'a/b', None, 'é'])
def test_a_role_name_that_makes_no_topic_is_refused(role):
    with pytest.raises(ValueError, match='role_name'):
        vehicle_topics(role)


def test_drive_uses_the_role_name_everywhere(tmp_path):
    options = DriveOptions(driver='expert', role_name='hero')
    assert all(spec.overrides['role_name'] == 'hero' for spec in options.node_specs())
    with pytest.raises(ValueError, match='role_name'):
        DriveOptions(driver='expert', role_name='no such/role')


def test_the_held_out_seed_boundary_is_enforced(tmp_path):
    EvaluationOptions(routes=[FIRST_EVALUATION_SEED], out=tmp_path / 'a', expert=True)
    with pytest.raises(ValueError, match=f'below {FIRST_EVALUATION_SEED}'):
        EvaluationOptions(routes=[FIRST_EVALUATION_SEED - 1], out=tmp_path / 'b', expert=True)
