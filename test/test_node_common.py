"""Shared node wiring: spinning that survives a failed take, parameters with ranges."""
import os
from pathlib import Path
import signal
import subprocess
import sys

from llava_drive.bringup.environment import config_path, local_ros_environment
from llava_drive.nodes.common import declare, spin_tolerantly
import pytest
import rclpy
from rclpy.exceptions import InvalidParameterValueException
from rclpy.parameter import Parameter
from ros_helpers import wait_for

# Starts the command of its arguments (output to the first), prints its pid, waits for it.
PARENT = """
import subprocess, sys
with open(sys.argv[1], 'w') as log:
    child = subprocess.Popen(sys.argv[2:], stdout=log, stderr=subprocess.STDOUT)
print(child.pid, flush=True)
child.wait()
"""


@pytest.fixture
def context():
    """Yield a private, initialised rclpy context."""
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    yield ctx
    rclpy.try_shutdown(context=ctx)


def test_spin_survives_a_runtime_error_and_stops_on_shutdown(context):
    node = rclpy.create_node('tolerant', context=context)
    calls = []

    def tick():
        calls.append(1)
        if len(calls) == 2:
            # What rclpy raises when it cannot convert a taken message.
            raise RuntimeError('Unable to convert call argument')
        if len(calls) == 5:
            context.try_shutdown()

    node.create_timer(0.01, tick)
    spin_tolerantly(node)  # returns only because of the shutdown
    assert len(calls) == 5
    node.destroy_node()


def test_declared_range_refuses_an_override(context):
    node = rclpy.create_node('ranged', context=context,
                             parameter_overrides=[Parameter('rate', value=500.0)])
    with pytest.raises(InvalidParameterValueException):
        declare(node, 'rate', 20.0, 'a rate', 1.0, 100.0)
    assert declare(node, 'depth', 3, 'a depth', 1, 10) == 3
    node.destroy_node()


def test_stack_environment_isolates_the_simulator_only():
    from llava_drive.bringup.environment import stack_environment
    sim = stack_environment('sim', {})
    assert sim['ROS_AUTOMATIC_DISCOVERY_RANGE'] == 'LOCALHOST'
    assert 1 <= int(sim['ROS_DOMAIN_ID']) <= 100
    assert sim['FASTDDS_DEFAULT_PROFILES_FILE'].endswith('fastdds_shm.xml')
    carla = stack_environment('carla', {'ROS_DOMAIN_ID': '7'})
    assert carla['ROS_DOMAIN_ID'] == '7' and 'ROS_AUTOMATIC_DISCOVERY_RANGE' not in carla
    assert stack_environment('sim', {'ROS_DOMAIN_ID': '42'})['ROS_DOMAIN_ID'] == '42'


def test_node_spec_quotes_empty_strings():
    from llava_drive.bringup.stack import NodeSpec
    command = NodeSpec('n', 'm', None, {'model': '', 'seeds': [1, 2], 'on': True}).command()
    assert command[-6:] == ['-p', "model:=''", '-p', 'seeds:=[1, 2]', '-p', 'on:=true']


@pytest.mark.parametrize('first', ['SIGINT', 'SIGTERM'])
def test_repeated_signals_shut_a_node_down_once_and_cleanly(tmp_path, first):
    """
    A burst of signals (Ctrl-C held down, a launch's SIGINT then SIGTERM) stops a node once.

    The recorder stands for any node. After the first signal, SIGINT and SIGTERM keep
    coming until the process has exited, so they land in every phase of the shutdown: none
    may raise KeyboardInterrupt, skip ``destroy_node`` (which closes the bag) or kill it.
    """
    import itertools
    import signal
    import subprocess
    import threading
    import time
    from llava_drive.bringup.environment import config_path, local_ros_environment
    from llava_drive.bringup.stack import NodeSpec
    from ros_helpers import wait_for

    bag = tmp_path / 'bag'
    spec = NodeSpec('recorder', 'llava_drive.nodes.recorder', str(config_path('recorder.yaml')),
                    {'bag_path': str(bag)})
    process = subprocess.Popen(spec.command(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, env=local_ros_environment())
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)
    reader.start()
    sent = []

    def burst():
        names = itertools.chain([first], itertools.cycle(['SIGINT', 'SIGTERM']))
        for name in names:
            if process.poll() is not None:
                return
            process.send_signal(getattr(signal, name))
            sent.append(name)
            if len(sent) > 50:  # back to back at first, then at a pace until it exits
                time.sleep(0.002)

    try:
        assert wait_for(lambda: any(f'recording to {bag}' in line for line in lines),
                        timeout=60), ''.join(lines)
        threading.Thread(target=burst, daemon=True).start()
        assert process.wait(timeout=60) == 0, ''.join(lines)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    reader.join(timeout=10)
    output = ''.join(lines)
    assert len(sent) >= 3, sent  # the shutdown did see repeated signals
    assert 'Traceback' not in output and 'KeyboardInterrupt' not in output, output
    assert f'closed {bag}' in output, output  # destroy_node ran and closed the bag
    assert (bag / 'metadata.yaml').is_file()


# A node whose callback takes a while: it says when the callback starts and ends.
SLOW_NODE = """
import sys, time
from rclpy.node import Node
from llava_drive.nodes.common import run_node

class Slow(Node):
    def __init__(self):
        super().__init__('slow')
        self.create_timer(0.05, self.tick)
        self.ticks = 0

    def tick(self):
        self.ticks += 1
        if self.ticks == 1:
            print('callback started', flush=True)
            time.sleep(1.5)
            print('callback ended', flush=True)

    def destroy_node(self):
        print('destroyed', flush=True)
        super().destroy_node()

run_node(Slow)
"""


@pytest.mark.parametrize('name', ['SIGINT', 'SIGTERM'])
def test_a_signal_never_breaks_into_a_running_callback(name):
    # A callback cut short half-way (a bag write, a model step) could leave the state that
    # destroy_node needs broken: the signal takes effect at the next wait.
    process = subprocess.Popen([sys.executable, '-c', SLOW_NODE], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True,
                               env=local_ros_environment())
    try:
        assert process.stdout.readline().strip() == 'callback started'
        process.send_signal(getattr(signal, name))
        output = process.communicate(timeout=120)[0]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, output
    assert output.split() == ['callback', 'ended', 'destroyed'], output


def running(pid: int) -> bool:
    """Return whether process ``pid`` exists and is not a zombie."""
    try:
        return Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()[0] != 'Z'
    except (FileNotFoundError, ProcessLookupError):
        return False


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='PR_SET_PDEATHSIG is Linux')
def test_a_node_dies_with_the_process_that_started_it(tmp_path):
    # A killed launch (or one failing after some nodes started) must leave no orphan.
    log = tmp_path / 'expert.log'
    parent = subprocess.Popen(
        [sys.executable, '-c', PARENT, str(log), sys.executable, '-m', 'llava_drive.nodes.expert',
         '--ros-args', '--params-file', str(config_path('expert.yaml'))],
        stdout=subprocess.PIPE, text=True, env=local_ros_environment())
    child = int(parent.stdout.readline())
    try:
        assert wait_for(lambda: 'expert on' in log.read_text(), timeout=90), log.read_text()
        parent.kill()
        parent.wait(timeout=30)
        assert wait_for(lambda: not running(child), timeout=60), log.read_text()
        assert 'Traceback' not in log.read_text()  # SIGTERM: the clean shutdown
    finally:
        if running(child):
            os.kill(child, signal.SIGKILL)
