"""
The town world without ROS: road network, routes, traffic lights, traffic and scenarios.

Public API: :class:`~.world.TownSimulator` (what ``SimConfig(map_kind='town')`` builds),
:class:`~.network.TownMap` (+ ``TownConfig``), :class:`~.route.TownRoute`,
:class:`~.lights.TrafficLights`, :class:`~.traffic.Traffic`,
:func:`~.benchmark.benchmark_seeds`.
"""
