"""
Feature store: one safetensors file of features and labels per bag, plus JSON metadata.

Layout for a bag ``bags/run_3``: ``features/run_3.safetensors`` with the tensors

- ``features`` [N, D] float32 (or float16),
- ``actions`` [N, 3] float32 as (steer, throttle, brake),
- ``stamps`` [N] int64 nanoseconds,
- ``speed`` [N] float32 m/s,
- ``episode`` [N] int64,
- ``command`` [N] int64: the route command in effect (a ``RoadOption`` value),
- ``target`` [N, 2] float32: the next target point in the vehicle frame, metres ahead and to
  the left (NaN where the route is unknown),
- ``pose`` [N, 3] float32: x, y (m) and yaw (rad) in the map frame from odometry (NaN where
  the bag has none); waypoint labels come from it,

and the sidecar ``features/run_3.json``: format version, full :class:`FeatureSpec`, frame
count, feature dimension and the extraction metadata (source bag, skipped frames, time). The
same JSON is stored in the safetensors header, so a sidecar that does not belong to its
tensors is detected. Both files are written under hidden temporary names and moved into place
with ``os.replace`` (tensors first, sidecar last): a file without its sidecar, or a temporary
file, is never a finished feature file.

Bad numbers never enter or leave the store: writing and loading both refuse, naming the file
and the first bad frame, non-finite features or speeds, actions that are not finite or outside
the control ranges, and infinite targets or poses (NaN there means unknown). Loading also
refuses wrong dtypes and shapes, a damaged safetensors header and a damaged embedded document.
"""
from dataclasses import dataclass, field
import json
import os
from pathlib import Path

from llava_drive.control import BRAKE_RANGE, STEER_RANGE, THROTTLE_RANGE
from llava_drive.features.route_prompt import NO_PLAN_COMMAND
from llava_drive.features.spec import FeatureSpec
from llava_drive.planning import RoadOption
import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

FORMAT_VERSION = 1
SUFFIX = '.safetensors'
_META_KEY = 'llava_drive'
_FEATURE_DTYPES = (np.float32, np.float16)
# Stored dtype and rank of every tensor (features: either of _FEATURE_DTYPES).
_LAYOUT = {'features': (_FEATURE_DTYPES, 2), 'actions': ((np.float32,), 2),
           'stamps': ((np.int64,), 1), 'speed': ((np.float32,), 1),
           'episode': ((np.int64,), 1), 'command': ((np.int64,), 1),
           'target': ((np.float32,), 2), 'pose': ((np.float32,), 2)}
_ACTION_RANGES = np.array([STEER_RANGE, THROTTLE_RANGE, BRAKE_RANGE], np.float32)


class FeatureStoreError(Exception):
    """A feature file is missing, incomplete, corrupt or inconsistent."""


@dataclass
class FeatureFile:
    """
    The contents of one feature file.

    :param path: the safetensors file.
    :param features: [N, D] float32 or float16.
    :param actions: [N, 3] float32 (steer, throttle, brake).
    :param stamps: [N] int64 image stamps in nanoseconds.
    :param speed: [N] float32 speed in m/s.
    :param episode: [N] int64 episode index.
    :param spec: the feature specification the features were extracted with.
    :param meta: extraction metadata (source bag, frame counts, time...).
    :param command: [N] int64 route command per frame (RoadOption value).
    :param target: [N, 2] float32 next target point (forward, left) in m, NaN if unknown.
    :param pose: [N, 3] float32 map pose (x, y, yaw), NaN if unknown.
    """

    path: Path
    features: np.ndarray
    actions: np.ndarray
    stamps: np.ndarray
    speed: np.ndarray
    episode: np.ndarray
    spec: FeatureSpec
    meta: dict = field(default_factory=dict)
    command: np.ndarray = None
    target: np.ndarray = None
    pose: np.ndarray = None

    def __post_init__(self):
        """Fill the route tensors of files written before they existed."""
        count = int(self.features.shape[0])
        if self.command is None:
            self.command = np.full(count, int(NO_PLAN_COMMAND), np.int64)
        if self.target is None:
            self.target = np.full((count, 2), np.nan, np.float32)
        if self.pose is None:
            self.pose = np.full((count, 3), np.nan, np.float32)

    @property
    def num_frames(self) -> int:
        """Return N, the number of frames."""
        return int(self.features.shape[0])


def feature_file_for_bag(out_dir, bag_path) -> Path:
    """
    Return the feature file path for a bag: ``<out_dir>/<bag name>.safetensors``.

    :param out_dir: the feature directory.
    :param bag_path: a rosbag2 directory (or a single bag file, whose suffix is dropped).
    """
    bag = Path(bag_path)
    name = bag.name if bag.is_dir() or not bag.suffix else bag.stem
    if not name:
        raise ValueError('cannot name a feature file for bag path %r' % str(bag_path))
    return Path(out_dir) / (name + SUFFIX)


def sidecar_path(path) -> Path:
    """
    Return the JSON metadata path that belongs to a feature file.

    :param path: the safetensors feature file.
    """
    return Path(path).with_suffix('.json')


def list_feature_files(directory) -> list:
    """
    Return the finished feature files in a directory (with sidecar), sorted by name.

    :param directory: the feature directory.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FeatureStoreError('feature directory not found: %s' % directory)
    return sorted(p for p in directory.glob('*' + SUFFIX)
                  if not p.name.startswith('.') and sidecar_path(p).is_file())


def _as_array(name, value, dtype, ndim):
    """Convert one input to a contiguous numpy array of ``dtype`` and check its rank."""
    if hasattr(value, 'detach'):  # a torch tensor, without importing torch here
        value = value.detach().cpu()
        if str(value.dtype) == 'torch.bfloat16':  # numpy has no bfloat16
            value = value.float()
        value = value.numpy()
    array = np.asarray(value)
    if dtype is not None:
        array = array.astype(dtype, copy=False)
    if array.ndim != ndim:
        raise FeatureStoreError('%s must have %d dimensions, got shape %s'
                                % (name, ndim, array.shape))
    return np.ascontiguousarray(array)


def _check_commands(command, where):
    """Refuse command values that are no RoadOption."""
    valid = np.array([int(option) for option in RoadOption])
    bad = ~np.isin(command, valid)
    if bad.any():
        raise FeatureStoreError('%s: %d is no RoadOption value (valid: %s)'
                                % (where, int(command[bad][0]), sorted(valid.tolist())))


def _first_bad_frame(bad: np.ndarray):
    """Return the index of the first frame whose row of ``bad`` is set, or None."""
    rows = bad.reshape(len(bad), -1).any(axis=1)
    return int(np.argmax(rows)) if rows.any() else None


def check_values(tensors: dict, where) -> None:
    """
    Refuse non-finite or out-of-range numbers, naming the first bad frame and its stamp.

    :param tensors: the feature file's tensors by name (route tensors optional).
    :param where: the file, for the message.
    :raises FeatureStoreError: e.g. ``f.safetensors: frame 7 (stamp 1000 ns): actions out of
        range``.
    """
    actions = tensors['actions']
    checks = [(~np.isfinite(tensors['features']), 'non-finite features'),
              (~np.isfinite(actions), 'non-finite actions'),
              ((actions < _ACTION_RANGES[:, 0]) | (actions > _ACTION_RANGES[:, 1]),
               'actions out of range (steer [-1, 1], throttle and brake [0, 1])'),
              (~np.isfinite(tensors['speed']), 'non-finite speed')]
    checks += [(np.isinf(tensors[name]), f'infinite {name} (NaN marks unknown)')
               for name in ('target', 'pose') if tensors.get(name) is not None]
    for bad, problem in checks:
        frame = _first_bad_frame(bad)
        if frame is not None:
            raise FeatureStoreError('%s: frame %d (stamp %d ns): %s (%d frames affected)' % (
                where, frame, int(tensors['stamps'][frame]), problem,
                int(bad.reshape(len(bad), -1).any(axis=1).sum())))


def write_feature_file(path, features, actions, stamps, speed, episode,
                       spec: FeatureSpec, meta: dict = None, command=None, target=None,
                       pose=None) -> Path:
    """
    Write one feature file and its sidecar atomically; return the feature file path.

    :param path: destination ``*.safetensors`` path (its directory is created).
    :param features: [N, D] float32 or float16 (float64 is stored as float32).
    :param actions: [N, 3] (steer, throttle, brake).
    :param stamps: [N] stamps in nanoseconds.
    :param speed: [N] speed in m/s.
    :param episode: [N] episode index.
    :param spec: the feature specification.
    :param meta: extraction metadata, JSON-serialisable (source bag, skipped frames...).
    :param command: [N] route command per frame (RoadOption values; None: follow the lane).
    :param target: [N, 2] next target point (forward, left) in m (None: unknown, NaN).
    :param pose: [N, 3] map pose x, y, yaw from odometry (None: unknown, NaN).
    """
    path = Path(path)
    if path.suffix != SUFFIX:
        raise FeatureStoreError('feature file must end in %s: %s' % (SUFFIX, path))
    features = _as_array('features', features, None, 2)
    if features.dtype not in _FEATURE_DTYPES:
        features = features.astype(np.float32)
    tensors = {
        'features': features,
        'actions': _as_array('actions', actions, np.float32, 2),
        'stamps': _as_array('stamps', stamps, np.int64, 1),
        'speed': _as_array('speed', speed, np.float32, 1),
        'episode': _as_array('episode', episode, np.int64, 1),
    }
    count = features.shape[0]
    routes = {'command': (command, np.full(count, int(NO_PLAN_COMMAND)), np.int64, 1),
              'target': (target, np.full((count, 2), np.nan), np.float32, 2),
              'pose': (pose, np.full((count, 3), np.nan), np.float32, 2)}
    for name, (value, default, dtype, ndim) in routes.items():
        tensors[name] = _as_array(name, default if value is None else value, dtype, ndim)
    for name, width in (('target', 2), ('pose', 3)):
        if tensors[name].shape[1:] != (width,):
            raise FeatureStoreError('%s must be [N, %d], got %s'
                                    % (name, width, tensors[name].shape))
    _check_commands(tensors['command'], 'command')
    if count == 0:
        raise FeatureStoreError('refusing to write an empty feature file: %s' % path)
    if tensors['actions'].shape[1] != 3:
        raise FeatureStoreError('actions must be [N, 3], got %s' % (tensors['actions'].shape,))
    lengths = {name: array.shape[0] for name, array in tensors.items()}
    if len(set(lengths.values())) != 1:
        raise FeatureStoreError('tensor lengths differ: %s' % lengths)
    check_values(tensors, 'refusing to write %s' % path)
    if features.shape[1] != spec.feature_dim:
        raise FeatureStoreError('features have D=%d but the spec says feature_dim=%d'
                                % (features.shape[1], spec.feature_dim))
    document = {
        'format_version': FORMAT_VERSION,
        'num_frames': int(count),
        'feature_dim': int(features.shape[1]),
        'feature_dtype': str(features.dtype),
        'spec': spec.to_dict(),
        'meta': dict(meta or {}),
    }
    text = json.dumps(document, indent=2, sort_keys=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    sidecar = sidecar_path(path)
    tmp_tensors = path.with_name('.%s.tmp-%d' % (path.name, os.getpid()))
    tmp_sidecar = sidecar.with_name('.%s.tmp-%d' % (sidecar.name, os.getpid()))
    try:
        save_file(tensors, str(tmp_tensors), metadata={_META_KEY: text})
        tmp_sidecar.write_text(text + '\n')
        # A stale sidecar must not pair with the new tensors while they move into place.
        sidecar.unlink(missing_ok=True)
        os.replace(tmp_tensors, path)
        os.replace(tmp_sidecar, sidecar)
    finally:
        tmp_tensors.unlink(missing_ok=True)
        tmp_sidecar.unlink(missing_ok=True)
    return path


def read_feature_metadata(path) -> dict:
    """
    Return the sidecar JSON document of a finished feature file (no tensors are read).

    :param path: the safetensors feature file.
    """
    path = Path(path)
    sidecar = sidecar_path(path)
    if not path.is_file():
        raise FeatureStoreError('feature file not found: %s' % path)
    if not sidecar.is_file():
        raise FeatureStoreError('feature file %s has no metadata %s (unfinished write?)'
                                % (path, sidecar.name))
    try:
        document = json.loads(sidecar.read_text())
    except (OSError, ValueError) as error:
        raise FeatureStoreError('corrupt feature metadata %s: %s' % (sidecar, error)) from None
    if not isinstance(document, dict) or document.get('format_version') != FORMAT_VERSION:
        raise FeatureStoreError('%s: unsupported feature metadata (format_version %r)'
                                % (sidecar, document.get('format_version')
                                   if isinstance(document, dict) else None))
    return document


def load_feature_file(path) -> FeatureFile:
    """
    Load and check one feature file.

    :param path: the safetensors feature file.
    :raises FeatureStoreError: missing, empty, corrupt or inconsistent file.
    """
    path = Path(path)
    document = read_feature_metadata(path)
    if path.stat().st_size == 0:
        raise FeatureStoreError('feature file is empty (0 bytes): %s' % path)
    try:
        with safe_open(str(path), framework='numpy') as handle:
            embedded = (handle.metadata() or {}).get(_META_KEY)
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except Exception as error:  # safetensors raises several unrelated types
        raise FeatureStoreError('corrupt feature file %s: %s' % (path, error)) from None
    try:
        same = embedded is not None and json.loads(embedded) == document
    except ValueError:
        raise FeatureStoreError('%s: its embedded metadata is not JSON' % path) from None
    if not same:
        raise FeatureStoreError('metadata %s does not belong to %s (interrupted overwrite?)'
                                % (sidecar_path(path).name, path))
    missing = sorted({'features', 'actions', 'stamps', 'speed', 'episode'} - set(tensors))
    if missing:
        raise FeatureStoreError('%s lacks tensors: %s' % (path, ', '.join(missing)))
    for name, (dtypes, ndim) in _LAYOUT.items():
        array = tensors.get(name)
        if array is not None and (array.dtype not in dtypes or array.ndim != ndim):
            raise FeatureStoreError('%s: tensor %s is %s of shape %s, expected %s of rank %d' % (
                path, name, array.dtype, array.shape,
                ' or '.join(np.dtype(d).name for d in dtypes), ndim))
    lengths = {name: int(tensors[name].shape[0]) for name in sorted(tensors)}
    if len(set(lengths.values())) != 1:
        raise FeatureStoreError('%s: tensor lengths differ: %s' % (path, lengths))
    if lengths['features'] == 0:
        raise FeatureStoreError('feature file has no frames: %s' % path)
    if tensors['features'].ndim != 2 or tensors['actions'].shape[1:] != (3,):
        raise FeatureStoreError('%s: bad shapes features %s actions %s' % (
            path, tensors['features'].shape, tensors['actions'].shape))
    try:
        spec = FeatureSpec.from_dict(document['spec'])
    except (KeyError, TypeError, ValueError) as error:
        raise FeatureStoreError('%s: bad feature spec: %s' % (path, error)) from None
    if spec.feature_dim != tensors['features'].shape[1]:
        raise FeatureStoreError('%s: features have D=%d, spec says %d' % (
            path, tensors['features'].shape[1], spec.feature_dim))
    for name, width in (('target', 2), ('pose', 3)):
        if name in tensors and tensors[name].shape[1:] != (width,):
            raise FeatureStoreError('%s: %s must be [N, %d], got %s'
                                    % (path, name, width, tensors[name].shape))
    if 'command' in tensors:
        _check_commands(tensors['command'], '%s: command' % path)
    check_values(tensors, path)
    return FeatureFile(path=path, features=tensors['features'], actions=tensors['actions'],
                       stamps=tensors['stamps'], speed=tensors['speed'],
                       episode=tensors['episode'], spec=spec,
                       meta=document.get('meta', {}), command=tensors.get('command'),
                       target=tensors.get('target'), pose=tensors.get('pose'))
