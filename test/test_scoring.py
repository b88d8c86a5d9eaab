"""Leaderboard 2.0 scoring on hand-built episodes: penalties, outside lanes, ends, time limit."""
import math

from llava_drive.sim.scoring import (EpisodeSummary, Event, LEADERBOARD_VERSION,
                                     mean_driving_score, PENALTIES, RouteScorer, ScoringConfig)
import pytest


def drive_straight(scorer, start, end, speed=5.0, dt=0.05, outside=lambda s: False,
                   lateral=0.0, traffic=None):
    """Move the ego along a straight route from ``start`` to ``end`` m; return the last time."""
    s = start
    time = scorer.time
    while s < end and not scorer.done:
        s = min(end, s + speed * dt)
        time += dt
        scorer.update(time, s, lateral, s, abs(lateral), outside(s), speed,
                      math.hypot(scorer.route_length - s, lateral), traffic_speed=traffic)
    return time


def test_factors_are_leaderboard_2_0s():
    """Keep statistics_manager.py's PENALTY_VALUE_DICT of leaderboard-2.0."""
    assert LEADERBOARD_VERSION == 'CARLA Leaderboard 2.0'
    assert PENALTIES == {'collision_pedestrian': 0.50, 'collision_vehicle': 0.60,
                         'collision_static': 0.65, 'red_light': 0.70, 'stop_sign': 0.80,
                         'scenario_timeout': 0.70, 'yield_emergency_vehicle': 0.70}
    assert Event('timeout', 1.0).penalty == 1.0
    assert Event('blocked', 1.0).penalty == 1.0 and Event('off_route', 1.0).penalty == 1.0
    assert Event('min_speed', 1.0, value=50.0).penalty == pytest.approx(1 - 0.3 * 0.5)


def test_worked_example_rc80_vehicle_collision_10_percent_outside_gives_43_2():
    """RC 80 %, one vehicle collision, 10 % of the completed distance outside: DS 43.2."""
    summary = EpisodeSummary.from_events(
        1, 100.0, 80.0, 60.0, [Event('collision_vehicle', 3.0)], True, 'blocked',
        outside_lane_m=8.0)
    assert summary.outside_lane_percentage == pytest.approx(10.0)
    assert summary.infraction_penalty == pytest.approx(0.54)
    assert summary.driving_score == pytest.approx(43.2)
    # The old rule (a fixed 0.65 per excursion) would give 31.2: make sure it is gone.
    assert summary.driving_score != pytest.approx(80.0 * 0.6 * 0.65)


def test_worked_example_driven_through_the_scorer_and_ended_by_a_route_timeout():
    """The same episode scored step by step and ended by the route time limit: still 43.2."""
    scorer = RouteScorer(7, 200.0, ScoringConfig(time_limit_s=40.0))
    # 160 m of 200 (RC 80 %), 16 m of them (10 %) in the oncoming lane, then stop.
    drive_straight(scorer, 0.0, 160.0, outside=lambda s: 100.0 < s <= 116.0)
    assert scorer.collision('collision_vehicle', 160.0, 0.0, speed=5.0, other_id='vehicle 3')
    while not scorer.done:
        scorer.update(scorer.time + 0.05, 160.0, 0.0, 160.0, 0.0, False, 0.0, 40.0)
    summary = scorer.summary()
    assert summary.done_reason == 'timeout'
    assert summary.route_completion == pytest.approx(80.0)
    assert summary.outside_lane_m == pytest.approx(16.0, abs=0.3)
    assert summary.infraction_penalty == pytest.approx(0.54, abs=0.002)
    assert summary.driving_score == pytest.approx(43.2, abs=0.2)
    assert summary.counts == {'outside_route_lanes': 1, 'collision_vehicle': 1, 'timeout': 1}
    assert not summary.success


def test_leaderboard_time_limit_grows_300s_plus_distance_over_10_percent_of_speed_limit():
    """Start at 300 s; each completed metre adds 1 / (0.1 x speed limit) seconds."""
    scorer = RouteScorer(1, 500.0, ScoringConfig(speed_limit_mps=10.0))
    assert scorer.time_limit_s == 300.0
    drive_straight(scorer, 0.0, 50.0)
    assert scorer.time_limit_s == pytest.approx(300.0 + 50.0 / 1.0)
    # A per-step speed limit (e.g. a faster road) adds less per metre.
    scorer.update(scorer.time + 0.05, 70.0, 0.0, 70.0, 0.0, False, 5.0, 430.0,
                  speed_limit_mps=20.0)
    assert scorer.time_limit_s == pytest.approx(350.0 + 20.0 / 2.0)
    # Standing still (but not blocked: creeping at 0.2 m/s) past the limit ends the route.
    while not scorer.done:
        scorer.update(scorer.time + 0.5, 70.0, 0.0, 70.0, 0.0, False, 0.2, 430.0)
    assert scorer.done_reason == 'timeout' and scorer.time > 360.0
    assert scorer.time == pytest.approx(360.0, abs=0.6)
    assert scorer.summary().infraction_penalty == 1.0


def test_blocked_and_deviation_end_the_route_without_penalty():
    """< 0.1 m/s for more than 180 s, or > 30 m from the route, ends it; P stays 1."""
    blocked = RouteScorer(1, 100.0)
    drive_straight(blocked, 0.0, 30.0)
    t0 = blocked.time
    while not blocked.done:
        blocked.update(blocked.time + 0.5, 30.0, 0.0, 30.0, 0.0, False, 0.05, 70.0)
    assert blocked.done_reason == 'blocked'
    assert blocked.time - t0 == pytest.approx(180.5, abs=0.01)
    summary = blocked.summary()
    assert summary.infraction_penalty == 1.0 and summary.driving_score == pytest.approx(30.0)
    deviated = RouteScorer(1, 100.0)
    drive_straight(deviated, 0.0, 40.0)
    events = deviated.update(deviated.time + 0.05, 40.0, 31.0, 40.0, 31.0, True, 5.0, 65.0)
    assert [e.kind for e in events] == ['outside_route_lanes', 'off_route']
    summary = deviated.summary()
    assert summary.done_reason == 'off_route' and summary.infraction_penalty == 1.0
    # Frozen once ended.
    assert deviated.update(99.0, 90.0, 0.0, 90.0, 0.0, False, 5.0, 10.0) == []
    assert deviated.infraction('red_light', 0.0, 0.0) is None


def test_finish_above_99_percent_within_10m_and_progress_only_near_the_route():
    """RC 100 above 99 % within 10 m of the goal; no progress while > 10 m from the route."""
    scorer = RouteScorer(1, 100.0)
    scorer.update(0.05, 50.0, 12.0, 50.0, 12.0, True, 5.0, 50.0)
    assert scorer.route_completion == 0.0
    drive_straight(scorer, 0.0, 99.0)
    assert not scorer.done and scorer.route_completion == pytest.approx(99.0)
    drive_straight(scorer, 99.0, 99.5)
    summary = scorer.summary()
    assert summary.done_reason == 'route_finished' and summary.route_completion == 100.0
    assert summary.success and summary.driving_score == 100.0


def test_collisions_are_filtered_as_carlas_collision_test():
    """Not at a standstill, not the same actor within 5 s, not within 5 m of the last one."""
    scorer = RouteScorer(1, 500.0)
    drive_straight(scorer, 0.0, 10.0)
    assert scorer.collision('collision_static', 10.0, 0.0, speed=0.05) is None
    first = scorer.collision('collision_vehicle', 10.0, 0.0, speed=4.0, other_id='vehicle 1')
    assert first is not None and first.penalty == 0.6
    assert scorer.collision('collision_static', 13.0, 0.0, speed=4.0) is None  # within 5 m
    drive_straight(scorer, 10.0, 20.0)                                        # 2 s later
    assert scorer.collision('collision_vehicle', 20.0, 0.0, speed=4.0,
                            other_id='vehicle 1') is None                      # same actor
    assert scorer.collision('collision_pedestrian', 20.0, 0.0, speed=4.0,
                            other_id='walker 2') is not None
    drive_straight(scorer, 20.0, 60.0)                                        # 8 s later
    assert scorer.collision('collision_vehicle', 60.0, 0.0, speed=4.0,
                            other_id='vehicle 1') is not None
    assert scorer.summary().infraction_penalty == pytest.approx(0.6 * 0.5 * 0.6)
    with pytest.raises(ValueError, match='collision kind'):
        scorer.collision('collision_tree', 0.0, 0.0, speed=1.0)
    with pytest.raises(ValueError, match='infraction kind'):
        scorer.infraction('speeding', 0.0, 0.0)
    with pytest.raises(ValueError, match='is scored'):
        scorer.note('red_light', 0.0, 0.0)


@pytest.mark.parametrize('kind, factor', sorted(PENALTIES.items()))
def test_each_infraction_multiplies_p_and_breaks_success(kind, factor):
    """Each penalised infraction multiplies P once and makes the route no success."""
    scorer = RouteScorer(1, 100.0)
    drive_straight(scorer, 0.0, 50.0)
    if kind.startswith('collision'):
        scorer.collision(kind, 50.0, 0.0, speed=5.0)
    else:
        scorer.infraction(kind, 50.0, 0.0, 50.0, 'test')
    drive_straight(scorer, 50.0, 100.0)
    summary = scorer.summary()
    assert summary.done_reason == 'route_finished'
    assert summary.infraction_penalty == pytest.approx(factor)
    assert summary.driving_score == pytest.approx(100.0 * factor)
    assert not summary.success


def test_min_speed_checkpoints_penalise_but_keep_success():
    """Driving at half the traffic's speed: 4 checkpoints x (1 - 0.3 x 0.5); still a success."""
    scorer = RouteScorer(1, 100.0)
    drive_straight(scorer, 0.0, 100.0, speed=5.0, traffic=10.0)
    summary = scorer.summary()
    assert summary.counts.get('min_speed') == 4
    assert all(e.value == pytest.approx(50.0) for e in summary.events if e.kind == 'min_speed')
    assert summary.infraction_penalty == pytest.approx(0.85 ** 4)
    assert summary.success
    fast = RouteScorer(1, 100.0)
    drive_straight(fast, 0.0, 100.0, speed=10.0, traffic=10.0)
    assert 'min_speed' not in fast.summary().counts


def test_global_score_is_the_mean_of_route_scores():
    """Mean of DS_i, not mean RC x mean P."""
    a = EpisodeSummary.from_events(1, 100.0, 100.0, 10.0, [], True, 'route_finished')
    b = EpisodeSummary.from_events(2, 100.0, 50.0, 10.0, [Event('collision_vehicle', 1.0)],
                                   True, 'blocked')
    assert mean_driving_score([a, b]) == pytest.approx((100.0 + 30.0) / 2)
    with pytest.raises(ValueError):
        mean_driving_score([])


@pytest.mark.parametrize('kwargs, message', [
    ({'route_completion': 120.0}, 'route_completion'),
    ({'route_completion': math.nan}, 'route_completion'),
    ({'outside_lane_m': -1.0}, 'outside_lane_m'),
    ({'outside_lane_m': 90.0}, 'exceeds completed_m'),
    ({'done_reason': 'crashed'}, 'done_reason'),
])
def test_bad_summaries_are_refused(kwargs, message):
    """Refuse out-of-range completion, outside distance and unknown end reasons."""
    args = {'route_completion': 80.0, 'outside_lane_m': 0.0, 'done_reason': None}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        EpisodeSummary.from_events(1, 100.0, args['route_completion'], 1.0, [], False,
                                   args['done_reason'], outside_lane_m=args['outside_lane_m'])


@pytest.mark.parametrize('kwargs, name', [
    ({'speed_limit_mps': 0.0}, 'speed_limit_mps'), ({'time_limit_s': -1.0}, 'time_limit_s'),
    ({'blocked_time_s': math.inf}, 'blocked_time_s'), ({'finish_percentage': 101}, 'finish'),
])
def test_scoring_config_names_the_bad_value(kwargs, name):
    """Reject bad criteria with the field's name."""
    with pytest.raises(ValueError, match=name):
        ScoringConfig(**kwargs)
