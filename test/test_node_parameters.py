"""Parameters never lie: runtime ones take effect when set, the others are refused."""
import subprocess
import sys

from llava_drive.nodes.expert import Expert
from llava_drive.nodes.recorder import Recorder
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.srv import SetParameters
from rclpy.parameter import Parameter
from ros_helpers import wait_for
from std_srvs.srv import Trigger


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
