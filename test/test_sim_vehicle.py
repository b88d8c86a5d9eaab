"""Vehicle model: acceleration, braking, CARLA steering sign, NaN safety, reverse."""
import math

from llava_drive.control import Control
from llava_drive.sim.vehicle import Vehicle, VehicleParams, VehicleState
import pytest

DT = 0.05


def run(vehicle, control, seconds):
    """Step ``vehicle`` under a constant control; return the states."""
    return [vehicle.step(control, DT) for _ in range(int(round(seconds / DT)))]


def test_throttle_accelerates_from_rest():
    """Speed rises monotonically under full throttle and stays below the cap."""
    vehicle = Vehicle()
    states = run(vehicle, Control(throttle=1.0), 5.0)
    speeds = [st.speed for st in states]
    assert all(b >= a for a, b in zip(speeds, speeds[1:]))
    assert 8.0 < speeds[-1] < VehicleParams().max_speed_mps
    assert states[-1].x > 20.0 and states[-1].y == pytest.approx(0.0, abs=1e-9)


def test_full_brake_stops_without_rolling_back():
    """From 20 m/s a full brake stops the car within the physics distance, and it stays put."""
    vehicle = Vehicle(state=VehicleState(speed=20.0))
    states = run(vehicle, Control(brake=1.0), 4.0)
    assert states[-1].speed == 0.0
    assert min(st.speed for st in states) >= 0.0
    stop_x = states[-1].x
    # v^2 / (2 a) with a >= 8 m/s^2, plus a step of slack.
    assert stop_x < 20.0 ** 2 / (2 * 8.0) + 20.0 * DT
    assert stop_x > 20.0


def test_positive_steer_turns_right_like_carla():
    """Steer +1 is a right turn: yaw decreases (REP-103 counter-clockwise) and y goes negative."""
    right = Vehicle(state=VehicleState(speed=5.0))
    run(right, Control(steer=0.5, throttle=0.3), 2.0)
    left = Vehicle(state=VehicleState(speed=5.0))
    run(left, Control(steer=-0.5, throttle=0.3), 2.0)
    assert right.state.yaw < -0.1 and right.state.y < -0.5
    assert left.state.yaw > 0.1 and left.state.y > 0.5
    assert right.state.steer_angle < 0 < left.state.steer_angle


def test_steady_turn_radius_matches_bicycle_model():
    """Drive a full-lock circle at low speed with the radius ``wheelbase / tan(max angle)``."""
    params = VehicleParams(steer_time_constant_s=0.0)
    vehicle = Vehicle(params, VehicleState(speed=3.0))
    xs, ys = [], []
    for _ in range(400):
        vehicle.step(Control(steer=-1.0, throttle=0.06), DT)
        rx, ry = vehicle.rear_axle()
        xs.append(rx)
        ys.append(ry)
    expected = params.wheelbase_m / math.tan(math.radians(params.max_steer_deg))
    diameter = max(ys) - min(ys)
    assert diameter / 2 == pytest.approx(expected, rel=0.03)


def test_nan_control_brakes():
    """Treat NaN inputs as full brake and zero throttle: the car slows down and does not turn."""
    vehicle = Vehicle(state=VehicleState(speed=10.0))
    states = run(vehicle, Control(steer=float('nan'), throttle=float('nan'),
                                  brake=float('nan')), 1.0)
    assert states[-1].speed < 10.0 - 7.0
    assert states[-1].yaw == pytest.approx(0.0, abs=1e-9)


def test_out_of_range_control_is_clamped():
    """A throttle of 5 accelerates like a throttle of 1."""
    a = Vehicle()
    b = Vehicle()
    run(a, Control(throttle=5.0), 2.0)
    run(b, Control(throttle=1.0), 2.0)
    assert a.state.speed == pytest.approx(b.state.speed)


def test_reverse_and_hand_brake():
    """Reverse gear drives backwards; the hand brake stops the car."""
    vehicle = Vehicle()
    run(vehicle, Control(throttle=0.5, reverse=True), 2.0)
    assert vehicle.state.speed < -1.0 and vehicle.state.x < -1.0
    rolling = Vehicle(state=VehicleState(speed=6.0))
    run(rolling, Control(hand_brake=True), 2.0)
    assert rolling.state.speed == 0.0


def test_state_reference_is_footprint_centre():
    """Report the footprint centre, half a wheelbase ahead of the rear axle."""
    vehicle = Vehicle(state=VehicleState(x=10.0, y=5.0, yaw=math.pi / 2))
    rx, ry = vehicle.rear_axle()
    assert (rx, ry) == pytest.approx((10.0, 5.0 - 1.45))


@pytest.mark.parametrize('kwargs, name', [({'wheelbase_m': 0.0}, 'wheelbase_m'),
                                          ({'max_steer_deg': 95.0}, 'max_steer_deg'),
                                          ({'mass_kg': float('inf')}, 'mass_kg')])
def test_bad_params_are_rejected(kwargs, name):
    """Reject bad parameters with a message naming the field."""
    with pytest.raises(ValueError, match=name):
        VehicleParams(**kwargs)


def test_bad_dt_is_rejected():
    """Refuse a non-positive time step."""
    with pytest.raises(ValueError, match='dt'):
        Vehicle().step(Control(), 0.0)
