"""Expert driver: steering sign, speed control, full routes with and without noise."""
import math

from llava_drive.control import Control, FULL_BRAKE
from llava_drive.expert.driver import ExpertConfig, ExpertDriver
from llava_drive.expert.noise import ExpertNoise, NoiseConfig
from llava_drive.sim.world import SimConfig, Simulator
import numpy as np
import pytest


def arc_path(radius, direction, length=40.0, start=(1.45, 0.0)):
    """Return points of an arc leaving ``start`` along +x; direction +1 left, -1 right."""
    s = np.arange(0.0, length, 1.0)
    if radius == math.inf:
        return [(start[0] + v, start[1]) for v in s]
    angle = s / radius
    return [(start[0] + radius * math.sin(a), start[1] + direction * radius * (1 - math.cos(a)))
            for a in angle]


def run_route(seed, noise=None, length=500.0):
    """Drive one route with the expert (noisy command executed if ``noise``); return stats."""
    sim = Simulator(SimConfig(route_seed=seed, route_length_m=length, randomize=False))
    expert = ExpertDriver()
    lateral = []
    steer_changes = []
    while not sim.done:
        st = sim.state
        clean = expert.control(st.x, st.y, st.yaw, st.speed, sim.waypoints_ahead(40),
                               sim.config.dt)
        executed = noise.perturb(clean, sim.config.dt) if noise else clean
        steer_changes.append(abs(executed.steer - clean.steer))
        result = sim.step(executed)
        lateral.append(result.lateral_error)
        assert sim.time < 200.0
    return sim.summary(), np.array(lateral), np.array(steer_changes)


def test_steer_sign_follows_carla_convention():
    """A path bending left needs a negative (left) steer, bending right a positive one."""
    expert = ExpertDriver()
    left = expert.control(0.0, 0.0, 0.0, 5.0, arc_path(40.0, +1))
    right = expert.control(0.0, 0.0, 0.0, 5.0, arc_path(40.0, -1))
    straight = expert.control(0.0, 0.0, 0.0, 5.0, arc_path(math.inf, 0))
    assert left.steer < -0.02 and right.steer > 0.02
    assert left.steer == pytest.approx(-right.steer, rel=1e-6)
    assert straight.steer == pytest.approx(0.0, abs=1e-9)


def test_steer_matches_pure_pursuit_geometry():
    """On a circle the steer is the circle's wheel angle over the maximum wheel angle."""
    config = ExpertConfig()
    expert = ExpertDriver(config)
    radius = 50.0
    # The rear axle (1.45 m behind the reported position) sits on the circle.
    path = [(radius * math.sin(a), radius * (1 - math.cos(a)))
            for a in np.arange(0.0, 1.0, 0.5 / radius)]
    steer = expert.control(1.45, 0.0, 0.0, 6.0, path).steer
    expected = -math.atan(config.wheelbase_m / radius) / math.radians(config.max_steer_deg)
    assert steer == pytest.approx(expected, rel=0.02)


def test_works_in_any_heading_and_position():
    """Rotate and translate the whole scene: the same command comes out."""
    base = ExpertDriver().control(0.0, 0.0, 0.0, 5.0, arc_path(40.0, +1))
    yaw = 2.3
    c, s = math.cos(yaw), math.sin(yaw)
    moved = [(100 + c * x - s * y, -50 + s * x + c * y) for x, y in arc_path(40.0, +1)]
    turned = ExpertDriver().control(100.0, -50.0, yaw, 5.0, moved)
    assert turned.steer == pytest.approx(base.steer, abs=1e-9)
    assert turned.throttle == pytest.approx(base.throttle, abs=1e-9)


def test_speed_control_accelerates_brakes_and_slows_for_curves():
    """Throttle when slow, brake when far too fast, and a lower target speed in a tight curve."""
    expert = ExpertDriver()
    start = expert.control(0.0, 0.0, 0.0, 0.0, arc_path(math.inf, 0))
    assert start.throttle > 0.3 and start.brake == 0.0
    fast = ExpertDriver().control(0.0, 0.0, 0.0, 20.0, arc_path(math.inf, 0))
    assert fast.brake > 0.3 and fast.throttle == 0.0
    straight = ExpertDriver()
    straight.control(0.0, 0.0, 0.0, 8.0, arc_path(math.inf, 0, 60.0))
    curve = ExpertDriver()
    curve.control(0.0, 0.0, 0.0, 8.0, arc_path(25.0, +1, 60.0))
    assert straight.last_target_speed == pytest.approx(8.0)
    assert curve.last_target_speed < 7.5


def test_stops_at_the_end_of_the_path_and_on_bad_input():
    """Brake with a 2-point path end, an empty path or a NaN pose."""
    expert = ExpertDriver()
    end = expert.control(0.0, 0.0, 0.0, 0.0, [(1.6, 0.0), (2.0, 0.0)])
    assert end.throttle == 0.0 and end.brake > 0.5
    assert ExpertDriver().control(0.0, 0.0, 0.0, 5.0, []) == FULL_BRAKE
    assert ExpertDriver().control(float('nan'), 0.0, 0.0, 5.0, arc_path(40.0, 1)) == FULL_BRAKE
    assert ExpertDriver().control(0.0, 0.0, 0.0, 5.0, [(1.0, float('nan')), (2.0, 0.0)]) \
        == FULL_BRAKE


@pytest.mark.parametrize('kwargs, name', [({'target_speed_mps': -1.0}, 'target_speed_mps'),
                                          ({'max_steer_deg': 0.0}, 'max_steer_deg'),
                                          ({'min_lookahead_m': 20.0}, 'min_lookahead_m'),
                                          ({'max_throttle': 1.5}, 'max_throttle')])
def test_config_errors_name_the_value(kwargs, name):
    """Reject bad configurations with a message naming the field."""
    with pytest.raises(ValueError, match=name):
        ExpertConfig(**kwargs)


def test_completes_ten_routes_without_leaving_the_lane():
    """Drive routes 1..10 to the end: 100% completion, no infraction, tight lane keeping."""
    for seed in range(1, 11):
        summary, lateral, _ = run_route(seed)
        assert summary.done_reason == 'route_finished', (seed, summary.done_reason)
        assert summary.route_completion == 100.0 and summary.driving_score == 100.0
        assert summary.counts == {'route_finished': 1}, (seed, summary.counts)
        assert np.abs(lateral).max() < 0.5, seed
        assert math.sqrt(float(np.mean(lateral ** 2))) < 0.15, seed


def test_recovers_from_injected_noise():
    """With steer noise executed, the car wanders but comes back and never leaves the road."""
    max_lateral = []
    for seed in (21, 22, 23, 24):
        noise = ExpertNoise(NoiseConfig(), seed=seed)
        summary, lateral, changes = run_route(seed, noise, length=300.0)
        assert summary.done_reason == 'route_finished', (seed, summary.done_reason)
        assert summary.outside_lane_m == 0.0 and 'collision_static' not in summary.counts
        assert changes.mean() > 0.02  # the noise really acted
        max_lateral.append(np.abs(lateral).max())
        # Recovered: back near the lane centre at the end of the route.
        assert np.abs(lateral[-20:]).max() < 0.6
    assert max(max_lateral) > 0.3  # it did wander off the centre


def test_noise_is_seeded_and_bounded():
    """The same seed repeats the noise, another seed differs, and steer stays in range."""
    def sequence(seed):
        noise = ExpertNoise(NoiseConfig(pulse_rate_hz=2.0, pulse_magnitude=1.0), seed=seed)
        return [noise.perturb(Control(steer=0.9, throttle=0.4), 0.05) for _ in range(200)]
    a, b, c = sequence(1), sequence(1), sequence(2)
    assert a == b and a != c
    assert all(-1.0 <= cmd.steer <= 1.0 and cmd.throttle == 0.4 for cmd in a)
    with pytest.raises(ValueError, match='ou_sigma'):
        NoiseConfig(ou_sigma=-0.1)
