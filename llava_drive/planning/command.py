"""
The route command in effect and the next target point, for a plan and an ego pose.

Same rule as the route planners of CARLA leaderboard agents (LBC, TransFuser and their
descendants), which walk the sparse global plan: the last target point the car reached is
dropped and the next one is the target; the command in effect is the target's option, so a
turn is announced from the previous target point on, before the junction. A target counts as
reached within ``reach_distance_m`` (their 4 m) or, because a car offset in its lane may never
come that close, once the car has passed it (the dot-product test of the leaderboard's
``RouteCompletionTest``) within ``pass_distance_m``. One addition: inside a junction (the
reached point is a junction entry, LEFT/RIGHT/STRAIGHT, and the target its exit) the command
stays the junction's option, as CARLA's own ``LocalPlanner`` reports it on the dense route,
so the command never says "follow the lane" in the middle of a turn.

Only the sparse targets are used: that is all a node receives on the ``global_plan`` topic,
so live and offline use give the same commands. The function is pure: the caller keeps the
returned ``progress`` and passes it to the next call (:func:`commands_along` does that for a
recorded sequence).
"""
from dataclasses import dataclass
import math
from typing import Iterable, List, Optional, Tuple

from llava_drive.config_checks import number_in_range
from llava_drive.planning.plan import GlobalPlan
from llava_drive.planning.road_option import JUNCTION_OPTIONS, RoadOption
import numpy as np

# The leaderboard agents' RoutePlanner(min_distance=4.0, max_distance=50.0).
REACH_DISTANCE_M = 4.0
LOOKAHEAD_M = 50.0
# Passing a target farther than this (e.g. 12 m to its side) does not count as reaching it.
PASS_DISTANCE_M = 10.0


@dataclass(frozen=True)
class RouteCommand:
    """
    The route command in effect for one ego pose.

    :param command: the :class:`RoadOption` in effect
    :param progress: index of the last sparse target reached (pass it to the next call)
    :param target_index: index of the next target point in ``plan.poses``
    :param target_x: target x in the map frame (m)
    :param target_y: target y in the map frame (m)
    :param target_forward: target in the vehicle frame, metres ahead (REP-103 x)
    :param target_left: target in the vehicle frame, metres to the left (REP-103 y)
    :param target_distance: straight-line distance to the target (m)
    """

    command: RoadOption
    progress: int
    target_index: int
    target_x: float
    target_y: float
    target_forward: float
    target_left: float
    target_distance: float

    def to_dict(self) -> dict:
        """Return plain JSON data (the command as its name and value)."""
        return {'command': self.command.name, 'command_value': int(self.command),
                'progress': self.progress, 'target_index': self.target_index,
                'target_x': self.target_x, 'target_y': self.target_y,
                'target_forward': self.target_forward, 'target_left': self.target_left,
                'target_distance': self.target_distance}


def _locate(points: np.ndarray, x: float, y: float) -> int:
    """Return i such that the segment ``points[i] -> points[i + 1]`` is nearest to (x, y)."""
    start, end = points[:-1], points[1:]
    along = end - start
    length2 = np.maximum((along ** 2).sum(axis=1), 1e-12)
    t = np.clip(((np.array([x, y]) - start) * along).sum(axis=1) / length2, 0.0, 1.0)
    nearest = start + t[:, None] * along
    return int(np.argmin(((nearest - [x, y]) ** 2).sum(axis=1)))


def route_command(plan: GlobalPlan, x: float, y: float, yaw: float,
                  progress: Optional[int] = None, reach_distance_m: float = REACH_DISTANCE_M,
                  lookahead_m: float = LOOKAHEAD_M,
                  pass_distance_m: float = PASS_DISTANCE_M) -> RouteCommand:
    """
    Return the command in effect and the next target point for an ego pose.

    :param plan: the global plan (its sparse targets are used)
    :param x: ego x in the plan's frame (m)
    :param y: ego y (m)
    :param yaw: ego heading (rad, counter-clockwise)
    :param progress: ``progress`` of the previous call on this route; None locates the car on
        the plan from scratch (first frame, or a node that joined late)
    :param reach_distance_m: a target this close counts as reached
    :param lookahead_m: targets up to this far along the plan past the last reached one are
        checked, so a skipped target does not stall the planner
    :param pass_distance_m: a target the car has passed counts as reached within this distance
    :raises ValueError: on a non-finite pose or a progress outside the plan
    """
    for name, value in (('x', x), ('y', y), ('yaw', yaw)):
        number_in_range(name, value)
    number_in_range('reach_distance_m', reach_distance_m, 0.0)
    number_in_range('lookahead_m', lookahead_m, 0.0)
    number_in_range('pass_distance_m', pass_distance_m, 0.0)
    points = plan.poses[:, :2]
    count = len(points)
    if progress is None:
        progress = _locate(points, x, y)
    elif isinstance(progress, bool) or not isinstance(progress, (int, np.integer)) or \
            not 0 <= progress < count:
        raise ValueError(f'progress must be an index in [0, {count - 1}], got {progress!r}')
    progress = int(progress)
    ego = np.array([x, y])
    along = 0.0
    for j in range(progress + 1, count):
        along += float(np.hypot(*(points[j] - points[j - 1])))
        if j > progress + 1 and along > lookahead_m:
            break
        offset = ego - points[j]
        distance = float(np.hypot(*offset))
        heading = plan.poses[j, 2]
        passed = offset @ (math.cos(heading), math.sin(heading)) > 0.0
        if distance <= reach_distance_m or (passed and distance <= pass_distance_m):
            progress = j
    target = min(progress + 1, count - 1)
    command = plan.options[target]
    reached = plan.options[progress]
    if target != progress and reached in JUNCTION_OPTIONS and command not in JUNCTION_OPTIONS:
        command = reached
    tx, ty = (float(v) for v in points[target])
    dx, dy = tx - x, ty - y
    cos_yaw, sin_yaw = math.cos(yaw), math.sin(yaw)
    return RouteCommand(RoadOption(command), progress, target, tx, ty,
                        cos_yaw * dx + sin_yaw * dy, -sin_yaw * dx + cos_yaw * dy,
                        math.hypot(dx, dy))


def commands_along(plan: GlobalPlan, poses: Iterable[Tuple[float, float, float]],
                   **options) -> List[RouteCommand]:
    """
    Return the command of each pose of a driven sequence, carrying ``progress`` along.

    This is what a live node does frame by frame, so offline and live commands agree.

    :param plan: the global plan
    :param poses: ``(x, y, yaw)`` per frame, in driving order
    :param options: ``reach_distance_m``, ``lookahead_m``, ``pass_distance_m``
    """
    commands: List[RouteCommand] = []
    progress = None
    for x, y, yaw in poses:
        result = route_command(plan, float(x), float(y), float(yaw), progress, **options)
        progress = result.progress
        commands.append(result)
    return commands
