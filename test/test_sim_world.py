"""Simulator: stepping, infractions, progress and the episode summary."""
import json
import math

from llava_drive.control import Control
from llava_drive.expert.driver import ExpertDriver
from llava_drive.sim.scoring import EpisodeSummary, Event, mean_driving_score, PENALTIES
from llava_drive.sim.world import SimConfig, Simulator
import numpy as np
import pytest


def drive(sim, control, seconds):
    """Step ``sim`` under a constant control until done or ``seconds`` pass; return results."""
    results = []
    for _ in range(int(round(seconds / sim.config.dt))):
        results.append(sim.step(control))
        if sim.done:
            break
    return results


def test_reset_puts_the_car_in_the_right_lane_at_rest():
    """Start at s = 0 in the right lane centre, heading along the route, time 0."""
    sim = Simulator(SimConfig(route_seed=4))
    result = sim.reset(4)
    assert result.time == 0.0 and result.state.speed == 0.0
    assert result.s == pytest.approx(0.0, abs=1e-6)
    assert result.lateral_error == pytest.approx(0.0, abs=1e-6)
    assert sim.route.project(result.state.x, result.state.y).lateral == pytest.approx(-1.75)
    assert result.route_completion == 0.0 and not result.done and result.events == ()


def test_leaving_the_road_scores_the_distance_outside_the_route_lanes():
    """Steering off the road counts the route distance driven outside, not a fixed 0.65."""
    sim = Simulator(SimConfig(route_seed=2))
    results = drive(sim, Control(steer=0.6, throttle=0.5), 4.0)
    assert any(r.off_road for r in results)
    first = next(i for i, r in enumerate(results) if r.outside_lanes)
    assert not results[first - 1].outside_lanes
    assert [e.kind for e in results[first].events] == ['outside_route_lanes']
    summary = sim.summary()
    assert summary.counts['outside_route_lanes'] == 1
    assert 'collision_static' not in summary.counts
    assert 0.0 < summary.outside_lane_m < summary.completed_m
    share = summary.outside_lane_m / summary.completed_m
    assert summary.outside_lane_percentage == pytest.approx(100.0 * share)
    assert summary.infraction_penalty == pytest.approx(1.0 - share)
    assert summary.driving_score == pytest.approx(summary.route_completion * (1.0 - share))


def test_the_other_directions_lane_is_outside_the_route_lanes():
    """Driving along the left (oncoming) lane is outside the route lanes all the way."""
    sim = Simulator(SimConfig(route_seed=4, obstacles=False))
    x, y, yaw = sim.route.pose_at(0.0, 1.75)
    sim.teleport(x, y, yaw)
    expert = ExpertDriver()
    for _ in range(int(15.0 / sim.config.dt)):
        st = sim.state
        s_ahead = sim.route.project(st.x, st.y).s + np.arange(40.0)
        lane = sim.route.poses_at(s_ahead, 1.75)[:, :2]
        result = sim.step(expert.control(st.x, st.y, st.yaw, st.speed, lane))
        assert result.outside_lanes and not result.off_road
    summary = sim.summary()
    assert summary.completed_m > 50.0 and summary.counts['outside_route_lanes'] == 1
    assert summary.outside_lane_percentage == pytest.approx(100.0)
    assert summary.infraction_penalty == pytest.approx(0.0) and not summary.success


def test_collision_with_parked_car_stops_the_car_and_counts_once():
    """Driving into a parked car raises one collision event and the car cannot pass through."""
    sim = Simulator(SimConfig(route_seed=5))
    car = next(c for c in sim.route.parked_cars if c.lateral < 0)
    x, y, yaw = sim.route.pose_at(car.s - 8.0, car.lateral)
    sim.teleport(x, y, yaw)
    results = drive(sim, Control(throttle=0.6), 6.0)
    summary = sim.summary()
    assert summary.counts.get('collision_static') == 1
    # The parked car stands on the shoulder: the approach was outside the route lanes too.
    assert summary.outside_lane_m > 0.0
    assert summary.infraction_penalty == pytest.approx(
        PENALTIES['collision_static'] * (1.0 - summary.outside_lane_percentage / 100.0))
    assert results[-1].in_collision and abs(results[-1].state.speed) < 1e-9
    # Stopped against the car: still behind it along the road.
    assert results[-1].s < car.s - 0.5 * car.length


def test_tree_trunk_is_solid():
    """Driving at a tree counts a collision with it and stops the car."""
    sim = Simulator(SimConfig(route_seed=6))
    tree = sim.route.trees[3]
    sim.teleport(tree.x - 8.0, tree.y, 0.0)
    drive(sim, Control(throttle=0.5), 6.0)
    summary = sim.summary()
    collisions = [e for e in summary.events if e.kind == 'collision_static']
    assert [e.detail for e in collisions] == ['tree']
    assert sim.state.speed == 0.0 and sim.state.x < tree.x


def test_expert_route_completion_is_monotone_and_reaches_100():
    """Drive a short route with the expert: completion never drops and ends at 100."""
    sim = Simulator(SimConfig(route_seed=9, route_length_m=150.0))
    expert = ExpertDriver()
    completions = []
    while not sim.done:
        st = sim.state
        result = sim.step(expert.control(st.x, st.y, st.yaw, st.speed, sim.waypoints_ahead(40)))
        completions.append(result.route_completion)
        assert sim.time < 60.0
    assert all(b >= a for a, b in zip(completions, completions[1:]))
    assert completions[-1] == 100.0 and completions[len(completions) // 2] < 100.0
    summary = sim.summary()
    assert summary.done_reason == 'route_finished' and summary.driving_score == 100.0
    assert summary.counts == {'route_finished': 1}


def test_completion_does_not_grow_when_driving_backwards():
    """Reversing does not lower the completion, and it never exceeds the furthest point."""
    sim = Simulator(SimConfig(route_seed=3))
    drive(sim, Control(throttle=0.5), 4.0)
    drive(sim, Control(brake=1.0), 2.0)
    best = sim.route_completion
    s_stopped = sim.step(Control(brake=1.0)).s
    results = drive(sim, Control(throttle=0.5, reverse=True), 4.0)
    assert results[-1].s < s_stopped - 5.0
    assert sim.route_completion == best > 0.0


def test_blocked_after_180_seconds_standing_still():
    """A car that never moves is blocked at 180 s simulated, with no penalty."""
    sim = Simulator(SimConfig(route_seed=1))
    drive(sim, Control(brake=1.0), 200.0)
    summary = sim.summary()
    assert summary.done_reason == 'blocked'
    assert sim.time == pytest.approx(180.0, abs=0.06)
    assert summary.infraction_penalty == 1.0 and summary.route_completion == 0.0


def test_route_timeout_ends_the_route_without_penalty():
    """Crawling past a fixed time limit ends the route, with no penalty (leaderboard 2.0)."""
    sim = Simulator(SimConfig(route_seed=1, time_budget_s=8.0))
    results = drive(sim, Control(throttle=0.05), 20.0)
    summary = sim.summary()
    assert summary.done_reason == 'timeout' and results[-1].done
    assert sim.time == pytest.approx(8.0, abs=0.06)
    assert summary.infraction_penalty == 1.0
    assert 0.0 < summary.route_completion < 10.0
    assert summary.driving_score == pytest.approx(summary.route_completion)


def test_default_time_limit_is_the_leaderboards_and_grows_with_progress():
    """300 s, plus 1 / (10 % of the 30 km/h limit) = 1.2 s per metre completed."""
    sim = Simulator(SimConfig(route_length_m=400.0))
    assert sim.time_budget_s == pytest.approx(300.0)
    x, y, yaw = sim.route.pose_at(100.0, -1.75)
    sim.teleport(x, y, yaw)
    assert sim.time_budget_s == pytest.approx(300.0 + 100.0 * 1.2, abs=0.05)
    sim.step(Control())
    assert sim.time_budget_s == pytest.approx(420.0, abs=0.2)


def test_off_route_ends_the_route():
    """Being more than 30 m from the route ends it."""
    sim = Simulator(SimConfig(route_seed=6))
    x, y, yaw = sim.route.pose_at(50.0, -40.0)
    sim.teleport(x, y, yaw)
    result = sim.step(Control())
    assert result.done and result.done_reason == 'off_route'


def test_lane_marking_touch_is_counted():
    """Drifting left over the dashed centre line counts a lane crossing, with no penalty."""
    sim = Simulator(SimConfig(route_seed=7))
    drive(sim, Control(steer=-0.08, throttle=0.4), 4.0)
    summary = sim.summary()
    crossings = [e for e in summary.events if e.kind == 'lane_crossing']
    assert [e.detail for e in crossings][:1] == ['centre']
    assert summary.infraction_penalty == 1.0


def test_nan_control_brakes_the_car():
    """A NaN command is a full brake."""
    sim = Simulator(SimConfig(route_seed=1, initial_speed_mps=10.0))
    results = drive(sim, Control(throttle=float('nan'), brake=float('nan')), 1.5)
    assert results[-1].state.speed == 0.0


def test_frozen_after_done():
    """After the route ended, further steps move the car but change no score."""
    sim = Simulator(SimConfig(route_seed=1, time_budget_s=1.0))
    drive(sim, Control(throttle=1.0), 2.0)
    before = sim.summary()
    result = sim.step(Control(steer=1.0, throttle=1.0))
    assert result.done and result.events == ()
    assert sim.summary().events == before.events


def test_waypoints_ahead_follow_the_lane():
    """Return lane-centre points 1 m apart starting at the car, in the right lane."""
    sim = Simulator(SimConfig(route_seed=8))
    drive(sim, Control(throttle=0.5), 3.0)
    points = sim.waypoints_ahead(30)
    assert len(points) == 30 and len(points[0]) == 3
    st = sim.state
    assert math.hypot(points[0][0] - st.x, points[0][1] - st.y) < 0.5
    for x, y, _ in points:
        assert sim.route.project(x, y).lateral == pytest.approx(-1.75, abs=0.02)
    # 1 m apart along the centreline; the lane is offset, so curves change that by <= 1.75/30.
    steps = [math.hypot(b[0] - a[0], b[1] - a[1]) for a, b in zip(points, points[1:])]
    assert steps == pytest.approx([1.0] * 29, abs=1.75 / 30.0 + 1e-3)
    full = sim.route_waypoints()
    assert len(full) == int(sim.route.length + sim.route.config.lead_out_m) + 1


def test_summary_is_json_serialisable_and_scores_combine():
    """Serialise the summary to JSON; the global score is the mean of per-route scores."""
    sim = Simulator(SimConfig(route_seed=2))
    drive(sim, Control(steer=0.6, throttle=0.5), 4.0)
    data = json.loads(json.dumps(sim.summary().to_dict()))
    assert data['counts']['outside_route_lanes'] == 1
    assert 'outside_route_lanes' in [event['kind'] for event in data['events']]
    assert data['outside_lane_m'] > 0.0 and data['success'] is False
    a = EpisodeSummary.from_events(1, 100.0, 100.0, 10.0, [], True, 'route_finished')
    b = EpisodeSummary.from_events(2, 100.0, 50.0, 10.0, [Event('collision_vehicle', 1.0)],
                                   True, 'blocked')
    assert b.driving_score == pytest.approx(30.0)
    assert mean_driving_score([a, b]) == pytest.approx(65.0)


@pytest.mark.parametrize('kwargs, name', [({'width': 0}, 'width'), ({'dt': 0.0}, 'dt'),
                                          ({'fov_deg': 200.0}, 'fov_deg'),
                                          ({'route_seed': -3}, 'route_seed'),
                                          ({'lane_offset_m': float('nan')}, 'lane_offset_m'),
                                          ({'time_budget_s': -1.0}, 'time_budget_s')])
def test_config_errors_name_the_value(kwargs, name):
    """Reject bad configurations with a message naming the field."""
    with pytest.raises(ValueError, match=name):
        SimConfig(**kwargs)


def test_progress_only_counts_near_the_route():
    """A car far beside the route (on the grass) completes nothing, as in CARLA."""
    sim = Simulator(SimConfig(route_seed=6, obstacles=False))
    x, y, yaw = sim.route.pose_at(120.0, -15.0)
    sim.teleport(x, y, yaw)
    sim.step(Control())
    assert sim.route_completion < 1.0
    x, y, yaw = sim.route.pose_at(120.0, -1.75)
    sim.teleport(x, y, yaw)
    sim.step(Control())
    assert sim.route_completion > 20.0


def test_variation_redraws_the_appearance_on_the_same_road():
    sim = Simulator(SimConfig(route_seed=3, width=64, height=48))
    first, road = sim.render().copy(), sim.route.points.copy()
    sim.reset(3, variation=1)
    assert (sim.route.points == road).all()
    assert sim.appearance != Simulator(SimConfig(route_seed=3, width=64, height=48)).appearance
    assert not (sim.render() == first).all()
    sim.reset(3)
    assert (sim.render() == first).all()
