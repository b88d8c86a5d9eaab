"""Procedural routes: determinism, curve geometry, projection, parked cars."""
import math

from llava_drive.nodes.interfaces import FIRST_EVALUATION_SEED
from llava_drive.sim.road import Route, RouteConfig, wrap_angle
import numpy as np
import pytest


def test_same_seed_same_route_and_different_seeds_differ():
    """Generate one route twice from a seed, and a different route from another seed."""
    a = Route.generate(7)
    b = Route.generate(7)
    c = Route.generate(8)
    np.testing.assert_array_equal(a.points, b.points)
    assert a.segments == b.segments
    assert [car.x for car in a.parked_cars] == [car.x for car in b.parked_cars]
    assert a.points.shape != c.points.shape or not np.allclose(a.points, c.points)


@pytest.mark.parametrize('seed', list(range(1, 13)) + [FIRST_EVALUATION_SEED, 150])
def test_curves_both_ways_with_radius_at_least_30m(seed):
    """Have left and right curves, none tighter than 30 m, in the sampled points too."""
    route = Route.generate(seed)
    curves = [seg for seg in route.driven_segments() if seg.curvature != 0.0]
    assert {seg.direction for seg in curves} == {'left', 'right'}
    assert min(seg.radius for seg in curves) >= 30.0 - 1e-9
    # Independent check on the samples: heading change per metre is at most 1/30 rad.
    pts = route.points
    dyaw = wrap_angle(np.diff(pts[:, 2]))
    ds = np.diff(pts[:, 3])
    assert np.all(np.abs(dyaw / ds) <= 1.0 / 30.0 + 1e-6)
    assert np.abs(dyaw).max() > 1.0 / 130.0  # it does curve


def test_length_spacing_and_start_pose():
    """Sample every metre from the lead-in to the lead-out, with s = 0 at the origin."""
    config = RouteConfig(length_m=450.0)
    route = Route.generate(3, config)
    pts = route.points
    assert route.length == 450.0
    assert math.isclose(sum(seg.length for seg in route.driven_segments()), 450.0)
    assert pts[0, 3] == -config.lead_in_m
    assert pts[-1, 3] == pytest.approx(450.0 + config.lead_out_m, abs=1.0)
    steps = np.hypot(np.diff(pts[:, 0]), np.diff(pts[:, 1]))
    assert np.allclose(steps, 1.0, atol=1e-3)
    x, y, yaw = route.pose_at(0.0)
    assert (x, y, yaw) == pytest.approx((0.0, 0.0, 0.0), abs=1e-9)


def test_road_never_comes_back_near_itself():
    """Keep parts of the road that are far apart along s far apart in space."""
    for seed in (1, 2, 3, 4, 5):
        pts = Route.generate(seed).points[::5]
        d = np.hypot(pts[:, None, 0] - pts[None, :, 0], pts[:, None, 1] - pts[None, :, 1])
        ds = np.abs(pts[:, None, 3] - pts[None, :, 3])
        assert d[ds > 60.0].min() > 30.0


@pytest.mark.parametrize('s, lateral', [(0.0, -1.75), (37.3, 0.4), (123.4, -3.0),
                                        (250.0, 2.2), (499.0, -1.75)])
def test_projection_recovers_arc_length_lateral_and_heading(s, lateral):
    """Project a point placed at ``(s, lateral)`` back onto the route, with and without a hint."""
    route = Route.generate(11)
    x, y, yaw = route.pose_at(s, lateral)
    proj = route.project(x, y)
    assert proj.s == pytest.approx(s, abs=0.02)
    assert proj.lateral == pytest.approx(lateral, abs=0.02)
    assert proj.distance == pytest.approx(abs(lateral), abs=0.02)
    assert proj.heading_error(yaw + 0.1) == pytest.approx(0.1, abs=0.01)
    hinted = route.project(x, y, hint=max(0, proj.index - 20))
    assert hinted.s == pytest.approx(proj.s) and hinted.lateral == pytest.approx(proj.lateral)


def test_projection_sign_convention_and_ends():
    """Call points left of the road positive, right negative; extrapolate past the ends."""
    route = Route.generate(2)
    assert route.project(10.0, 2.0).lateral == pytest.approx(2.0)
    assert route.project(10.0, -1.0).lateral == pytest.approx(-1.0)
    first = route.points[0]
    before = route.project(first[0] - 5.0 * math.cos(first[2]),
                           first[1] - 5.0 * math.sin(first[2]))
    assert before.s == pytest.approx(first[3] - 5.0, abs=1e-6)
    assert route.right_lane_offset == -0.5 * route.lane_width


def test_poses_at_matches_pose_at():
    """Vectorised poses equal the scalar ones."""
    route = Route.generate(4)
    s_values = np.array([-3.0, 0.0, 12.25, 333.3, 480.9])
    rows = route.poses_at(s_values, -1.75)
    for s, row in zip(s_values, rows):
        assert tuple(row) == pytest.approx(route.pose_at(s, -1.75))


def test_parked_cars_stand_outside_the_lanes():
    """Place parked cars on the shoulders, clear of both lanes, and none with obstacles off."""
    route = Route.generate(5)
    assert len(route.parked_cars) >= 3
    for car in route.parked_cars:
        proj = route.project(car.x, car.y)
        assert abs(proj.lateral) - 0.5 * car.width > route.lane_width + 0.2
        assert car.s > 20.0
    assert Route.generate(5, RouteConfig(parked_cars=False)).parked_cars == []


def test_trees_stand_in_the_grass_away_from_every_part_of_the_road():
    """Scatter trees on both sides, none closer than 2 m to the sidewalk's outer edge."""
    route = Route.generate(6)
    config = route.config
    outer = config.lane_width_m + config.shoulder_width_m + config.sidewalk_width_m
    assert len(route.trees) > 30
    sides = set()
    for tree in route.trees:
        proj = route.project(tree.x, tree.y)
        assert proj.distance >= outer + 2.0 - 1e-6
        sides.add(proj.lateral > 0)
    assert sides == {True, False}
    assert Route.generate(6, RouteConfig(trees=False)).trees == []


@pytest.mark.parametrize('kwargs, name', [({'length_m': -5.0}, 'length_m'),
                                          ({'min_radius_m': 5.0}, 'min_radius_m'),
                                          ({'min_turn_deg': 80.0}, 'min_turn_deg'),
                                          ({'spacing_m': float('nan')}, 'spacing_m')])
def test_config_errors_name_the_value(kwargs, name):
    """Reject bad configurations with a message naming the field."""
    with pytest.raises(ValueError, match=name):
        RouteConfig(**kwargs)


def test_bad_seed_is_rejected():
    """Reject a negative or non-integer seed."""
    for seed in (-1, 1.5, 'a'):
        with pytest.raises(ValueError, match='seed'):
            Route.generate(seed)
