"""
Training windows from feature files, split into train and validation by bag or episode.

A window is K consecutive frames of one bag and one episode, newest last; its label is the
newest frame's action, or for waypoint heads its waypoint label from the recorded poses
(:mod:`llava_drive.learning.waypoints`; windows whose newest frame has none are left out).
Windows never cross an episode boundary or a gap in the stamps (frames the extractor skipped,
a pause in recording). Train and validation never share a bag
(``split_by='bag'``) or an episode (``split_by='episode'``): neighbouring frames are nearly
identical, so a random frame split would measure memorisation.
"""
from dataclasses import dataclass
from pathlib import Path

from llava_drive.features.route_prompt import NO_PLAN_COMMAND
from llava_drive.features.store import list_feature_files, load_feature_file, SUFFIX
from llava_drive.learning.waypoints import waypoint_labels, WaypointSpec
import numpy as np

SPLIT_KEYS = ('bag', 'episode', 'auto')
# A step between stamps larger than this many median steps is a gap.
DEFAULT_MAX_GAP_FACTOR = 2.5


class DatasetError(ValueError):
    """The feature files cannot make a training set (mixed specs, too few bags...)."""


@dataclass
class WindowSet:
    """
    Frames of one or more feature files and the windows taken from them.

    Train and validation sets share the frame arrays; only ``windows`` and the per-window
    ``bags`` / ``episodes`` differ.

    :param features: [N, D] float32 frames of all files, concatenated.
    :param actions: [N, 3] (steer, throttle, brake) per frame.
    :param speed: [N] speed in m/s per frame.
    :param stamps: [N] int64 stamps in nanoseconds per frame.
    :param windows: [M, K] int64 frame indices of each window, newest last.
    :param bags: [M] bag name of each window.
    :param episodes: [M] episode index of each window.
    :param command: [N] route command per frame (RoadOption values).
    :param target: [N, 2] next target point per frame (NaN unknown).
    :param labels: [N, L] label per frame (None: the actions).
    """

    features: np.ndarray
    actions: np.ndarray
    speed: np.ndarray
    stamps: np.ndarray
    windows: np.ndarray
    bags: np.ndarray
    episodes: np.ndarray
    command: np.ndarray = None
    target: np.ndarray = None
    labels: np.ndarray = None

    def __post_init__(self):
        """Fill absent route inputs (follow the lane, no target) and labels (the actions)."""
        count = len(self.features)
        if self.command is None:
            self.command = np.full(count, int(NO_PLAN_COMMAND), np.int64)
        if self.target is None:
            self.target = np.full((count, 2), np.nan, np.float32)
        if self.labels is None:
            self.labels = self.actions

    def __len__(self) -> int:
        """Return the number of windows M."""
        return int(self.windows.shape[0])

    @property
    def window(self) -> int:
        """Return K, the frames per window."""
        return int(self.windows.shape[1])

    def targets(self) -> np.ndarray:
        """Return the label of every window, the newest frame's label, [M, L]."""
        return self.labels[self.windows[:, -1]]

    def frame_indices(self) -> np.ndarray:
        """Return the sorted indices of all frames used by at least one window."""
        return np.unique(self.windows)

    def batch(self, rows):
        """
        Return ``(features [B, K, D], speed [B, K], labels [B, L])`` for some windows.

        :param rows: indices into the windows of this set.
        """
        frames = self.windows[rows]
        return self.features[frames], self.speed[frames], self.labels[frames[:, -1]]

    def route(self, rows):
        """
        Return ``(command [B, K], target [B, K, 2])`` for some windows.

        :param rows: indices into the windows of this set.
        """
        frames = self.windows[rows]
        return self.command[frames], self.target[frames]

    def subset(self, mask) -> 'WindowSet':
        """
        Return the windows selected by a boolean mask, sharing the frame arrays.

        :param mask: [M] booleans.
        """
        return WindowSet(self.features, self.actions, self.speed, self.stamps,
                         self.windows[mask], self.bags[mask], self.episodes[mask],
                         self.command, self.target, self.labels)


def resolve_feature_paths(items) -> list:
    """
    Expand files and directories into a sorted, de-duplicated list of feature files.

    A directory contributes its finished feature files (those with a JSON sidecar).

    :param items: feature files (``*.safetensors``) or directories holding them.
    """
    paths = []
    for item in items:
        item = Path(item)
        if item.is_dir():
            found = list_feature_files(item)  # finished files only (with their sidecar)
            if not found:
                raise DatasetError(f'no *{SUFFIX} feature files in directory {item}')
            paths.extend(found)
        elif item.is_file():
            paths.append(item)
        else:
            raise DatasetError(f'feature file or directory not found: {item}')
    unique = sorted({p.resolve() for p in paths})
    if not unique:
        raise DatasetError('no feature files given')
    return unique


def bag_name(feature_file) -> str:
    """
    Return the name of the bag a feature file came from (metadata, else the file name).

    :param feature_file: a loaded ``FeatureFile``.
    """
    source = feature_file.meta.get('source_bag') or feature_file.meta.get('bag')
    return Path(source).name if source else Path(feature_file.path).stem


def load_feature_files(paths) -> list:
    """
    Load feature files and refuse a mix of feature specifications or duplicate bags.

    :param paths: feature files (already resolved, see :func:`resolve_feature_paths`).
    :raises DatasetError: with every difference named when two specs differ.
    """
    files = [load_feature_file(path) for path in paths]
    if not files:
        raise DatasetError('no feature files given')
    reference = files[0]
    for other in files[1:]:
        differences = reference.spec.differences(
            other.spec, labels=(reference.path.name, other.path.name))
        if differences:
            raise DatasetError(
                f'feature files were extracted with different feature specifications '
                f'({reference.path} vs {other.path}): ' + '; '.join(differences))
    names = [bag_name(f) for f in files]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DatasetError(f'several feature files come from the same bag: {duplicates}')
    return files


def segment_ids(stamps, episode, max_gap_factor=DEFAULT_MAX_GAP_FACTOR) -> np.ndarray:
    """
    Return a run number per frame: a new run starts at an episode change or a gap.

    A gap is a step between stamps that is not positive or exceeds ``max_gap_factor`` times
    the median positive step.

    :param stamps: [N] int64 stamps in nanoseconds, in recording order.
    :param episode: [N] episode index per frame.
    :param max_gap_factor: how many median steps make a gap.
    """
    stamps = np.asarray(stamps, dtype=np.int64)
    episode = np.asarray(episode)
    if stamps.size == 0:
        return np.zeros(0, dtype=np.int64)
    steps = np.diff(stamps)
    positive = steps[steps > 0]
    limit = np.median(positive) * max_gap_factor if positive.size else 0
    breaks = (steps <= 0) | (steps > limit) | (np.diff(episode) != 0)
    return np.concatenate([[0], np.cumsum(breaks)]).astype(np.int64)


def window_indices(stamps, episode, window, max_gap_factor=DEFAULT_MAX_GAP_FACTOR):
    """
    Return [M, K] indices of every window of K consecutive frames within one run.

    :param stamps: [N] stamps in nanoseconds.
    :param episode: [N] episode index per frame.
    :param window: K, frames per window.
    :param max_gap_factor: how many median stamp steps make a gap.
    """
    segments = segment_ids(stamps, episode, max_gap_factor)
    # Position of each frame inside its run: the window ending there fits if it is >= K - 1.
    starts = np.flatnonzero(np.concatenate([[True], np.diff(segments) != 0]))
    lengths = np.diff(np.concatenate([starts, [segments.size]]))
    position = np.arange(segments.size) - np.repeat(starts, lengths)
    ends = np.flatnonzero(position >= window - 1)
    return ends[:, None] + np.arange(1 - window, 1)[None, :]


def build_windows(files, window, max_gap_factor=DEFAULT_MAX_GAP_FACTOR,
                  waypoints: WaypointSpec = None) -> WindowSet:
    """
    Concatenate loaded feature files and take every valid window from each.

    :param files: loaded ``FeatureFile`` objects.
    :param window: K, frames per window.
    :param max_gap_factor: how many median stamp steps make a gap.
    :param waypoints: label windows with waypoints of this definition (None: actions).
    """
    if window < 1:
        raise DatasetError(f'window must be >= 1, got {window}')
    features, actions, speed, stamps, windows, bags, episodes = [], [], [], [], [], [], []
    command, target, labels = [], [], []
    offset = 0
    for feature_file in files:
        local = window_indices(feature_file.stamps, feature_file.episode, window, max_gap_factor)
        if waypoints is not None:
            segments = segment_ids(feature_file.stamps, feature_file.episode, max_gap_factor)
            frame_labels, valid = waypoint_labels(feature_file.stamps, feature_file.pose,
                                                  feature_file.speed, segments, waypoints)
            local = local[valid[local[:, -1]]]
            labels.append(frame_labels)
        command.append(np.asarray(feature_file.command, dtype=np.int64))
        target.append(np.asarray(feature_file.target, dtype=np.float32))
        features.append(np.asarray(feature_file.features, dtype=np.float32))
        actions.append(np.asarray(feature_file.actions, dtype=np.float32))
        speed.append(np.asarray(feature_file.speed, dtype=np.float32))
        stamps.append(np.asarray(feature_file.stamps, dtype=np.int64))
        windows.append(local + offset)
        bags.append(np.full(len(local), bag_name(feature_file), dtype=object))
        episodes.append(np.asarray(feature_file.episode, dtype=np.int64)[local[:, -1]])
        offset += feature_file.num_frames
    result = WindowSet(np.concatenate(features), np.concatenate(actions),
                       np.concatenate(speed), np.concatenate(stamps),
                       np.concatenate(windows).astype(np.int64), np.concatenate(bags),
                       np.concatenate(episodes), np.concatenate(command),
                       np.concatenate(target), np.concatenate(labels) if labels else None)
    if len(result) == 0:
        if waypoints is not None:
            raise DatasetError(
                f'no window of {window} frames has a waypoint label ({waypoints.num_waypoints} '
                f'points {waypoints.spacing_s} s apart need recorded poses that far ahead); '
                f'feature files extracted before poses were stored have none: extract again')
        raise DatasetError(f'no window of {window} consecutive frames in the feature files')
    return result


def split_windows(windows: WindowSet, split_by='auto', val_fraction=0.2, seed=0):
    """
    Split windows into train and validation sets by whole bags or whole episodes.

    ``'auto'`` splits by bag when there are at least two bags, else by episode. The number
    of validation groups is ``round(val_fraction * groups)``, at least one, leaving at least
    one group for training; the groups are drawn with a seeded generator.

    :param windows: all windows.
    :param split_by: ``'bag'``, ``'episode'`` or ``'auto'``.
    :param val_fraction: share of groups held out for validation, in (0, 1).
    :param seed: seed of the group shuffle.
    :returns: ``(train, val)`` window sets.
    """
    if split_by not in SPLIT_KEYS:
        raise DatasetError(f'split_by must be one of {SPLIT_KEYS}, got {split_by!r}')
    if not 0.0 < val_fraction < 1.0:
        raise DatasetError(f'val_fraction must be in (0, 1), got {val_fraction!r}')
    if split_by == 'auto':
        split_by = 'bag' if len(set(windows.bags)) >= 2 else 'episode'
    if split_by == 'bag':
        keys = np.array([str(b) for b in windows.bags], dtype=object)
    else:
        keys = np.array([f'{b}#{e}' for b, e in zip(windows.bags, windows.episodes)],
                        dtype=object)
    groups = sorted(set(keys))
    if len(groups) < 2:
        raise DatasetError(
            f'cannot split by {split_by}: only {len(groups)} {split_by} ({groups}); record '
            f'more bags or episodes, or split by the other key')
    count = min(len(groups) - 1, max(1, round(val_fraction * len(groups))))
    order = np.random.default_rng(seed).permutation(len(groups))
    held_out = {groups[i] for i in order[:count]}
    val_mask = np.array([k in held_out for k in keys], dtype=bool)
    return windows.subset(~val_mask), windows.subset(val_mask)
