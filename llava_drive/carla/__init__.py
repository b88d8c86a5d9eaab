"""
CARLA without ROS: the synchronous session behind carla_bridge, routes, set-up and agents.

Public API: :class:`~.session.CarlaSession` and ``BridgeConfig`` (version pairing, town, ego,
sensors, scoring), :class:`~.route.RoutePlanner` (lane-graph routes with RoadOption commands),
:func:`~.world.setup_world` (the ``carla-setup`` command in :mod:`.cli`),
:class:`~.leaderboard_agent.LlavaDriveAgent` (leaderboard 2.x), :mod:`.native_ros2` remaps.
"""
