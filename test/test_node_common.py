"""Shared node wiring: spinning that survives a failed take, parameters with ranges."""
from llava_drive.nodes.common import declare, spin_tolerantly
import pytest
import rclpy
from rclpy.exceptions import InvalidParameterValueException
from rclpy.parameter import Parameter


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
