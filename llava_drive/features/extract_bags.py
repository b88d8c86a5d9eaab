"""
Extract LLaVA features from bags into the feature store (the work behind ``llava-drive extract``).

One feature file per bag, written atomically when the whole bag is done. Rules:

- Resumable: a bag whose finished feature file has the same feature spec and the same bag
  fingerprint (``metadata.yaml`` and ``exclusions.yaml``) is skipped; temporary files of an
  interrupted run never count. ``overwrite`` re-extracts anyway.
- Sharding: with ``shard=(i, n)`` this process takes the bags whose index in the sorted,
  de-duplicated bag list is ``i`` modulo ``n``, so ``n`` processes (one per GPU) split the
  work without talking to each other.
- Route inputs: each frame gets its pose from the bag's odometry and, from the global plan
  (the one given, else the plan the bag's episode start marker carries), the route command
  in effect and the next target point from
  :func:`llava_drive.planning.route_command` (progress carried frame to frame, restarted at
  each episode, as the live policy does). Without a plan or a pose the command is
  LANEFOLLOW and the target unknown (NaN), counted in the metadata. Per-frame prompt
  templates are filled from these inputs; all of them are stored beside the features.
- Broken bags: a bag that cannot be read (missing, no metadata, corrupt MCAP, damaged
  ``exclusions.yaml``) or yields no usable frame is logged and skipped; the other bags are
  still extracted and the command exits 1 at the end, naming the failed bags. Frames that do
  not decode are skipped and counted in the feature file's metadata.
- Bad numbers never become labels: a pair whose control is not finite or outside the CARLA
  ranges (steer [-1, 1], throttle and brake [0, 1]), whose speed is missing, not finite or
  implausible, or whose features come out non-finite is dropped, counted by reason in the
  metadata (``frames_dropped``) and logged once per reason and bag. Odometry poses that are
  not finite are left out by the reader (the frame's pose is unknown, NaN).
"""
from collections import Counter
from dataclasses import dataclass, field
import hashlib
import json
import logging
import math
from pathlib import Path
import time
from typing import Optional

from llava_drive.bag import format as bagfmt
from llava_drive.bag.reader import (BagReadError, count_pairs, read_json_topic, read_odometry,
                                    read_pairs, ReadStats)
from llava_drive.bag.trim import exclusions_path
from llava_drive.features.route_prompt import MAX_SPEED_MPS, RouteTracker
from llava_drive.features.spec import FeatureSpec
from llava_drive.features.store import (
    feature_file_for_bag, FeatureStoreError, read_feature_metadata, write_feature_file)
from llava_drive.planning import GlobalPlan
import numpy as np

LOG = logging.getLogger(__name__)


def parse_shard(text: str):
    """
    Parse ``'i/n'`` into ``(i, n)`` with ``0 <= i < n``.

    :param text: e.g. ``'2/4'``.
    """
    try:
        index, count = (int(part) for part in text.split('/'))
    except ValueError:
        raise ValueError('shard must look like i/n (e.g. 0/4), got %r' % text) from None
    if count < 1 or not 0 <= index < count:
        raise ValueError('shard %r: need 0 <= i < n' % text)
    return index, count


def select_shard(bags, index: int, count: int) -> list:
    """
    Return this shard's bags: sorted unique paths whose position is ``index`` modulo ``count``.

    :param bags: bag paths.
    :param index: shard index i.
    :param count: number of shards n.
    """
    unique = sorted({str(Path(bag)) for bag in bags})
    return [Path(bag) for position, bag in enumerate(unique) if position % count == index]


def bag_fingerprint(bag_path) -> str:
    """
    Return a hash of a bag's ``metadata.yaml`` and ``exclusions.yaml`` (absent files count).

    A re-recorded, recovered or re-trimmed bag gets a new fingerprint, so its features are
    extracted again.

    :param bag_path: bag directory.
    """
    digest = hashlib.sha256()
    for path in (Path(bag_path) / bagfmt.METADATA_FILE, exclusions_path(bag_path)):
        digest.update(path.name.encode() + b'\0')
        digest.update(path.read_bytes() if path.is_file() else b'<absent>')
        digest.update(b'\0')
    return digest.hexdigest()


def bag_plans(bag_path) -> dict:
    """
    Return ``{episode: GlobalPlan}`` from the bag's episode start markers that carry a plan.

    A marker whose plan does not validate is logged and left out (its frames get no route).

    :param bag_path: bag directory.
    """
    plans = {}
    for _, info in read_json_topic(bag_path, bagfmt.EPISODE_TOPIC):
        if info.get('event') != 'start' or 'global_plan' not in info:
            continue
        try:
            plans[info.get('episode')] = GlobalPlan.from_dict(info['global_plan'])
        except (TypeError, ValueError) as error:
            LOG.warning('%s: episode %r has an unusable global plan (%s); its frames get no '
                        'route', bag_path, info.get('episode'), error)
    return plans


def plan_fingerprint(plan: Optional[GlobalPlan]) -> Optional[str]:
    """
    Return a hash of the sparse plan the route inputs come from (None without a plan).

    :param plan: the global plan.
    """
    if plan is None:
        return None
    text = json.dumps(plan.to_dict(with_dense=False), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def is_up_to_date(feature_path, spec: FeatureSpec, fingerprint: str,
                  plan: Optional[GlobalPlan] = None) -> bool:
    """
    Return True when a finished feature file matches the spec, the bag and the plan.

    :param feature_path: the feature file.
    :param spec: the extractor's spec.
    :param fingerprint: :func:`bag_fingerprint` of the bag.
    :param plan: the plan the route inputs come from.
    """
    try:
        document = read_feature_metadata(feature_path)
        stored = FeatureSpec.from_dict(document['spec'])
    except (FeatureStoreError, KeyError, TypeError, ValueError):
        return False
    meta = document.get('meta', {})
    same_bag = meta.get('bag_fingerprint') == fingerprint
    same_plan = meta.get('plan_fingerprint') == plan_fingerprint(plan)
    return same_bag and same_plan and not stored.differences(spec)


def pair_problem(pair) -> Optional[str]:
    """
    Return why a pair cannot be a training sample (``'nan_control'``...), or None.

    :param pair: a :class:`~llava_drive.bag.reader.Pair`.
    """
    problem = pair.control.problem()
    if problem:
        return problem
    if math.isnan(pair.speed):
        return 'no_speed'
    if not abs(pair.speed) <= MAX_SPEED_MPS:
        return 'speed_out_of_range'
    return None


class DropCounter:
    """Count dropped frames by reason; log the first of each reason once."""

    def __init__(self, bag):
        self.bag = bag
        self.counts = Counter()

    def drop(self, reason: str, stamp_ns: int) -> None:
        """Count one dropped frame."""
        if not self.counts[reason]:
            LOG.warning('%s: dropping frames: %s (first at stamp %d ns; further ones are '
                        'counted, not logged)', self.bag, reason, stamp_ns)
        self.counts[reason] += 1


@dataclass
class BagResult:
    """
    What happened to one bag.

    :param bag: the bag path.
    :param status: ``'written'``, ``'skipped'`` (up to date) or ``'failed'``.
    :param output: the feature file path.
    :param frames: frames written.
    :param seconds: wall time spent on the bag.
    :param error: the reason for ``'failed'``.
    :param stats: the reader's counts (pairs, excluded, undecodable...).
    :param dropped: frames dropped for bad numbers, by reason.
    """

    bag: Path
    status: str
    output: Path
    frames: int = 0
    seconds: float = 0.0
    error: str = ''
    stats: dict = field(default_factory=dict)
    dropped: dict = field(default_factory=dict)


def _batches(pairs, batch_size: int):
    """Group pairs into lists of at most ``batch_size`` frames of one image size."""
    batch = []
    for pair in pairs:
        if batch and (len(batch) == batch_size
                      or pair.image_rgb.shape != batch[0].image_rgb.shape):
            yield batch
            batch = []
        batch.append(pair)
    if batch:
        yield batch


def extract_bag(extractor, bag_path, out_path, batch_size: int = 8,
                progress: bool = True, plan: Optional[GlobalPlan] = None) -> BagResult:
    """
    Extract one bag into one feature file; raise :class:`BagReadError` for unreadable bags.

    :param extractor: a :class:`~llava_drive.features.extractor.LlavaFeatureExtractor`.
    :param bag_path: bag directory.
    :param out_path: destination feature file.
    :param batch_size: frames per forward pass.
    :param progress: show a tqdm bar (frames/s).
    :param plan: the global plan of the bag's route (None: the plans in the bag's episode
        markers; frames without one follow the lane).
    """
    from tqdm import tqdm

    start = time.monotonic()
    bag_path = Path(bag_path)
    fingerprint = bag_fingerprint(bag_path)
    total = count_pairs(bag_path, honour_exclusions=True)
    odometry = read_odometry(bag_path)
    recorded = {} if plan is not None else bag_plans(bag_path)
    tracker = RouteTracker(plan)
    current_episode = object()  # no frame yet
    stats = ReadStats()
    dropped = DropCounter(bag_path)
    features, actions, stamps, speed, episode = [], [], [], [], []
    commands, targets, poses = [], [], []

    def usable(pairs):
        for pair in pairs:
            bar.update(1)
            problem = pair_problem(pair)
            if problem:
                dropped.drop(problem, pair.stamp_ns)
            else:
                yield pair

    with tqdm(total=total, unit='frame', desc=bag_path.name, disable=not progress,
              dynamic_ncols=True) as bar:
        for batch in _batches(usable(read_pairs(bag_path, honour_exclusions=True, stats=stats)),
                              batch_size):
            routes = []
            for pair in batch:
                if plan is None and pair.episode != current_episode:
                    tracker.set_plan(recorded.get(pair.episode))
                current_episode = pair.episode
                routes.append(tracker.route(odometry.get(pair.stamp_ns), pair.speed,
                                            pair.episode))
            values = extractor.extract([p.image_rgb for p in batch],
                                       [route for route, _ in routes]).cpu().numpy()
            for pair, (route, pose), row in zip(batch, routes, values):
                if not np.isfinite(row).all():  # e.g. a float16 overflow in the model
                    dropped.drop('features_not_finite', pair.stamp_ns)
                    continue
                features.append(row)
                poses.append(pose)
                commands.append(int(route.command))
                targets.append((route.target_forward, route.target_left))
                actions.append(pair.control.as_array())
                stamps.append(pair.stamp_ns)
                speed.append(pair.speed)
                episode.append(pair.episode)
    if not stamps:
        raise BagReadError('bag %s has no usable frames (%s, dropped %s)'
                           % (bag_path, stats.as_dict(), dict(dropped.counts) or 'none'))
    seconds = time.monotonic() - start
    meta = {'source_bag': str(bag_path.resolve()), 'bag_fingerprint': fingerprint,
            'frames': len(stamps), 'frames_skipped_undecodable': stats.skipped,
            'frames_excluded': stats.excluded, 'read_stats': stats.as_dict(),
            'frames_dropped': dict(dropped.counts),
            'extraction_seconds': round(seconds, 3),
            'batch_size': batch_size, 'device': str(extractor.device),
            'route_source': 'plan' if plan is not None else 'bag' if recorded else 'none',
            'plan_fingerprint': plan_fingerprint(plan),
            'frames_without_pose': tracker.without_pose,
            'frames_without_route': tracker.without_route}
    write_feature_file(out_path, np.stack(features), np.asarray(actions, np.float32),
                       np.asarray(stamps, np.int64), np.asarray(speed, np.float32),
                       np.asarray(episode, np.int64), extractor.spec, meta,
                       command=np.asarray(commands, np.int64),
                       target=np.asarray(targets, np.float32), pose=np.stack(poses))
    return BagResult(bag=bag_path, status='written', output=Path(out_path), frames=len(stamps),
                     seconds=seconds, stats=stats.as_dict(), dropped=dict(dropped.counts))


def extract_bags(extractor, bags, out_dir, batch_size: Optional[int] = None, shard=(0, 1),
                 overwrite: bool = False, progress: bool = True,
                 plan: Optional[GlobalPlan] = None) -> list:
    """
    Extract this shard's bags; return one :class:`BagResult` per bag, failures included.

    :param extractor: a loaded extractor (its spec names the features).
    :param bags: bag directories.
    :param out_dir: feature directory.
    :param batch_size: frames per forward pass (None: the extractor's ``batch_size``).
    :param shard: ``(i, n)``, see :func:`select_shard`.
    :param overwrite: re-extract bags whose feature file is up to date.
    :param progress: show progress bars.
    :param plan: the global plan of every bag's route (None: no route).
    """
    batch_size = extractor.batch_size if batch_size is None else batch_size
    if batch_size < 1:
        raise ValueError('batch_size must be >= 1, got %r' % batch_size)
    selected = select_shard(bags, *shard)
    outputs = {}
    for bag in selected:
        output = feature_file_for_bag(out_dir, bag)
        if output in outputs:
            raise ValueError('bags %s and %s would both write %s; rename one'
                             % (outputs[output], bag, output))
        outputs[output] = bag
    results = []
    for output, bag in outputs.items():
        results.append(_extract_one(extractor, bag, output, batch_size, overwrite, progress,
                                    plan))
    return results


def _extract_one(extractor, bag, output, batch_size, overwrite, progress, plan) -> BagResult:
    """Extract or skip one bag, turning an unreadable bag into a failed result."""
    try:
        fingerprint: Optional[str] = bag_fingerprint(bag)
    except OSError:
        fingerprint = None  # unreadable: extract_bag reports why
    up_to_date = fingerprint and is_up_to_date(output, extractor.spec, fingerprint, plan)
    if not overwrite and up_to_date:
        LOG.info('%s: up to date in %s, skipped', bag, output)
        return BagResult(bag=Path(bag), status='skipped', output=output)
    try:
        result = extract_bag(extractor, bag, output, batch_size, progress, plan)
    except (BagReadError, FeatureStoreError, OSError) as error:
        LOG.error('%s: skipped, cannot extract: %s', bag, error)
        return BagResult(bag=Path(bag), status='failed', output=output, error=str(error))
    LOG.info('%s: %d frames -> %s (%.1f frames/s)', bag, result.frames, output,
             result.frames / max(result.seconds, 1e-9))
    return result
