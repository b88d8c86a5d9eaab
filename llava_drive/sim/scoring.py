"""
Infractions, route progress and the per-route driving score, as CARLA Leaderboard 2.0 scores.

Rules from carla-simulator/leaderboard, branch leaderboard-2.0
(``leaderboard/utils/statistics_manager.py``, ``leaderboard/scenarios/route_scenario.py``)
and scenario_runner (``atomic_criteria.py``, ``timer.py``); architecture: Evaluation and
scoring. Per route ``DS = RC * P``:

* ``RC``, route completion in percent: the furthest route distance reached (only while within
  ``progress_distance_m`` of the route); 100 once above 99 % and within 10 m of the goal.
* ``P`` starts at 1 and is multiplied by :data:`PENALTIES` per event (collision with a
  pedestrian 0.50, a vehicle 0.60, static layout 0.65; red light 0.70; stop sign 0.80; scenario
  timeout 0.70; failing to yield to an emergency vehicle 0.70), by ``1 - pct / 100`` where
  ``pct`` is the route distance completed while outside the route's lanes (off the driving
  lanes, or in a lane of the wrong direction) over the completed route distance, and by
  ``1 - 0.3 * (1 - pct / 100)`` per minimum-speed checkpoint where the ego's mean speed was
  ``pct`` % of the surrounding traffic's (only where the world reports traffic speeds).
* A route ends on route deviation (> 30 m from the route), blocked (< 0.1 m/s for 180 s), route
  timeout, or at the goal; none of the first three is a penalty, they only stop RC growing.
  The route time limit grows with progress: 300 s plus, for every metre of route completed,
  1 / (10 % of the speed limit there) seconds.

The global score is the mean of the per-route ``DS`` (:func:`mean_driving_score`), never mean
RC times mean P. Bench2Drive's success (:attr:`EpisodeSummary.success`): the route finished with
no infraction other than minimum speed.
"""
from dataclasses import asdict, dataclass, field
import math
from typing import Dict, List, Optional, Sequence

from llava_drive.config_checks import number_in_range

# Reports name the rules they follow.
LEADERBOARD_VERSION = 'CARLA Leaderboard 2.0'

# Penalty factor per event kind (statistics_manager.PENALTY_VALUE_DICT).
PENALTIES: Dict[str, float] = {
    'collision_pedestrian': 0.50,
    'collision_vehicle': 0.60,
    'collision_static': 0.65,
    'red_light': 0.70,
    'stop_sign': 0.80,
    'scenario_timeout': 0.70,
    'yield_emergency_vehicle': 0.70,
}
# One event per excursion outside the route lanes, for counting and plotting; the penalty comes
# from the distance (EpisodeSummary.outside_lane_m), not from the number of excursions.
OUTSIDE_ROUTE_LANES = 'outside_route_lanes'
# One event per failed minimum-speed checkpoint; ``value`` is the ego's mean speed in percent of
# the traffic's; penalty 1 - (1 - MIN_SPEED_FACTOR) * (1 - value / 100).
MIN_SPEED = 'min_speed'
MIN_SPEED_FACTOR = 0.7
MIN_SPEED_CHECKPOINTS = 4

# Why a route ends; 'timeout' is the route timeout (no penalty, unlike 'scenario_timeout').
DONE_REASONS = ('route_finished', 'off_route', 'blocked', 'timeout')
# Events that break Bench2Drive's success (besides not finishing, and any distance outside the
# route lanes: an excursion that completed no route distance is no infraction there either).
INFRACTIONS = tuple(PENALTIES)

COLLISION_KINDS = ('collision_pedestrian', 'collision_vehicle', 'collision_static')


@dataclass(frozen=True)
class Event:
    """
    One infraction or episode event.

    :param kind: a key of :data:`PENALTIES`, ``outside_route_lanes``, ``min_speed``,
        ``lane_crossing`` (counted, no penalty), or one of :data:`DONE_REASONS`
    :param time: simulated time of the event (s)
    :param x: vehicle x when it happened (m)
    :param y: vehicle y when it happened (m)
    :param s: route arc length when it happened (m)
    :param detail: free text (e.g. what was hit)
    :param value: the measured value of percentage events (``min_speed``: percent)
    """

    kind: str
    time: float
    x: float = 0.0
    y: float = 0.0
    s: float = 0.0
    detail: str = ''
    value: float = 0.0

    @property
    def penalty(self) -> float:
        """Return this event's penalty factor (1.0 when it is not penalised by itself)."""
        if self.kind == MIN_SPEED:
            percent = min(max(self.value, 0.0), 100.0)
            return 1.0 - (1.0 - MIN_SPEED_FACTOR) * (1.0 - percent / 100.0)
        return PENALTIES.get(self.kind, 1.0)


@dataclass
class EpisodeSummary:
    """
    Result of one route so far, ready to serialise (:meth:`to_dict`).

    :param route_seed: seed of the route
    :param route_length: route length (m)
    :param route_completion: percentage of the route distance completed, 0..100
    :param infraction_penalty: ``P``, 0..1
    :param driving_score: ``route_completion * infraction_penalty``, 0..100
    :param time: simulated time (s)
    :param done: whether the route has ended
    :param done_reason: one of :data:`DONE_REASONS`, or None while running
    :param counts: number of events per kind
    :param events: every event in order
    :param outside_lane_m: route distance completed outside the route's lanes (m)
    :param completed_m: route distance completed (m), the denominator of the outside share
    :param outside_lane_percentage: ``100 * outside_lane_m / completed_m``
    :param success: Bench2Drive's success: finished with no infraction but minimum speed
    """

    route_seed: int
    route_length: float
    route_completion: float
    infraction_penalty: float
    driving_score: float
    time: float
    done: bool
    done_reason: Optional[str]
    counts: Dict[str, int] = field(default_factory=dict)
    events: List[Event] = field(default_factory=list)
    outside_lane_m: float = 0.0
    completed_m: float = 0.0
    outside_lane_percentage: float = 0.0
    success: bool = False

    @classmethod
    def from_events(cls, route_seed: int, route_length: float, route_completion: float,
                    time: float, events: Sequence[Event], done: bool,
                    done_reason: Optional[str], outside_lane_m: float = 0.0,
                    completed_m: Optional[float] = None) -> 'EpisodeSummary':
        """
        Build a summary, computing the penalty and the score.

        :param route_seed: seed of the route
        :param route_length: route length (m)
        :param route_completion: completed percentage, 0..100
        :param time: simulated time (s)
        :param events: the events so far
        :param done: whether the route has ended
        :param done_reason: why it ended, or None
        :param outside_lane_m: route distance completed outside the route's lanes (m)
        :param completed_m: route distance completed (m); None derives it from the completion
        """
        number_in_range('route_completion', route_completion, 0.0, 100.0)
        number_in_range('outside_lane_m', outside_lane_m, 0.0)
        if completed_m is None:
            completed_m = route_completion / 100.0 * route_length
        number_in_range('completed_m', completed_m, 0.0)
        if outside_lane_m > completed_m + 1e-6:
            raise ValueError(f'outside_lane_m ({outside_lane_m}) exceeds completed_m '
                             f'({completed_m})')
        if done_reason is not None and done_reason not in DONE_REASONS:
            raise ValueError(f'done_reason must be one of {DONE_REASONS} or None, '
                             f'got {done_reason!r}')
        percentage = min(100.0, 100.0 * outside_lane_m / completed_m) if completed_m > 0 else 0.0
        penalty = math.prod(event.penalty for event in events) * (1.0 - percentage / 100.0)
        counts: Dict[str, int] = {}
        for event in events:
            counts[event.kind] = counts.get(event.kind, 0) + 1
        success = (done_reason == 'route_finished' and outside_lane_m == 0.0
                   and not any(counts.get(kind) for kind in INFRACTIONS))
        return cls(route_seed, route_length, route_completion, penalty,
                   route_completion * penalty, time, done, done_reason, counts, list(events),
                   outside_lane_m, completed_m, percentage, success)

    def to_dict(self) -> dict:
        """Return plain JSON-serialisable data (events as dictionaries)."""
        return asdict(self)


def mean_driving_score(summaries: Sequence[EpisodeSummary]) -> float:
    """
    Return the global driving score: the mean of per-route driving scores.

    :param summaries: one summary per route (at least one)
    """
    if not summaries:
        raise ValueError('mean_driving_score needs at least one route summary')
    return sum(summary.driving_score for summary in summaries) / len(summaries)


@dataclass
class ScoringConfig:
    """
    The leaderboard's route criteria (defaults are leaderboard-2.0's values).

    :param time_limit_s: a fixed route time limit; None uses the leaderboard's growing limit
    :param min_timeout_s: route time limit before any progress (RouteTimeoutBehavior)
    :param timeout_speed_fraction: each completed metre adds 1 / (this x speed limit) seconds
    :param speed_limit_mps: speed limit where the world gives none per step (30 km/h)
    :param blocked_speed_mps: slower than this counts as standing still
    :param blocked_time_s: standing still longer than this ends the route
    :param off_route_distance_m: further than this from the route ends it
    :param progress_distance_m: route completion only grows within this distance of the route
    :param finish_percentage: the route is finished above this completion ...
    :param finish_distance_m: ... within this distance of the goal
    :param collision_radius_m: a collision within this distance of the last one is the same
    :param collision_repeat_s: a collision with the same object within this time is the same
    :param collision_min_speed_mps: collisions while slower than this are not the ego's fault
    """

    time_limit_s: Optional[float] = None
    min_timeout_s: float = 300.0
    timeout_speed_fraction: float = 0.1
    speed_limit_mps: float = 30.0 / 3.6
    blocked_speed_mps: float = 0.1
    blocked_time_s: float = 180.0
    off_route_distance_m: float = 30.0
    progress_distance_m: float = 10.0
    finish_percentage: float = 99.0
    finish_distance_m: float = 10.0
    collision_radius_m: float = 5.0
    collision_repeat_s: float = 5.0
    collision_min_speed_mps: float = 0.1

    def __post_init__(self):
        """Check every field, naming the bad value."""
        if self.time_limit_s is not None:
            number_in_range('ScoringConfig.time_limit_s', self.time_limit_s, 0.0,
                            low_open=True)
        checks = {
            'min_timeout_s': (0.0, 1e6), 'timeout_speed_fraction': (1e-3, 10.0),
            'speed_limit_mps': (0.1, 200.0), 'blocked_speed_mps': (0.0, 10.0),
            'blocked_time_s': (0.0, 1e6), 'off_route_distance_m': (1.0, 1e4),
            'progress_distance_m': (0.5, 1e4), 'finish_percentage': (0.0, 100.0),
            'finish_distance_m': (0.0, 1e3), 'collision_radius_m': (0.0, 1e3),
            'collision_repeat_s': (0.0, 1e3), 'collision_min_speed_mps': (0.0, 10.0),
        }
        for name, (low, high) in checks.items():
            number_in_range(f'ScoringConfig.{name}', getattr(self, name), low, high)


def time_limit_for(completed_m: float, speed_limit_mps: float,
                   config: Optional[ScoringConfig] = None) -> float:
    """
    Return the leaderboard route time limit after ``completed_m`` metres at one speed limit.

    :param completed_m: route distance completed (m); the whole route gives the most time a
        route can take
    :param speed_limit_mps: the speed limit along it (m/s)
    :param config: the criteria (leaderboard-2.0 defaults)
    """
    config = config or ScoringConfig()
    if config.time_limit_s is not None:
        return float(config.time_limit_s)
    return config.min_timeout_s + completed_m / (config.timeout_speed_fraction * speed_limit_mps)


class RouteScorer:
    """
    Route criteria of one episode: progress, outside-lane distance, ends, infractions.

    The world calls :meth:`update` once per step with what it measured, and
    :meth:`collision` / :meth:`infraction` when something happens; :meth:`summary` gives the
    score. Pure: no world geometry here, so every map kind scores the same way.

    :param route_seed: seed of the route
    :param route_length: route length (m)
    :param config: the criteria
    """

    def __init__(self, route_seed: int, route_length: float,
                 config: Optional[ScoringConfig] = None):
        """Start a route at time 0 with nothing completed."""
        number_in_range('route_length', route_length, 0.0, low_open=True)
        self.route_seed = int(route_seed)
        self.route_length = float(route_length)
        self.config = config or ScoringConfig()
        self.events: List[Event] = []
        self.done = False
        self.done_reason: Optional[str] = None
        self.time = 0.0
        self.completed_m = 0.0
        self.outside_lane_m = 0.0
        self._outside = False
        self._last_moving = 0.0
        self._time_limit = self.config.min_timeout_s
        self._record = (0.0, 0.0, 0.0)  # x, y, s of the last update, for event records
        # The last counted collision, forgotten once the ego is farther / later (CollisionTest).
        self._collision_place = None
        self._collision_actor = None  # (other_id, time)
        self._finished = False
        self._checkpoint_m = 0.0
        self._speed_sums = [0.0, 0.0, 0]  # ego, traffic, samples since the last checkpoint

    @property
    def route_completion(self) -> float:
        """Return the completed percentage, 0..100, never decreasing."""
        if self._finished:
            return 100.0
        return 100.0 * min(1.0, self.completed_m / self.route_length)

    @property
    def time_limit_s(self) -> float:
        """Return the route time limit now (it grows with progress unless fixed)."""
        fixed = self.config.time_limit_s
        return float(fixed) if fixed is not None else self._time_limit

    def update(self, time: float, x: float, y: float, s: float, route_distance: float,
               outside_lanes: bool, speed: float, goal_distance: float,
               speed_limit_mps: Optional[float] = None,
               traffic_speed: Optional[float] = None) -> List[Event]:
        """
        Account one step; return the events it raised (also kept in :attr:`events`).

        :param time: simulated time (s)
        :param x: ego x (m), for the event records
        :param y: ego y (m)
        :param s: ego arc length projected on the route (m)
        :param route_distance: ego distance from the route (m)
        :param outside_lanes: whether the ego is outside the route's lanes (off the driving
            lanes, or in a lane of the wrong direction)
        :param speed: ego speed (m/s, sign ignored)
        :param goal_distance: straight-line distance from the ego to the route's goal (m)
        :param speed_limit_mps: speed limit at the ego; None uses the configured one
        :param traffic_speed: mean speed of the surrounding traffic now (m/s); None where the
            world has no traffic (no minimum-speed checks then)
        """
        if self.done:
            return []
        cfg = self.config
        self.time = float(time)
        events: List[Event] = []
        self._record = (float(x), float(y), float(s))
        if self._collision_place is not None and math.hypot(
                x - self._collision_place[0], y - self._collision_place[1]) > \
                cfg.collision_radius_m:
            self._collision_place = None
        if self._collision_actor is not None and \
                self.time - self._collision_actor[1] > cfg.collision_repeat_s:
            self._collision_actor = None
        if outside_lanes and not self._outside:
            events.append(self._event(OUTSIDE_ROUTE_LANES))
        self._outside = bool(outside_lanes)
        if route_distance <= cfg.progress_distance_m:
            reached = min(max(float(s), 0.0), self.route_length)
            gained = reached - self.completed_m
            if gained > 0.0:
                self.completed_m = reached
                if outside_lanes:
                    self.outside_lane_m += gained
                limit = speed_limit_mps if speed_limit_mps else cfg.speed_limit_mps
                self._time_limit += gained / (cfg.timeout_speed_fraction * limit)
        if traffic_speed is not None and math.isfinite(traffic_speed):
            self._speed_sums[0] += abs(float(speed))
            self._speed_sums[1] += float(traffic_speed)
            self._speed_sums[2] += 1
        if self.completed_m - self._checkpoint_m > self.route_length / MIN_SPEED_CHECKPOINTS:
            events += self._speed_checkpoint()
        if route_distance > cfg.off_route_distance_m:
            events += self._finish('off_route')
        elif (self.route_completion > cfg.finish_percentage
              and goal_distance < cfg.finish_distance_m):
            self._finished = True
            events += self._finish('route_finished')
        elif abs(speed) >= cfg.blocked_speed_mps:
            self._last_moving = self.time
        elif self.time - self._last_moving > cfg.blocked_time_s:
            events += self._finish('blocked')
        if not self.done and self.time > self.time_limit_s:
            events += self._finish('timeout')
        self.events.extend(events)
        return events

    def relocate(self, s: float, route_distance: float) -> None:
        """
        Account a jump of the ego (a teleport by a tool or test), not a drive.

        Progress up to ``s`` counts as completed (within ``progress_distance_m`` of the
        route), never as driven outside the lanes, and raises no event.

        :param s: ego arc length projected on the route (m)
        :param route_distance: ego distance from the route (m)
        """
        if self.done or route_distance > self.config.progress_distance_m:
            return
        reached = min(max(float(s), 0.0), self.route_length)
        if reached > self.completed_m:
            self._time_limit += (reached - self.completed_m) / (
                self.config.timeout_speed_fraction * self.config.speed_limit_mps)
            self.completed_m = reached

    def collision(self, kind: str, x: float, y: float, speed: float, s: float = 0.0,
                  detail: str = '', other_id: Optional[str] = None,
                  time: Optional[float] = None) -> Optional[Event]:
        """
        Record a collision unless the leaderboard's CollisionTest would ignore it.

        Ignored: the ego standing still (not its fault), the same actor again within
        ``collision_repeat_s``, or anything within ``collision_radius_m`` of the last counted
        collision.

        :param kind: one of ``collision_pedestrian``, ``collision_vehicle``,
            ``collision_static``
        :param x: ego x (m)
        :param y: ego y (m)
        :param speed: ego speed just before the contact (m/s)
        :param s: ego arc length on the route (m)
        :param detail: what was hit (e.g. ``'tree'``), kept in the event
        :param other_id: identity of a movable actor (e.g. ``'vehicle 7'``); None for the static
            layout, which, as in CARLA (actor id 0), only the distance rule filters
        :param time: simulated time; None uses the last update's
        :return: the event, or None when ignored (or the route has ended)
        """
        if kind not in COLLISION_KINDS:
            raise ValueError(f'collision kind must be one of {COLLISION_KINDS}, got {kind!r}')
        cfg = self.config
        now = self.time if time is None else float(time)
        if self.done or abs(speed) < cfg.collision_min_speed_mps:
            return None
        if other_id is not None and self._collision_actor is not None and \
                self._collision_actor[0] == other_id:
            return None
        if self._collision_place is not None and math.hypot(
                x - self._collision_place[0], y - self._collision_place[1]) <= \
                cfg.collision_radius_m:
            return None
        self._collision_place = (float(x), float(y))
        if other_id is not None:
            self._collision_actor = (other_id, now)
        event = Event(kind, round(now, 6), float(x), float(y), float(s), detail)
        self.events.append(event)
        return event

    def infraction(self, kind: str, x: float, y: float, s: float = 0.0, detail: str = '',
                   time: Optional[float] = None) -> Optional[Event]:
        """
        Record a penalised infraction: red light, stop sign, scenario timeout and the like.

        :param kind: a key of :data:`PENALTIES`
        :param x: ego x (m)
        :param y: ego y (m)
        :param s: ego arc length on the route (m)
        :param detail: e.g. which light
        :param time: simulated time; None uses the last update's
        :return: the event, or None once the route has ended
        """
        if kind not in PENALTIES:
            raise ValueError(f'infraction kind must be one of {tuple(PENALTIES)}, got {kind!r}')
        if self.done:
            return None
        now = self.time if time is None else float(time)
        event = Event(kind, round(now, 6), float(x), float(y), float(s), detail)
        self.events.append(event)
        return event

    def note(self, kind: str, x: float, y: float, s: float = 0.0, detail: str = '',
             time: Optional[float] = None) -> Optional[Event]:
        """
        Record an unpenalised event (e.g. ``lane_crossing``); None once the route has ended.

        :param kind: the event kind (not a penalised or route-ending one)
        :param x: ego x (m)
        :param y: ego y (m)
        :param s: ego arc length on the route (m)
        :param detail: free text
        :param time: simulated time; None uses the last update's
        """
        if kind in PENALTIES or kind in DONE_REASONS or \
                kind in (OUTSIDE_ROUTE_LANES, MIN_SPEED):
            raise ValueError(f'{kind!r} is scored; use collision(), infraction() or update()')
        if self.done:
            return None
        now = self.time if time is None else float(time)
        event = Event(kind, round(now, 6), float(x), float(y), float(s), detail)
        self.events.append(event)
        return event

    def end(self, reason: str, detail: str = '') -> List[Event]:
        """
        End the route from outside (e.g. an evaluator's own time limit); no penalty.

        :param reason: one of :data:`DONE_REASONS` but ``route_finished``
        :param detail: who ended it
        """
        if reason not in DONE_REASONS or reason == 'route_finished':
            raise ValueError(f'end reason must be off_route, blocked or timeout, got {reason!r}')
        events = self._finish(reason, detail) if not self.done else []
        self.events.extend(events)
        return events

    def summary(self) -> EpisodeSummary:
        """Return route completion, penalty, driving score and events so far."""
        return EpisodeSummary.from_events(
            self.route_seed, self.route_length, self.route_completion, self.time, self.events,
            self.done, self.done_reason, self.outside_lane_m, self.completed_m)

    # -- internals ---------------------------------------------------------------------------

    def _event(self, kind: str, detail: str = '', value: float = 0.0) -> Event:
        x, y, s = self._record
        return Event(kind, round(self.time, 6), x, y, s, detail, value)

    def _finish(self, reason: str, detail: str = '') -> List[Event]:
        self.done = True
        self.done_reason = reason
        events = []
        # Routes end around 99 %: the leaderboard closes the last speed checkpoint past 95 %.
        if self.completed_m > 0.95 * self.route_length:
            events = self._speed_checkpoint()
        return events + [self._event(reason, detail)]

    def _speed_checkpoint(self) -> List[Event]:
        """Close a minimum-speed checkpoint (MinimumSpeedRouteTest); return its event if any."""
        ego, traffic, samples = self._speed_sums
        self._speed_sums = [0.0, 0.0, 0]
        self._checkpoint_m = self.completed_m
        if not samples or traffic <= 0.0:
            return []
        percent = round(100.0 * ego / traffic, 2)
        if percent >= 100.0:
            return []
        return [self._event(MIN_SPEED, f'{percent:.0f}% of the traffic speed', percent)]
