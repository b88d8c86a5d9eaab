"""
Global plans: sparse target poses with route commands, and the dense waypoints they come from.

The sparse plan is what a CARLA leaderboard agent receives (and what its ROS 2 agent publishes
as ``carla_msgs/CarlaRoute``): the dense route downsampled by :func:`downsample_indices`, which
keeps the first and last point, every point where the command changes (junction entry and
exit), every lane-change point, and one point every ``sample_distance_m`` in between.
"""
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

from llava_drive.config_checks import number_in_range
from llava_drive.planning.road_option import JUNCTION_OPTIONS, RoadOption
import numpy as np

# leaderboard-2.0's AutonomousAgent.set_global_plan downsamples with a 200 m maximum gap.
LEADERBOARD_SAMPLE_DISTANCE_M = 200.0
# Plans are road networks of a town, not continents: bigger values are corrupt input.
MAX_COORDINATE_M = 1e7
MAX_POINTS = 1_000_000

_LANE_CHANGES = (RoadOption.CHANGELANELEFT, RoadOption.CHANGELANERIGHT)


def _poses_array(name: str, poses) -> np.ndarray:
    try:
        array = np.array(poses, dtype=float)
    except (TypeError, ValueError) as error:
        raise ValueError(f'{name} must be numbers (x, y, yaw) per point: {error}') from None
    if array.ndim != 2 or array.shape[1] != 3:
        raise ValueError(f'{name} must have shape [N, 3] (x, y, yaw), got {array.shape}')
    if len(array) > MAX_POINTS:
        raise ValueError(f'{name} has {len(array)} points, more than {MAX_POINTS}')
    if not np.isfinite(array).all():
        bad = int(np.argwhere(~np.isfinite(array))[0][0])
        raise ValueError(f'{name}[{bad}] is not finite: {array[bad].tolist()}')
    if (np.abs(array[:, :2]) > MAX_COORDINATE_M).any():
        bad = int(np.argwhere(np.abs(array[:, :2]) > MAX_COORDINATE_M)[0][0])
        raise ValueError(f'{name}[{bad}] lies beyond {MAX_COORDINATE_M:g} m: '
                         f'{array[bad].tolist()}')
    # Headings are angles: keep them in (-pi, pi] so equal poses compare equal.
    array[:, 2] = np.arctan2(np.sin(array[:, 2]), np.cos(array[:, 2]))
    array.setflags(write=False)
    return array


def _options_tuple(name: str, options, count: int) -> Tuple[RoadOption, ...]:
    if isinstance(options, (str, bytes)):
        raise ValueError(f'{name} must be a sequence of RoadOption values, got {options!r}')
    try:
        parsed = tuple(RoadOption.parse(option) for option in options)
    except TypeError:
        raise ValueError(f'{name} must be a sequence of RoadOption values, '
                         f'got {options!r}') from None
    except ValueError as error:
        raise ValueError(f'{name}: {error}') from None
    if len(parsed) != count:
        raise ValueError(f'{name} has {len(parsed)} options for {count} poses')
    return parsed


def downsample_indices(poses, options: Sequence, sample_distance_m: float =
                       LEADERBOARD_SAMPLE_DISTANCE_M) -> List[int]:
    """
    Return the indices of the dense route points a leaderboard agent's sparse plan keeps.

    Same rule as leaderboard-2.0's ``route_manipulation.downsample_route``: the first point,
    every lane-change point, every point whose option differs from the previous one (unless
    the previous one was a lane change), a point once the distance since the last kept one
    exceeds ``sample_distance_m``, and the last point.

    :param poses: dense ``[N, 3]`` poses (x, y, yaw)
    :param options: one :class:`RoadOption` per pose
    :param sample_distance_m: maximum distance between kept points (m)
    """
    poses = _poses_array('poses', poses)
    options = _options_tuple('options', options, len(poses))
    number_in_range('sample_distance_m', sample_distance_m, 0.0, low_open=True)
    kept: List[int] = []
    travelled = 0.0
    for i, option in enumerate(options):
        previous = options[i - 1] if i else None
        if (previous is None or option in _LANE_CHANGES
                or (option != previous and previous not in _LANE_CHANGES)
                or travelled > sample_distance_m or i == len(options) - 1):
            kept.append(i)
            travelled = 0.0
        else:
            # As the leaderboard does, a kept point does not add its own step to the gap.
            travelled += float(np.hypot(*(poses[i, :2] - poses[i - 1, :2])))
    return kept


@dataclass(frozen=True, eq=False)
class GlobalPlan:
    """
    A route: sparse target poses with their commands, and optionally the dense waypoints.

    Arrays are read-only ``[N, 3]`` float arrays (x, y in m in the ``map`` frame, yaw in rad,
    wrapped to (-pi, pi]); options are :class:`RoadOption` tuples.

    :param poses: sparse target poses, at least 2 (start and goal)
    :param options: the command of each target pose
    :param dense_poses: the dense route (e.g. 1 m apart), or None where only the sparse plan
        is known (a plan received on the ``global_plan`` topic)
    :param dense_options: the command of each dense pose (None with ``dense_poses``)
    """

    poses: np.ndarray
    options: Tuple[RoadOption, ...]
    dense_poses: Optional[np.ndarray] = None
    dense_options: Optional[Tuple[RoadOption, ...]] = None

    def __post_init__(self):
        """Convert and check every field, naming the bad value."""
        poses = _poses_array('GlobalPlan.poses', self.poses)
        if len(poses) < 2:
            raise ValueError(f'GlobalPlan.poses needs at least 2 points (start and goal), '
                             f'got {len(poses)}')
        object.__setattr__(self, 'poses', poses)
        object.__setattr__(self, 'options',
                           _options_tuple('GlobalPlan.options', self.options, len(poses)))
        if (self.dense_poses is None) != (self.dense_options is None):
            raise ValueError('GlobalPlan.dense_poses and dense_options come together '
                             '(both or neither)')
        if self.dense_poses is not None:
            dense = _poses_array('GlobalPlan.dense_poses', self.dense_poses)
            if len(dense) < 2:
                raise ValueError(f'GlobalPlan.dense_poses needs at least 2 points, '
                                 f'got {len(dense)}')
            object.__setattr__(self, 'dense_poses', dense)
            object.__setattr__(self, 'dense_options', _options_tuple(
                'GlobalPlan.dense_options', self.dense_options, len(dense)))

    @classmethod
    def from_dense(cls, poses, options: Sequence,
                   sample_distance_m: float = LEADERBOARD_SAMPLE_DISTANCE_M) -> 'GlobalPlan':
        """
        Build a plan from a dense route, downsampling it as the leaderboard does.

        :param poses: dense ``[N, 3]`` poses (x, y, yaw)
        :param options: one :class:`RoadOption` per dense pose
        :param sample_distance_m: maximum gap between sparse points (m)
        """
        dense = _poses_array('GlobalPlan.dense_poses', poses)
        dense_options = _options_tuple('GlobalPlan.dense_options', options, len(dense))
        kept = downsample_indices(dense, dense_options, sample_distance_m)
        return cls(dense[kept], tuple(dense_options[i] for i in kept), dense, dense_options)

    def __len__(self) -> int:
        """Return the number of sparse target points."""
        return len(self.poses)

    @property
    def has_dense(self) -> bool:
        """Return whether the dense waypoints are known."""
        return self.dense_poses is not None

    def sparse(self) -> 'GlobalPlan':
        """Return the plan without its dense waypoints (what the topic carries)."""
        return GlobalPlan(self.poses, self.options)

    @property
    def length(self) -> float:
        """Return the length of the route polyline (dense where known), in metres."""
        poses = self.dense_poses if self.has_dense else self.poses
        return float(np.hypot(*np.diff(poses[:, :2], axis=0).T).sum())

    def junctions(self) -> List[Tuple[int, int, RoadOption]]:
        """
        Return the junction crossings of the route as ``(entry, exit, option)`` indices.

        ``entry`` is the first point of a run of LEFT, RIGHT or STRAIGHT points and ``exit`` the
        first point after that run (the last point when the route ends inside). Indices refer
        to the dense poses where known, else to the sparse ones.
        """
        options = self.dense_options if self.has_dense else self.options
        crossings = []
        i = 0
        while i < len(options):
            option = options[i]
            if option in JUNCTION_OPTIONS:
                j = i
                while j < len(options) and options[j] == option:
                    j += 1
                crossings.append((i, min(j, len(options) - 1), option))
                i = j
            else:
                i += 1
        return crossings

    def equals(self, other: 'GlobalPlan', tolerance: float = 1e-6) -> bool:
        """
        Return whether both plans hold the same points and options (within ``tolerance``).

        :param other: the other plan
        :param tolerance: absolute tolerance on coordinates and headings
        """
        def close(a, b):
            if a is None or b is None:
                return a is None and b is None
            if a.shape != b.shape:
                return False
            delta = np.abs(a - b)
            delta[:, 2] = np.abs(np.arctan2(np.sin(a[:, 2] - b[:, 2]), np.cos(a[:, 2] - b[:, 2])))
            return bool((delta <= tolerance).all())
        return (self.options == other.options and self.dense_options == other.dense_options
                and close(self.poses, other.poses) and close(self.dense_poses, other.dense_poses))

    def to_dict(self, with_dense: bool = True) -> dict:
        """
        Return plain JSON data: ``poses`` ``[[x, y, yaw], ...]``, ``options`` as ints.

        :param with_dense: include the dense waypoints where known
        """
        data = {'poses': self.poses.tolist(), 'options': [int(o) for o in self.options]}
        if with_dense and self.has_dense:
            data['dense_poses'] = self.dense_poses.tolist()
            data['dense_options'] = [int(o) for o in self.dense_options]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> 'GlobalPlan':
        """
        Rebuild a plan from :meth:`to_dict` data (validated like any other plan).

        :param data: the dictionary
        :raises ValueError: when keys are missing or values are bad
        """
        if not isinstance(data, dict) or 'poses' not in data or 'options' not in data:
            raise ValueError('a global plan needs "poses" and "options"')
        return cls(data['poses'], data['options'], data.get('dense_poses'),
                   data.get('dense_options'))
