"""Route commands and global plans: RoadOption, downsampling, validation, the command rule."""
import math

from llava_drive.planning import (commands_along, downsample_indices, GlobalPlan, RoadOption,
                                  route_command)
import numpy as np
import pytest

LF, LEFT, RIGHT = RoadOption.LANEFOLLOW, RoadOption.LEFT, RoadOption.RIGHT


def l_route(approach=100.0, radius=10.0, leave=100.0, turn=LEFT):
    """
    Return dense 1 m poses and options: east ``approach`` m, a quarter turn, then ``leave`` m.

    The turn (a junction connector) carries ``turn``; the rest LANEFOLLOW.
    """
    poses, options = [], []
    for s in np.arange(0.0, approach, 1.0):
        poses.append((s, 0.0, 0.0))
        options.append(LF)
    sign = 1.0 if turn == LEFT else -1.0
    steps = int(math.ceil(0.5 * math.pi * radius))
    for k in range(steps):
        angle = 0.5 * math.pi * k / steps
        poses.append((approach + radius * math.sin(angle),
                      sign * radius * (1.0 - math.cos(angle)), sign * angle))
        options.append(turn)
    for s in np.arange(0.0, leave + 0.5, 1.0):
        poses.append((approach + radius, sign * (radius + s), sign * 0.5 * math.pi))
        options.append(LF)
    return np.array(poses), options


def test_road_option_values_are_carlas_and_parse_wire_values_and_names():
    """Carry CARLA's integers; parse ints, the uint8 wire value of VOID, names; refuse others."""
    assert {o.name: int(o) for o in RoadOption} == {
        'VOID': -1, 'LEFT': 1, 'RIGHT': 2, 'STRAIGHT': 3, 'LANEFOLLOW': 4,
        'CHANGELANELEFT': 5, 'CHANGELANERIGHT': 6}
    assert RoadOption.parse(255) is RoadOption.VOID
    assert RoadOption.VOID.wire == 255 and RoadOption.LEFT.wire == 1
    assert RoadOption.parse(np.uint8(3)) is RoadOption.STRAIGHT
    assert RoadOption.parse('left') is RoadOption.LEFT
    for bad in (0, 7, 254, 'UP', 1.0, None, True):
        with pytest.raises(ValueError):
            RoadOption.parse(bad)


def test_downsample_keeps_start_end_junction_entry_exit_lane_changes_and_every_200m():
    """Keep what leaderboard-2.0's downsample_route keeps, and nothing else."""
    poses, options = l_route(approach=450.0)
    entry = options.index(LEFT)
    exit_ = entry + options[entry:].index(LF)
    # A lane change near the end: every lane-change point is kept, the point after is not.
    options[-20:-17] = [RoadOption.CHANGELANELEFT] * 3
    kept = downsample_indices(poses, options)
    assert kept[0] == 0 and kept[-1] == len(poses) - 1
    assert entry in kept and exit_ in kept
    assert set(range(len(poses) - 20, len(poses) - 17)) <= set(kept)
    assert len(poses) - 17 not in kept
    # On the 450 m approach one point after each 200 m (kept points do not count their step).
    approach = [i for i in kept if 0 < i < entry]
    assert approach == [202, 404]
    assert downsample_indices(poses, options, 50.0) != kept


def test_from_dense_sparse_and_round_trip():
    """Build the sparse plan from the dense route; JSON round trips; sparse() drops dense."""
    poses, options = l_route()
    plan = GlobalPlan.from_dense(poses, options)
    assert plan.options == (LF, LEFT, LF, LF)
    assert plan.has_dense and len(plan.dense_poses) == len(poses)
    assert plan.length == pytest.approx(100.0 + 0.5 * math.pi * 10.0 + 100.0, abs=0.5)
    again = GlobalPlan.from_dict(plan.to_dict())
    assert again.equals(plan)
    sparse = plan.sparse()
    assert not sparse.has_dense and sparse.equals(GlobalPlan.from_dict(plan.to_dict(False)))
    assert not sparse.equals(plan)
    assert plan.junctions() == [(100, 116, LEFT)]
    assert sparse.junctions() == [(1, 2, LEFT)]


@pytest.mark.parametrize('poses, options, message', [
    ([[0, 0, 0]], [4], 'at least 2'),
    ([[0, 0, 0], [1, 0, math.nan]], [4, 4], r'poses\[1\] is not finite'),
    ([[0, 0, 0], [math.inf, 0, 0]], [4, 4], r'poses\[1\] is not finite'),
    ([[0, 0, 0], [1e9, 0, 0]], [4, 4], 'beyond'),
    ([[0, 0], [1, 0]], [4, 4], r'shape \[N, 3\]'),
    ([[0, 0, 0], [1, 0, 0]], [4], '1 options for 2 poses'),
    ([[0, 0, 0], [1, 0, 0]], [4, 9], '9 is no RoadOption'),
    ([[0, 0, 0], [1, 0, 0]], 'LL', 'sequence of RoadOption'),
    ([[0, 0, 0], ['a', 0, 0]], [4, 4], 'numbers'),
    ([], [], 'shape'),
])
def test_bad_plans_are_refused_naming_the_value(poses, options, message):
    """Refuse NaN, inf, huge, wrong shape, wrong count, unknown options, empty plans."""
    with pytest.raises(ValueError, match=message):
        GlobalPlan(poses, options)


def test_dense_needs_options_and_plans_are_read_only():
    """Refuse dense poses without options; arrays cannot be changed behind the plan's back."""
    with pytest.raises(ValueError, match='both or neither'):
        GlobalPlan([[0, 0, 0], [1, 0, 0]], [4, 4], dense_poses=[[0, 0, 0], [1, 0, 0]])
    plan = GlobalPlan([[0, 0, 7.0], [1, 0, 0]], [4, 4])
    assert plan.poses[0, 2] == pytest.approx(7.0 - 2 * math.pi)
    with pytest.raises(ValueError):
        plan.poses[0, 0] = 3.0
    with pytest.raises(ValueError, match='"poses" and "options"'):
        GlobalPlan.from_dict({'poses': [[0, 0, 0], [1, 0, 0]]})


def test_command_announces_the_turn_holds_it_through_the_junction_then_follows():
    """LEFT from the point before the junction through its exit, then LANEFOLLOW."""
    poses, options = l_route()
    plan = GlobalPlan.from_dense(poses, options)
    # Drive the dense route 0.4 m to the right of the lane centre, as a real car would.
    driven = [(x + 0.4 * math.sin(yaw), y - 0.4 * math.cos(yaw), yaw) for x, y, yaw in poses]
    commands = commands_along(plan, driven)
    names = [c.command for c in commands]
    assert set(names[:100]) == {LEFT}          # approach: the junction entry is the target
    assert set(names[100:110]) == {LEFT}       # inside the junction: held until 4 m
    assert set(names[113:]) == {LF}            # before its exit (reached within 4 m)
    assert [c.progress for c in commands] == sorted(c.progress for c in commands)
    assert commands[-1].progress == len(plan) - 1
    # Before the junction the target is its entry, straight ahead in the vehicle frame.
    first = commands[0]
    assert (first.target_x, first.target_y) == pytest.approx((100.0, 0.0))
    assert first.target_forward == pytest.approx(100.0, abs=0.01)
    assert first.target_left == pytest.approx(0.4, abs=0.01)
    # A right turn gives RIGHT.
    poses, options = l_route(turn=RIGHT)
    right = commands_along(GlobalPlan.from_dense(poses, options), poses)
    assert right[50].command is RIGHT and right[-1].command is LF


def test_target_in_the_vehicle_frame_follows_rep103():
    """Express the target as metres ahead (x) and to the left (y) of the car."""
    plan = GlobalPlan([[0, 0, 0], [0, 10, math.pi / 2], [-5, 10, math.pi]], [4, 4, 4])
    ahead = route_command(plan, 0.0, 0.0, math.pi / 2, progress=0)
    assert (ahead.target_forward, ahead.target_left) == pytest.approx((10.0, 0.0))
    assert ahead.target_distance == pytest.approx(10.0)
    side = route_command(plan, 0.0, 10.0, 0.0, progress=1)
    assert side.target_index == 2
    assert (side.target_forward, side.target_left) == pytest.approx((-5.0, 0.0))
    left = route_command(plan, -5.0, 5.0, -math.pi / 2, progress=1)
    assert (left.target_forward, left.target_left) == pytest.approx((-5.0, 0.0))
    assert route_command(plan, -5.0, 5.0, 0.0, progress=1).target_left == pytest.approx(5.0)


def test_passed_targets_count_even_off_to_the_side_and_lookahead_skips():
    """A target passed 6 m aside is reached; one 30 m off is not; skipped close targets count."""
    plan = GlobalPlan([[0, 0, 0], [50, 0, 0], [100, 0, 0]], [4, 1, 4])
    assert route_command(plan, 51.0, 6.0, 0.0, progress=0).progress == 1
    assert route_command(plan, 49.0, 6.0, 0.0, progress=0).progress == 0
    assert route_command(plan, 51.0, 30.0, 0.0, progress=0).progress == 0
    dense = GlobalPlan([[x, 0, 0] for x in range(0, 100, 5)], [4] * 20)
    # Jumping 30 m ahead: targets within 50 m along the plan are checked, so it catches up.
    assert route_command(dense, 30.5, 0.0, 0.0, progress=0).progress == 6
    # At the goal the target stays the last point.
    end = route_command(plan, 100.0, 0.0, 0.0, progress=1)
    assert end.progress == end.target_index == 2 and end.command is LF


def test_locating_from_scratch_agrees_with_carried_progress():
    """A node that joins mid-route gets the same command as one that followed from the start."""
    poses, options = l_route()
    plan = GlobalPlan.from_dense(poses, options)
    carried = commands_along(plan, poses)
    for i in (10, 90, 105, 112, 150, len(poses) - 1):
        fresh = route_command(plan, *poses[i])
        assert fresh.command == carried[i].command, i
        assert fresh.target_index == carried[i].target_index, i


@pytest.mark.parametrize('pose, progress, message', [
    ((math.nan, 0.0, 0.0), 0, 'x must be a finite number'),
    ((0.0, math.inf, 0.0), 0, 'y must be a finite number'),
    ((0.0, 0.0, '1'), 0, 'yaw must be a finite number'),
    ((0.0, 0.0, 0.0), 5, r'progress must be an index in \[0, 2\]'),
    ((0.0, 0.0, 0.0), -1, 'progress'),
    ((0.0, 0.0, 0.0), 1.0, 'progress'),
])
def test_bad_poses_and_progress_are_refused(pose, progress, message):
    """Refuse non-finite poses and progress values outside the plan."""
    plan = GlobalPlan([[0, 0, 0], [50, 0, 0], [100, 0, 0]], [4, 1, 4])
    with pytest.raises(ValueError, match=message):
        route_command(plan, *pose, progress=progress)
