"""
The expert drivers without ROS: lane following, the town expert, recovery noise.

Public API: :class:`~.driver.ExpertDriver` (+ ``ExpertConfig``: pure pursuit + PID),
:class:`~.town.TownExpert` and :class:`~.town.Hazards` (IDM towards vehicles and stop lines),
:class:`~.noise.ExpertNoise` (+ ``NoiseConfig``).
"""
