"""
Process bring-up: node specs, the ROS environment, the process stack, launch support.

Public API: :class:`~.stack.NodeSpec` and :class:`~.stack.Stack` (start a set of node
processes and watch them), :func:`~.node_specs.bridge_specs`, ``expert_spec``,
``policy_spec`` (one spec per node), :func:`~.environment.stack_environment` (loopback DDS,
private domain, the FastDDS profile); :mod:`.launch_support` for the launch files.
"""
