"""Test-wide environment: DDS on loopback, a private ROS domain, offline Hugging Face."""
import os

# Before any rclpy import: DDS reads these when a context starts (architecture: Topics).
os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('TRANSFORMERS_OFFLINE', '1')

from llava_drive.bringup.environment import apply_local_ros_environment  # noqa: E402

# Also a ROS domain of our own, so parallel test runs on one machine never cross-talk.
apply_local_ros_environment()

import pytest  # noqa: E402

from ros_helpers import RosGraph  # noqa: E402


@pytest.fixture
def ros_graph():
    """Yield a :class:`RosGraph`; every node in it is destroyed afterwards."""
    graph = RosGraph()
    try:
        yield graph
    finally:
        graph.close()
