"""
Traffic lights of a town's signalised junctions: where they stand, their cycle, their state.

Every incoming lane of a signalised junction has one light. The approaches of a junction get
green one after another (protected phases: no two approaches are ever green together, so no
turn needs to give way inside a signalised junction): ``green_s``, then ``yellow_s``, then red
while ``all_red_s`` clears the box and the other approaches take their turn. The state is a
pure function of simulated time (:meth:`TrafficLights.state`).
"""
from dataclasses import dataclass
import math
from typing import Dict, List, Optional, Tuple

from llava_drive.config_checks import number_in_range
from llava_drive.sim.town.network import light_pose, TownMap

GREEN, YELLOW, RED = 'green', 'yellow', 'red'
STATES = (GREEN, YELLOW, RED)


@dataclass(frozen=True)
class LightTiming:
    """
    One approach's share of a junction's cycle (s).

    :param green_s: green time
    :param yellow_s: yellow time
    :param all_red_s: red for everyone before the next approach turns green
    """

    green_s: float = 10.0
    yellow_s: float = 3.0
    all_red_s: float = 2.0

    def __post_init__(self):
        """Check the durations."""
        number_in_range('LightTiming.green_s', self.green_s, 1.0, 300.0)
        number_in_range('LightTiming.yellow_s', self.yellow_s, 0.5, 30.0)
        number_in_range('LightTiming.all_red_s', self.all_red_s, 0.0, 30.0)

    @property
    def slot_s(self) -> float:
        """Return one approach's slot: green + yellow + all-red."""
        return self.green_s + self.yellow_s + self.all_red_s


@dataclass(frozen=True)
class TrafficLight:
    """
    One traffic light.

    :param index: position in :attr:`TrafficLights.lights`
    :param node: its junction
    :param lane: the incoming road lane it controls
    :param slot: its turn in the junction's cycle
    :param slots: how many approaches the junction has
    :param stop_x: stop line centre x (the lane's end) (m)
    :param stop_y: stop line centre y (m)
    :param stop_yaw: lane heading at the stop line (rad)
    :param pole_x: pole x (far side of the junction) (m)
    :param pole_y: pole y (m)
    """

    index: int
    node: int
    lane: int
    slot: int
    slots: int
    stop_x: float
    stop_y: float
    stop_yaw: float
    pole_x: float
    pole_y: float


class TrafficLights:
    """
    All lights of a town and their cycle.

    :param town: the town
    :param timing: durations
    :param offsets: cycle offset per signalised junction (s); missing ones are 0
    """

    def __init__(self, town: TownMap, timing: Optional[LightTiming] = None,
                 offsets: Optional[Dict[int, float]] = None):
        """Place one light per incoming lane of every signalised junction."""
        self.timing = timing or LightTiming()
        self.offsets = dict(offsets or {})
        self.lights: List[TrafficLight] = []
        self.by_lane: Dict[int, TrafficLight] = {}
        for node in town.nodes:
            if not (node.is_junction and node.signalised):
                continue
            lanes = town.incoming_lanes(node.index)
            for slot, lane_index in enumerate(lanes):
                lane = town.lanes[lane_index]
                x, y, yaw = lane.points[-1, :3]
                px, py, _ = light_pose(town, lane_index)
                light = TrafficLight(len(self.lights), node.index, lane_index, slot, len(lanes),
                                     float(x), float(y), float(yaw), px, py)
                self.lights.append(light)
                self.by_lane[lane_index] = light

    def cycle_s(self, light: TrafficLight) -> float:
        """Return the cycle length of the light's junction (s)."""
        return light.slots * self.timing.slot_s

    def state(self, light: TrafficLight, time: float) -> str:
        """
        Return ``'green'``, ``'yellow'`` or ``'red'`` at simulated ``time``.

        :param light: the light
        :param time: simulated time (s)
        """
        timing = self.timing
        local = (time + self.offsets.get(light.node, 0.0)) % self.cycle_s(light)
        local -= light.slot * timing.slot_s
        if 0.0 <= local < timing.green_s:
            return GREEN
        if timing.green_s <= local < timing.green_s + timing.yellow_s:
            return YELLOW
        return RED

    def states(self, time: float) -> List[Tuple[TrafficLight, str]]:
        """Return every light with its state at ``time``."""
        return [(light, self.state(light, time)) for light in self.lights]

    def green_offset(self, light: TrafficLight, green_at: float) -> float:
        """
        Return the junction offset that makes ``light`` turn green at time ``green_at``.

        :param light: the light
        :param green_at: simulated time (s)
        """
        return (light.slot * self.timing.slot_s - green_at) % self.cycle_s(light)


def light_parts(head_left: float) -> List[tuple]:
    """
    Return the boxes of a light (pole, arm, head) in its frame, without lamps.

    The frame: origin at the pole's foot, x along the controlled lane's heading, y left. The
    head hangs ``head_left`` metres to the left of the pole, over the lane, facing -x.

    :param head_left: distance from the pole to the head (m)
    """
    pole = (60.0, 60.0, 60.0)
    housing = (35.0, 38.0, 30.0)
    return [((-0.12, 0.12, -0.12, 0.12, 0.0, 6.2), pole, False),
            ((-0.08, 0.08, 0.0, head_left + 0.3, 5.9, 6.1), pole, False),
            ((-0.25, 0.25, head_left - 0.5, head_left + 0.5, 3.5, 5.9), housing, False),
            ((-0.28, -0.25, head_left - 0.6, head_left + 0.6, 3.4, 6.0), (20.0, 20.0, 20.0),
             False)]


LAMP_BGR = {RED: (40, 40, 255), YELLOW: (30, 200, 255), GREEN: (120, 255, 60)}
DIM_BGR = {RED: (25, 25, 70), YELLOW: (20, 55, 70), GREEN: (40, 70, 25)}
LAMP_HEIGHTS = {RED: 5.35, YELLOW: 4.7, GREEN: 4.05}
LAMP_HALF = 0.3


def lamp_parts(head_left: float, lit: Optional[str]) -> List[tuple]:
    """
    Return the three lamps of a light's head, ``lit`` one glowing, in the light's frame.

    :param head_left: distance from the pole to the head (m)
    :param lit: the state shown; None paints them like the housing (for a camera behind or
        beside the head: lamps are painted after the housing, which would show them through it)
    """
    parts = []
    for state in STATES:
        z = LAMP_HEIGHTS[state]
        half = LAMP_HALF + (0.05 if state == lit else 0.0)
        box = (-0.36, -0.28, head_left - half, head_left + half, z - half, z + half)
        if lit is None:
            parts.append((box, (35.0, 38.0, 30.0), False))
        elif state == lit:
            parts.append((box, tuple(float(c) for c in LAMP_BGR[state]), 'lit'))
        else:
            parts.append((box, tuple(float(c) for c in DIM_BGR[state]), False))
    return parts


def head_offset(light: TrafficLight) -> float:
    """Return how far left of the pole the head hangs (over the lane centre) (m)."""
    right_x = math.sin(light.stop_yaw)
    right_y = -math.cos(light.stop_yaw)
    # The pole stands to the right of the lane centre line through the stop line.
    return abs((light.pole_x - light.stop_x) * right_x + (light.pole_y - light.stop_y) * right_y)
