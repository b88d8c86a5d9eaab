"""
Embedded driving simulator in pure Python (numpy + OpenCV, no ROS imports).

Coordinates follow ROS REP-103 in a ``map`` frame: x forward along the route start, y left,
z up, yaw counter-clockwise. Control follows CARLA ``VehicleControl``: steer +1 turns **right**,
so a positive steer decreases yaw. The car drives in the **right** lane, whose centre is
``lane_width / 2`` to the right of the route centreline (negative lateral offset).

Modules: :mod:`road` (procedural routes and projection), :mod:`obstacles` (parked cars),
:mod:`vehicle` (kinematic bicycle + longitudinal model), :mod:`appearance` (seeded visual
randomization), :mod:`raster` (top-down picture of the world), :mod:`camera` (perspective
renderer), :mod:`scoring` (CARLA-leaderboard style infractions) and :mod:`world` (the
:class:`~llava_drive.sim.world.Simulator`); :mod:`town` the town world.

Public API: :class:`~.world.Simulator` (+ ``SimConfig``, ``MAP_KINDS``; ``step`` returns a
``StepResult``), :class:`~.road.Route` (+ ``RouteConfig``), :class:`~.scoring.EpisodeSummary`
and :class:`~.scoring.RouteScorer`.
"""
