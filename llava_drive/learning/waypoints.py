"""
Waypoint labels from recorded odometry: where the car was over the next seconds, and how fast.

For a frame at time t with pose (x, y, yaw), the label is the car's position at
``t + k * spacing_s`` for k = 1..K, in the frame's vehicle frame (REP-103: metres ahead,
metres to the left), followed by the target speed, the recorded speed at
``t + speed_horizon_s``. Positions and speeds between frames are interpolated linearly;
headings are not needed. A frame gets no label (``valid`` False) when its pose is unknown or
its horizon reaches past the end of its run (an episode change or a gap in the stamps): a
label never spans two drives.
"""
from dataclasses import dataclass

from llava_drive.config_checks import number_in_range
import numpy as np

DEFAULT_NUM_WAYPOINTS = 4
DEFAULT_SPACING_S = 0.5
DEFAULT_SPEED_HORIZON_S = 1.0


@dataclass(frozen=True)
class WaypointSpec:
    """
    How waypoint labels are made (stored in the checkpoint's head configuration).

    :param num_waypoints: K future positions.
    :param spacing_s: time between them (s).
    :param speed_horizon_s: the target speed is the recorded speed this far ahead (s).
    """

    num_waypoints: int = DEFAULT_NUM_WAYPOINTS
    spacing_s: float = DEFAULT_SPACING_S
    speed_horizon_s: float = DEFAULT_SPEED_HORIZON_S

    def __post_init__(self):
        """Check the values; errors name the bad one."""
        if isinstance(self.num_waypoints, bool) or not isinstance(self.num_waypoints, int) \
                or not 1 <= self.num_waypoints <= 32:
            raise ValueError(f'num_waypoints must be an integer in [1, 32], '
                             f'got {self.num_waypoints!r}')
        number_in_range('spacing_s', self.spacing_s, 0.0, 10.0, low_open=True)
        number_in_range('speed_horizon_s', self.speed_horizon_s, 0.0, 10.0, low_open=True)

    @property
    def label_size(self) -> int:
        """Return the label width: 2 per waypoint plus the target speed."""
        return 2 * self.num_waypoints + 1

    def names(self) -> list:
        """Return the label column names: ``wp1_forward, wp1_left, ..., target_speed``."""
        names = []
        for k in range(1, self.num_waypoints + 1):
            names += [f'wp{k}_forward', f'wp{k}_left']
        return names + ['target_speed']


def waypoint_labels(stamps, pose, speed, segments, spec: WaypointSpec):
    """
    Return ``(labels [N, 2K + 1] float32, valid [N] bool)`` for the frames of one file.

    :param stamps: [N] int64 stamps in nanoseconds, increasing within a run.
    :param pose: [N, 3] map x, y, yaw (NaN where unknown).
    :param speed: [N] speed in m/s (NaN where unknown).
    :param segments: [N] run number per frame (``dataset.segment_ids``).
    :param spec: the label definition.
    """
    stamps = np.asarray(stamps, dtype=np.int64)
    pose = np.asarray(pose, dtype=np.float64).reshape(-1, 3)
    speed = np.asarray(speed, dtype=np.float64)
    segments = np.asarray(segments)
    count = len(stamps)
    labels = np.full((count, spec.label_size), np.nan, np.float32)
    valid = np.zeros(count, dtype=bool)
    seconds = (stamps - (stamps[0] if count else 0)) / 1e9
    offsets = np.arange(1, spec.num_waypoints + 1) * spec.spacing_s
    for run in np.unique(segments):
        index = np.flatnonzero(segments == run)
        times, xy, yaw = seconds[index], pose[index, :2], pose[index, 2]
        known = np.isfinite(xy).all(axis=1) & np.isfinite(yaw)
        if len(index) < 2:
            continue
        end = times[-1]
        horizon = max(offsets[-1], spec.speed_horizon_s)
        fits = (times + horizon <= end + 1e-9) & known
        if not fits.any():
            continue
        # Interpolation over known poses only; a frame whose horizon crosses an unknown pose
        # is refused below.
        future = times[:, None] + offsets[None, :]
        fx = np.interp(future, times, np.where(known, xy[:, 0], 0.0))
        fy = np.interp(future, times, np.where(known, xy[:, 1], 0.0))
        # Unknown poses between a frame and the end of its horizon refuse its label.
        reach = np.searchsorted(times, times + horizon, side='right')
        unknown_before = np.concatenate([[0], np.cumsum(~known)])
        ok = fits & (unknown_before[reach] == unknown_before[np.arange(len(index))])
        dx, dy = fx - xy[:, :1], fy - xy[:, 1:2]
        cos_yaw, sin_yaw = np.cos(yaw)[:, None], np.sin(yaw)[:, None]
        forward = cos_yaw * dx + sin_yaw * dy
        left = -sin_yaw * dx + cos_yaw * dy
        known_speed = np.isfinite(speed[index])
        if not known_speed.any():
            continue
        target_speed = np.interp(times + spec.speed_horizon_s, times[known_speed],
                                 speed[index][known_speed])
        rows = np.empty((len(index), spec.label_size))
        rows[:, 0:-1:2], rows[:, 1:-1:2], rows[:, -1] = forward, left, target_speed
        labels[index[ok]] = rows[ok]
        valid[index[ok]] = True
    return labels, valid
