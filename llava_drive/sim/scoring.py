"""
Infraction events and the per-route driving score, CARLA leaderboard style (architecture).

Driving score of one route ``DS = RC * P``: ``RC`` is the route completion in percent and ``P``
the product of the penalties of all infraction events (1 when there were none). Across routes
the global score is the mean of the per-route ``DS`` (:func:`mean_driving_score`), never
mean RC times mean P.
"""
from dataclasses import asdict, dataclass, field
import math
from typing import Dict, List, Optional, Sequence

# Penalty factor per event kind; kinds not listed are counted but not penalised.
PENALTIES: Dict[str, float] = {
    'collision_vehicle': 0.60,
    'collision_static': 0.65,
    'off_road': 0.65,
    'timeout': 0.70,
}

# Why a route ends.
DONE_REASONS = ('route_finished', 'off_route', 'blocked', 'timeout')


@dataclass(frozen=True)
class Event:
    """
    One infraction or episode event.

    :param kind: ``collision_static``, ``collision_vehicle``, ``off_road``, ``lane_crossing``,
        ``timeout``, ``blocked``, ``off_route`` or ``route_finished``
    :param time: simulated time of the event (s)
    :param x: vehicle x when it happened (m)
    :param y: vehicle y when it happened (m)
    :param s: route arc length when it happened (m)
    :param detail: free text (e.g. which lane marking)
    """

    kind: str
    time: float
    x: float = 0.0
    y: float = 0.0
    s: float = 0.0
    detail: str = ''

    @property
    def penalty(self) -> float:
        """Return this event's penalty factor (1.0 when it is not penalised)."""
        return PENALTIES.get(self.kind, 1.0)


@dataclass
class EpisodeSummary:
    """
    Result of one route so far, ready to serialise (:meth:`to_dict`).

    :param route_seed: seed of the route
    :param route_length: driven route length (m)
    :param route_completion: percentage of the route distance completed, 0..100
    :param infraction_penalty: product of all event penalties, 0..1
    :param driving_score: ``route_completion * infraction_penalty``, 0..100
    :param time: simulated time (s)
    :param done: whether the route has ended
    :param done_reason: one of :data:`DONE_REASONS`, or None while running
    :param counts: number of events per kind
    :param events: every event in order
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

    @classmethod
    def from_events(cls, route_seed: int, route_length: float, route_completion: float,
                    time: float, events: Sequence[Event], done: bool,
                    done_reason: Optional[str]) -> 'EpisodeSummary':
        """
        Build a summary, computing the penalty product and the score.

        :param route_seed: seed of the route
        :param route_length: driven route length (m)
        :param route_completion: completed percentage, 0..100
        :param time: simulated time (s)
        :param events: the events so far
        :param done: whether the route has ended
        :param done_reason: why it ended, or None
        """
        if not 0.0 <= route_completion <= 100.0:
            raise ValueError(f'route_completion must be in [0, 100], got {route_completion}')
        penalty = math.prod(event.penalty for event in events)
        counts: Dict[str, int] = {}
        for event in events:
            counts[event.kind] = counts.get(event.kind, 0) + 1
        return cls(route_seed, route_length, route_completion, penalty,
                   route_completion * penalty, time, done, done_reason, counts, list(events))

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
