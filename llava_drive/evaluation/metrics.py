"""
Closed-loop metrics of evaluation episodes (architecture: Evaluation and scoring); no ROS.

One :class:`EpisodeResult` per driver x route x repetition holds the simulator's
:class:`~llava_drive.sim.scoring.EpisodeSummary` and the driven trajectory. :func:`aggregate`
turns a driver's episodes into the reported numbers: per route the mean and spread over
repetitions, and the global driving score as the mean of the per-route driving scores (never
mean RC x mean P), with its spread over repetitions.
"""
from collections import Counter
from dataclasses import dataclass, field
import math
from typing import Dict, List, Optional, Sequence, Tuple

from llava_drive.planning import GlobalPlan
from llava_drive.sim.road import Route
from llava_drive.sim.scoring import EpisodeSummary, Event, LEADERBOARD_VERSION
import numpy as np

# Status fields kept per frame (sim_bridge's /llava_drive/sim/status JSON).
TRAJECTORY_FIELDS = ('time', 'x', 'y', 'yaw', 'speed', 'steer', 'throttle', 'brake')
# A junction is entered / left through its exit within this distance of the route's lane
# centre: under the 3.5 m to the centre of the lane beside it, so a wrong exit never counts.
JUNCTION_REACH_M = 2.5
# Farther than this from the junction's connector lane, the car has left it another way.
JUNCTION_LEAVE_M = 6.0


def summary_from_dict(data: dict) -> EpisodeSummary:
    """
    Rebuild an :class:`EpisodeSummary` from ``EpisodeSummary.to_dict()`` JSON.

    Summaries written before the outside-lane fields existed read as never outside.

    :param data: the dictionary (extra keys such as ``x`` or ``stamp_ns`` are ignored)
    """
    events = [Event(**event) for event in data.get('events', [])]
    completed = data.get('completed_m')
    return EpisodeSummary.from_events(
        int(data['route_seed']), float(data['route_length']), float(data['route_completion']),
        float(data['time']), events, bool(data['done']), data.get('done_reason'),
        float(data.get('outside_lane_m', 0.0)), None if completed is None else float(completed))


def with_time_limit(summary: EpisodeSummary, x: float = 0.0, y: float = 0.0,
                    s: float = 0.0) -> EpisodeSummary:
    """
    Return ``summary`` ended by a route timeout (the evaluator's own limit): no penalty.

    :param summary: the episode so far
    :param x: vehicle x when the limit hit (m)
    :param y: vehicle y (m)
    :param s: route arc length (m)
    """
    events = list(summary.events) + [Event('timeout', summary.time, x, y, s,
                                           'evaluation max_route_time')]
    return EpisodeSummary.from_events(summary.route_seed, summary.route_length,
                                      summary.route_completion, summary.time, events, True,
                                      'timeout', summary.outside_lane_m, summary.completed_m)


def junction_outcomes(plan: GlobalPlan, xs: Sequence[float],
                      ys: Sequence[float]) -> Tuple[int, int]:
    """
    Return ``(followed, missed)``: junctions crossed as the route commanded, and not.

    A junction of the plan (a run of LEFT/RIGHT/STRAIGHT points, dense where known) counts once
    the car came within :data:`JUNCTION_REACH_M` of its entry: followed when it then reached the
    exit within that distance, missed when it first went farther than :data:`JUNCTION_LEAVE_M`
    from the connector (another exit). A car still inside when the episode ended is neither.

    :param plan: the route's global plan
    :param xs: driven x per frame
    :param ys: driven y per frame
    """
    path = np.column_stack([np.asarray(xs, float), np.asarray(ys, float)])
    if not len(path):
        return 0, 0
    poses = plan.dense_poses if plan.has_dense else plan.poses
    followed = missed = 0
    start = 0
    for entry, exit_, _ in plan.junctions():
        near_entry = np.flatnonzero(
            np.hypot(*(path[start:] - poses[entry, :2]).T) <= JUNCTION_REACH_M)
        if not near_entry.size:
            break  # junctions come in route order: later ones were not reached either
        after = path[start + near_entry[0]:]
        at_exit = np.hypot(*(after - poses[exit_, :2]).T) <= JUNCTION_REACH_M
        connector = poses[entry:exit_ + 1, :2]
        gaps = np.min(np.hypot(after[:, None, 0] - connector[None, :, 0],
                               after[:, None, 1] - connector[None, :, 1]), axis=1)
        left = gaps > JUNCTION_LEAVE_M
        first_exit = np.argmax(at_exit) if at_exit.any() else len(after)
        first_leave = np.argmax(left) if left.any() else len(after)
        if first_exit < first_leave:
            followed += 1
            start += near_entry[0] + first_exit
        elif first_leave < len(after):
            missed += 1
            break  # off the route's way: the route ends by deviation soon after
        else:
            break
    return followed, missed


def lateral_errors(route: Route, xs: Sequence[float], ys: Sequence[float],
                   lane_offset: Optional[float] = None) -> np.ndarray:
    """
    Return the signed distance (m, positive left) of each point from the driven lane centre.

    :param route: the route driven
    :param xs: vehicle x per frame (footprint centre, map frame)
    :param ys: vehicle y per frame
    :param lane_offset: lateral offset of the driven lane centre; default the right lane
    """
    offset = route.right_lane_offset if lane_offset is None else lane_offset
    errors, hint = [], None
    for x, y in zip(xs, ys):
        projection = route.project(float(x), float(y), hint)
        hint = projection.index
        errors.append(projection.lateral - offset)
    return np.asarray(errors, dtype=float)


def rmse(values: Sequence[float]) -> float:
    """
    Return the root mean square of ``values`` (NaN when empty).

    :param values: e.g. lateral errors in metres
    """
    values = np.asarray(values, dtype=float)
    return float(np.sqrt(np.mean(values ** 2))) if values.size else math.nan


def steering_smoothness(times: Sequence[float], steer: Sequence[float]) -> float:
    """
    Return the mean absolute steering rate ``|d steer / dt|`` (steer units per second).

    Lower is smoother. Pairs with a non-positive time step (repeated frames) are skipped.

    :param times: simulated time per frame (s)
    :param steer: steering command per frame, in [-1, 1]
    """
    times = np.asarray(times, dtype=float)
    steer = np.asarray(steer, dtype=float)
    if times.shape != steer.shape:
        raise ValueError(f'times and steer differ in length: {times.shape} vs {steer.shape}')
    dt = np.diff(times)
    keep = dt > 0
    if not keep.any():
        return math.nan
    return float(np.mean(np.abs(np.diff(steer)[keep] / dt[keep])))


@dataclass
class Trajectory:
    """
    The driven path of one episode, one row per simulator frame.

    :param time: simulated time (s)
    :param x: footprint centre x (m)
    :param y: footprint centre y (m)
    :param yaw: heading (rad)
    :param speed: speed (m/s)
    :param steer: steering command in effect
    :param throttle: throttle in effect
    :param brake: brake in effect
    """

    time: List[float] = field(default_factory=list)
    x: List[float] = field(default_factory=list)
    y: List[float] = field(default_factory=list)
    yaw: List[float] = field(default_factory=list)
    speed: List[float] = field(default_factory=list)
    steer: List[float] = field(default_factory=list)
    throttle: List[float] = field(default_factory=list)
    brake: List[float] = field(default_factory=list)

    def append_status(self, status: dict) -> None:
        """
        Add one ``/llava_drive/sim/status`` frame (its ``control`` is steer, throttle, brake).

        :param status: the decoded JSON
        """
        steer, throttle, brake = status.get('control', (math.nan,) * 3)
        for name, value in zip(TRAJECTORY_FIELDS, (
                status['time'], status['x'], status['y'], status['yaw'], status['speed'],
                steer, throttle, brake)):
            getattr(self, name).append(float(value))

    def __len__(self) -> int:
        """Return the number of frames."""
        return len(self.time)

    def to_dict(self) -> dict:
        """Return the columns as plain lists."""
        return {name: list(getattr(self, name)) for name in TRAJECTORY_FIELDS}

    @classmethod
    def from_dict(cls, data: dict) -> 'Trajectory':
        """
        Rebuild a trajectory from :meth:`to_dict` output.

        :param data: column name -> values
        """
        return cls(**{name: [float(v) for v in data.get(name, [])]
                      for name in TRAJECTORY_FIELDS})


@dataclass
class EpisodeResult:
    """
    One closed-loop episode: who drove which route, the simulator's score and the path.

    :param driver: ``policy``, ``expert`` or a baseline name
    :param route_seed: route seed
    :param repetition: repetition index (0-based)
    :param summary: the simulator's final episode summary
    :param trajectory: the driven path
    :param lateral_rmse: RMS distance from the lane centre (m)
    :param steering_smoothness: mean ``|d steer / dt|`` (1/s)
    :param control_timeouts: frames the simulator stepped without a fresh control
    :param rejected_images: malformed camera images the evaluator skipped, by reason
    :param wall_seconds: wall-clock duration of the episode, start-up included
    :param ended_by: ``simulator`` (its own end marker) or ``time_limit`` (the evaluator's)
    :param scenarios: the scenario types the route names (town routes), for per-type success
    :param junctions_followed: junctions crossed as the route commanded
    :param junctions_missed: junctions left by another exit
    """

    driver: str
    route_seed: int
    repetition: int
    summary: EpisodeSummary
    trajectory: Trajectory
    lateral_rmse: float = math.nan
    steering_smoothness: float = math.nan
    control_timeouts: int = 0
    rejected_images: Dict[str, int] = field(default_factory=dict)
    wall_seconds: float = 0.0
    ended_by: str = 'simulator'
    scenarios: Tuple[str, ...] = ()
    junctions_followed: int = 0
    junctions_missed: int = 0

    @classmethod
    def build(cls, driver: str, route_seed: int, repetition: int, summary: EpisodeSummary,
              trajectory: Trajectory, route: Optional[Route] = None,
              plan: Optional[GlobalPlan] = None, **extra) -> 'EpisodeResult':
        """
        Compute the trajectory metrics against the route and return the result.

        :param driver: who drove
        :param route_seed: route seed
        :param repetition: repetition index
        :param summary: final summary
        :param trajectory: driven path
        :param route: the single-road route geometry (for the lateral error), if any
        :param plan: the route's global plan (for junction success), if any
        :param extra: ``control_timeouts``, ``rejected_images``, ``wall_seconds``,
            ``ended_by``, ``scenarios``
        """
        lateral = math.nan
        if route is not None:
            lateral = rmse(lateral_errors(route, trajectory.x, trajectory.y))
        followed, missed = (junction_outcomes(plan, trajectory.x, trajectory.y)
                            if plan is not None else (0, 0))
        extra['scenarios'] = tuple(str(name) for name in extra.get('scenarios', ()))
        return cls(driver, route_seed, repetition, summary, trajectory, lateral,
                   steering_smoothness(trajectory.time, trajectory.steer),
                   junctions_followed=followed, junctions_missed=missed, **extra)

    def to_dict(self, with_trajectory: bool = False) -> dict:
        """
        Return JSON-serialisable data.

        :param with_trajectory: include the per-frame path
        """
        data = {'driver': self.driver, 'route_seed': self.route_seed,
                'repetition': self.repetition, 'summary': self.summary.to_dict(),
                'lateral_rmse': self.lateral_rmse,
                'steering_smoothness': self.steering_smoothness,
                'control_timeouts': self.control_timeouts,
                'rejected_images': dict(self.rejected_images),
                'wall_seconds': round(self.wall_seconds, 2), 'ended_by': self.ended_by,
                'frames': len(self.trajectory), 'scenarios': list(self.scenarios),
                'success': self.summary.success,
                'junctions_followed': self.junctions_followed,
                'junctions_missed': self.junctions_missed}
        if with_trajectory:
            data['trajectory'] = self.trajectory.to_dict()
        return data


def _mean_std(values: Sequence[float]) -> Dict[str, float]:
    values = np.asarray([v for v in values if not math.isnan(v)], dtype=float)
    if not values.size:
        return {'mean': math.nan, 'std': math.nan}
    return {'mean': float(values.mean()), 'std': float(values.std())}


def _percent(hits: int, total: int) -> Optional[float]:
    return 100.0 * hits / total if total else None


def junction_success(results: Sequence[EpisodeResult]) -> Optional[float]:
    """
    Return the percentage of junctions crossed as commanded, 0..100 (None: no junction).

    :param results: episodes (any drivers)
    """
    followed = sum(r.junctions_followed for r in results)
    return _percent(followed, followed + sum(r.junctions_missed for r in results))


def scenario_success(results: Sequence[EpisodeResult]) -> Dict[str, dict]:
    """
    Return per scenario type the episodes and Bench2Drive success rate (0..100).

    :param results: episodes of one driver; a route naming several types counts for each
    """
    table: Dict[str, dict] = {}
    for name in sorted({name for r in results for name in r.scenarios}):
        episodes = [r for r in results if name in r.scenarios]
        table[name] = {'episodes': len(episodes), 'success_rate': _percent(
            sum(r.summary.success for r in episodes), len(episodes))}
    return table


def aggregate(results: Sequence[EpisodeResult]) -> dict:
    """
    Return one driver's scores: per route and overall, means and spreads over repetitions.

    Overall ``driving_score`` is the mean over routes of the per-route driving score; its
    ``driving_score_std`` is the spread of that global score across repetitions (each
    repetition's global score is the mean of its routes' scores). ``route_completion``,
    ``driving_score``, ``success_rate`` (Bench2Drive: finished with no infraction but minimum
    speed, over episodes) and ``junction_success`` (None without junctions) are on 0..100,
    ``infraction_penalty`` on 0..1; ``scoring`` names the leaderboard version.

    :param results: the episodes of one driver (every route x repetition)
    """
    if not results:
        raise ValueError('aggregate needs at least one episode')
    drivers = {r.driver for r in results}
    if len(drivers) != 1:
        raise ValueError(f'aggregate takes one driver at a time, got {sorted(drivers)}')
    routes = sorted({r.route_seed for r in results})
    repetitions = sorted({r.repetition for r in results})
    per_route = {}
    for seed in routes:
        episodes = [r for r in results if r.route_seed == seed]
        counts: Dict[str, int] = {}
        for episode in episodes:
            for kind, count in episode.summary.counts.items():
                counts[kind] = counts.get(kind, 0) + count
        ds = _mean_std([e.summary.driving_score for e in episodes])
        rc = _mean_std([e.summary.route_completion for e in episodes])
        penalty = _mean_std([e.summary.infraction_penalty for e in episodes])
        per_route[str(seed)] = {
            'driving_score': ds['mean'], 'driving_score_std': ds['std'],
            'route_completion': rc['mean'], 'route_completion_std': rc['std'],
            'infraction_penalty': penalty['mean'], 'infraction_penalty_std': penalty['std'],
            'lateral_error_rmse': _mean_std([e.lateral_rmse for e in episodes])['mean'],
            'steering_smoothness': _mean_std([e.steering_smoothness for e in episodes])['mean'],
            'outside_lane_percentage': _mean_std(
                [e.summary.outside_lane_percentage for e in episodes])['mean'],
            'success_rate': _percent(sum(e.summary.success for e in episodes), len(episodes)),
            'junction_success': junction_success(episodes),
            'scenarios': sorted({name for e in episodes for name in e.scenarios}),
            'events': counts, 'repetitions': len(episodes),
            'done_reasons': sorted({str(e.summary.done_reason) for e in episodes}),
        }
    # One global score per repetition (mean over the routes it drove), then their spread.
    global_scores = []
    for repetition in repetitions:
        scores = [r.summary.driving_score for r in results if r.repetition == repetition]
        global_scores.append(sum(scores) / len(scores))
    events: Dict[str, int] = {}
    for entry in per_route.values():
        for kind, count in entry['events'].items():
            events[kind] = events.get(kind, 0) + count
    return {
        'driving_score': float(np.mean([v['driving_score'] for v in per_route.values()])),
        'driving_score_std': _mean_std(global_scores)['std'],
        'driving_score_per_repetition': global_scores,
        'route_completion': float(np.mean([v['route_completion']
                                           for v in per_route.values()])),
        'infraction_penalty': float(np.mean([v['infraction_penalty']
                                             for v in per_route.values()])),
        'success_rate': _percent(sum(r.summary.success for r in results), len(results)),
        'junction_success': junction_success(results),
        'success_per_scenario': scenario_success(results),
        'outside_lane_percentage': _mean_std(
            [e.summary.outside_lane_percentage for e in results])['mean'],
        'lateral_error_rmse': _mean_std([e.lateral_rmse for e in results])['mean'],
        'steering_smoothness': _mean_std([e.steering_smoothness for e in results])['mean'],
        'control_timeouts': int(sum(r.control_timeouts for r in results)),
        'rejected_images': dict(sum((Counter(r.rejected_images) for r in results), Counter())),
        'events': events, 'routes': routes, 'repetitions': len(repetitions),
        'episodes': len(results), 'per_route': per_route, 'scoring': LEADERBOARD_VERSION,
    }
