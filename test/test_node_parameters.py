"""Parameters never lie: runtime ones take effect when set, the others are refused."""
import ast
from pathlib import Path
import subprocess
import sys

from carla_fakes import install_fake_carla
from llava_drive.nodes import carla_bridge, expert, policy, recorder, sim_bridge
from llava_drive.nodes.common import ParameterSpec
from llava_drive.nodes.expert import Expert
from llava_drive.nodes.recorder import Recorder
import pytest
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.srv import SetParameters
from rclpy.parameter import Parameter
from ros_helpers import wait_for
from std_srvs.srv import Trigger
from test_carla_session import small_objects

NODE_MODULES = [expert, sim_bridge, carla_bridge, policy, recorder]


def set_parameter(peer, node_name, name, value):
    """Call ``/<node>/set_parameters`` as ``ros2 param set`` does; return the result."""
    client = peer.create_client(SetParameters, f'/{node_name}/set_parameters')
    assert client.wait_for_service(timeout_sec=30)
    request = SetParameters.Request(
        parameters=[ParameterMsg(name=name, value=Parameter(name, value=value)
                                 .get_parameter_value())])
    future = client.call_async(request)
    assert wait_for(future.done, timeout=30)
    return future.result().results[0]


def test_read_only_sets_are_refused_and_runtime_ones_take_effect(ros_graph, tmp_path):
    recorder = ros_graph.add(Recorder(context=ros_graph.context, parameter_overrides=[
        Parameter('bag_path', value=str(tmp_path / 'bag')), Parameter('autostart', value=False)]))
    expert = ros_graph.add(Expert(context=ros_graph.context))
    peer = ros_graph.node('peer')

    refused = set_parameter(peer, 'recorder', 'jpeg_quality', 50)
    assert not refused.successful and 'read-only' in refused.reason.lower()
    assert recorder.get_parameter('jpeg_quality').value == 90 and recorder.jpeg_quality == 90
    refused = set_parameter(peer, 'expert', 'target_speed', 3.0)
    assert not refused.successful
    assert expert.get_parameter('target_speed').value != 3.0

    applied = set_parameter(peer, 'recorder', 'max_duration', 12.5)
    assert applied.successful, applied.reason
    assert recorder.max_duration == 12.5 and recorder.get_parameter('max_duration').value == 12.5
    out_of_range = set_parameter(peer, 'recorder', 'max_duration', -1.0)
    assert not out_of_range.successful and recorder.max_duration == 12.5
    wrong_type = set_parameter(peer, 'recorder', 'max_duration', 'long')
    assert not wrong_type.successful and recorder.max_duration == 12.5


def test_stop_then_start_records_into_the_next_split(ros_graph, tmp_path):
    bag = tmp_path / 'run'
    recorder = ros_graph.add(Recorder(context=ros_graph.context, parameter_overrides=[
        Parameter('bag_path', value=str(bag))]))
    peer = ros_graph.node('peer')

    def call(service):
        client = peer.create_client(Trigger, f'/recorder/{service}')
        assert client.wait_for_service(timeout_sec=30)
        future = client.call_async(Trigger.Request())
        assert wait_for(future.done, timeout=30)
        return future.result()

    assert recorder.writer is not None
    assert call('stop').success
    started = call('start')
    assert started.success, started.message
    assert str(tmp_path / 'run_001') in started.message
    assert call('start').message.startswith('already recording')
    assert call('stop').success and call('stop').message == 'not recording'
    assert call('start').success and call('split').success
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        'run', 'run_001', 'run_002', 'run_003']
    assert all((p / 'metadata.yaml').is_file() for p in tmp_path.iterdir() if p.name != 'run_003')


def test_a_recorder_that_cannot_start_exits_non_zero_with_one_line(tmp_path):
    bag = tmp_path / 'taken'
    bag.mkdir()
    (bag / 'something').write_text('x')
    result = subprocess.run(
        [sys.executable, '-m', 'llava_drive.nodes.recorder', '--ros-args', '-p',
         f'bag_path:={bag}'], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    refusals = [line for line in result.stderr.splitlines() if 'refused to start' in line]
    assert len(refusals) == 1 and str(bag) in refusals[0], result.stderr
    assert 'Traceback' not in result.stderr


@pytest.mark.parametrize('module', NODE_MODULES, ids=lambda m: m.__name__.split('.')[-1])
def test_every_node_declares_its_parameters_from_one_table(module):
    table = module.PARAMETERS
    assert table and all(isinstance(spec, ParameterSpec) for spec in table)
    names = [spec.name for spec in table]
    assert len(names) == len(set(names)), names
    for spec in table:
        assert spec.description, spec.name
        assert (spec.low is None) == (spec.high is None), spec.name
        if spec.low is not None:
            assert spec.low <= spec.default <= spec.high, spec.name
    # One style: no parameter is declared one by one beside the table.
    calls = {node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id
             for node in ast.walk(ast.parse(Path(module.__file__).read_text()))
             if isinstance(node, ast.Call) and isinstance(node.func, (ast.Name, ast.Attribute))}
    assert not {'declare', 'declare_parameter'} & calls


def live_node(name, graph, tmp_path, monkeypatch):
    """Create the node ``name`` on ``graph`` with its defaults (a fake CARLA for the bridge)."""
    if name == 'carla_bridge':
        install_fake_carla(monkeypatch)
        return graph.add(carla_bridge.CarlaBridge(context=graph.context, parameter_overrides=[
            Parameter('objects_file', value=small_objects(tmp_path))]))
    if name == 'recorder':
        return graph.add(Recorder(context=graph.context, parameter_overrides=[
            Parameter('bag_path', value=str(tmp_path / 'bag')),
            Parameter('autostart', value=False)]))
    node_class = {'expert': Expert, 'sim_bridge': sim_bridge.SimBridge}[name]
    return graph.add(node_class(context=graph.context))


@pytest.mark.parametrize('name', ['expert', 'sim_bridge', 'carla_bridge', 'recorder'])
def test_a_running_node_declares_exactly_its_table_read_only_unless_runtime(
        name, ros_graph, tmp_path, monkeypatch):
    node = live_node(name, ros_graph, tmp_path, monkeypatch)
    table = {'expert': expert, 'sim_bridge': sim_bridge, 'carla_bridge': carla_bridge,
             'recorder': recorder}[name].PARAMETERS
    rclpy_own = set(ros_graph.node('plain')._parameters)  # use_sim_time, ...
    declared = set(node._parameters) - rclpy_own
    assert declared == {spec.name for spec in table}
    overridden = {'objects_file', 'bag_path', 'autostart'}
    for spec in table:
        descriptor = node.describe_parameter(spec.name)
        assert descriptor.read_only == (not spec.runtime), spec.name
        ranges = list(descriptor.integer_range) + list(descriptor.floating_point_range)
        assert [(r.from_value, r.to_value) for r in ranges] == (
            [] if spec.low is None else [(spec.low, spec.high)]), spec.name
        if spec.name not in overridden:
            assert node.get_parameter(spec.name).value == spec.default, spec.name
        if not spec.runtime:
            value = node.get_parameter(spec.name).value
            result = node.set_parameters([Parameter(spec.name, value=value)])[0]
            assert not result.successful, spec.name
