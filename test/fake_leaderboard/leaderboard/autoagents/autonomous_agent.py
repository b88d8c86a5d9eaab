"""
Minimal stand-in for leaderboard 2.x ``leaderboard/autoagents/autonomous_agent.py``.

Only what an agent subclass touches: the constructor calling ``setup``, ``track``,
``set_global_plan`` (kept as given, without the real downsampling) and ``__call__``, which
hands the sensor data to ``run_step`` like the real ``AgentWrapper`` does.
"""
from enum import Enum


class Track(Enum):
    """Leaderboard tracks."""

    SENSORS = 'SENSORS'
    MAP = 'MAP'


class AutonomousAgent:
    """Base class of leaderboard agents."""

    def __init__(self, carla_host, carla_port, debug=False):
        self.track = None
        self._global_plan = None
        self._global_plan_world_coord = None
        self.carla_host, self.carla_port = carla_host, carla_port

    def setup(self, path_to_conf_file):
        """Initialise the agent from its configuration file."""

    def sensors(self):
        """Return the sensor definitions."""
        return []

    def run_step(self, input_data, timestamp):
        """Return the control for this step."""
        raise NotImplementedError

    def destroy(self):
        """Release what the agent holds."""

    def set_global_plan(self, global_plan_gps, global_plan_world_coord):
        """Keep the route: GPS and world coordinates with RoadOption values."""
        self._global_plan = global_plan_gps
        self._global_plan_world_coord = global_plan_world_coord

    def __call__(self, input_data, timestamp):
        """Run one step, as the leaderboard's agent wrapper does each tick."""
        control = self.run_step(input_data, timestamp)
        control.manual_gear_shift = False
        return control
