"""
Closed-loop metrics of evaluation episodes (architecture: Evaluation and scoring); no ROS.

One :class:`EpisodeResult` per driver x route x repetition holds the simulator's
:class:`~llava_drive.sim.scoring.EpisodeSummary` and the driven trajectory. :func:`aggregate`
turns a driver's episodes into the reported numbers: per route the mean and spread over
repetitions, and the global driving score as the mean of the per-route driving scores (never
mean RC x mean P), with its spread over repetitions.
"""
from dataclasses import dataclass, field
import math
from typing import Dict, List, Optional, Sequence

from llava_drive.sim.road import Route
from llava_drive.sim.scoring import EpisodeSummary, Event
import numpy as np

# Status fields kept per frame (sim_bridge's /llava_drive/sim/status JSON).
TRAJECTORY_FIELDS = ('time', 'x', 'y', 'yaw', 'speed', 'steer', 'throttle', 'brake')


def summary_from_dict(data: dict) -> EpisodeSummary:
    """
    Rebuild an :class:`EpisodeSummary` from ``EpisodeSummary.to_dict()`` JSON.

    :param data: the dictionary (extra keys such as ``x`` or ``stamp_ns`` are ignored)
    """
    events = [Event(**event) for event in data.get('events', [])]
    return EpisodeSummary.from_events(
        int(data['route_seed']), float(data['route_length']), float(data['route_completion']),
        float(data['time']), events, bool(data['done']), data.get('done_reason'))


def with_time_limit(summary: EpisodeSummary, x: float = 0.0, y: float = 0.0,
                    s: float = 0.0) -> EpisodeSummary:
    """
    Return ``summary`` ended by a timeout event (the evaluator's own route time limit).

    :param summary: the episode so far
    :param x: vehicle x when the limit hit (m)
    :param y: vehicle y (m)
    :param s: route arc length (m)
    """
    events = list(summary.events) + [Event('timeout', summary.time, x, y, s,
                                           'evaluation max_route_time')]
    return EpisodeSummary.from_events(summary.route_seed, summary.route_length,
                                      summary.route_completion, summary.time, events, True,
                                      'timeout')


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
    :param wall_seconds: wall-clock duration of the episode, start-up included
    :param ended_by: ``simulator`` (its own end marker) or ``time_limit`` (the evaluator's)
    """

    driver: str
    route_seed: int
    repetition: int
    summary: EpisodeSummary
    trajectory: Trajectory
    lateral_rmse: float = math.nan
    steering_smoothness: float = math.nan
    control_timeouts: int = 0
    wall_seconds: float = 0.0
    ended_by: str = 'simulator'

    @classmethod
    def build(cls, driver: str, route_seed: int, repetition: int, summary: EpisodeSummary,
              trajectory: Trajectory, route: Route, **extra) -> 'EpisodeResult':
        """
        Compute the trajectory metrics against ``route`` and return the result.

        :param driver: who drove
        :param route_seed: route seed
        :param repetition: repetition index
        :param summary: final summary
        :param trajectory: driven path
        :param route: the route geometry (for the lateral error)
        :param extra: ``control_timeouts``, ``wall_seconds``, ``ended_by``
        """
        errors = lateral_errors(route, trajectory.x, trajectory.y)
        return cls(driver, route_seed, repetition, summary, trajectory, rmse(errors),
                   steering_smoothness(trajectory.time, trajectory.steer), **extra)

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
                'wall_seconds': round(self.wall_seconds, 2), 'ended_by': self.ended_by,
                'frames': len(self.trajectory)}
        if with_trajectory:
            data['trajectory'] = self.trajectory.to_dict()
        return data


def _mean_std(values: Sequence[float]) -> Dict[str, float]:
    values = np.asarray([v for v in values if not math.isnan(v)], dtype=float)
    if not values.size:
        return {'mean': math.nan, 'std': math.nan}
    return {'mean': float(values.mean()), 'std': float(values.std())}


def aggregate(results: Sequence[EpisodeResult]) -> dict:
    """
    Return one driver's scores: per route and overall, means and spreads over repetitions.

    Overall ``driving_score`` is the mean over routes of the per-route driving score; its
    ``driving_score_std`` is the spread of that global score across repetitions (each
    repetition's global score is the mean of its routes' scores). ``route_completion`` and
    ``driving_score`` are on 0..100, ``infraction_penalty`` on 0..1.

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
        'lateral_error_rmse': _mean_std([e.lateral_rmse for e in results])['mean'],
        'steering_smoothness': _mean_std([e.steering_smoothness for e in results])['mean'],
        'control_timeouts': int(sum(r.control_timeouts for r in results)),
        'events': events, 'routes': routes, 'repetitions': len(repetitions),
        'episodes': len(results), 'per_route': per_route,
    }
