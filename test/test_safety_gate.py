"""Safety gate: every braking rule, every adjustment, precedence, stamps and counters."""
import math

from llava_drive.control import Control, FULL_BRAKE
from llava_drive.policy.safety_gate import GateConfig, SafetyGate
import pytest

MS = 1_000_000  # ns
STEP_NS = 50 * MS


def driving_gate(**config):
    """Return a gate that has seen one image and one good inference at t = 10 s."""
    gate = SafetyGate(GateConfig(**config))
    gate.on_image(10.0, 1000 * MS)
    command = gate.on_inference(1000 * MS, Control(steer=0.1, throttle=0.5), 10.0)
    assert command.reason is None
    return gate


def test_nothing_received_brakes_and_names_why():
    gate = SafetyGate()
    assert gate.command(0.0) == (FULL_BRAKE, 0, 'no_image')
    gate.on_image(1.0, 7 * MS)
    # The first inference is awaited: the last command sent was already a brake.
    assert gate.command(1.1) is None
    assert gate.braking_reason(1.1) == 'no_inference'
    assert gate.command(1.6) == (FULL_BRAKE, 7 * MS, 'stale_image')
    assert gate.interventions == {'no_image': 1, 'stale_image': 1}


def test_the_timer_is_silent_while_outputs_are_fresh():
    gate = driving_gate(steer_smoothing=1.0)
    for now in (10.05, 10.3, 10.5):
        assert gate.command(now) is None
    assert sum(gate.interventions.values()) == 0


def test_stale_image_brakes_after_max_age_with_the_newest_image_stamp():
    gate = driving_gate(max_age_s=0.5)
    gate.on_image(10.2, 1050 * MS)  # a newer frame, inference still on the old one
    assert gate.command(10.5) is None
    # Inference is older than max_age first: its source arrived at 10.0.
    assert gate.command(10.51) == (FULL_BRAKE, 1050 * MS, 'stale_inference')
    assert gate.command(10.71) == (FULL_BRAKE, 1050 * MS, 'stale_image')
    assert gate.interventions == {'stale_inference': 1, 'stale_image': 1}


def test_an_output_computed_from_an_old_image_is_not_used():
    gate = SafetyGate(GateConfig(max_age_s=0.5))
    gate.on_image(20.0, 5 * MS)
    gate.on_image(20.6, 6 * MS)
    late = gate.on_inference(5 * MS, Control(throttle=1.0), now=20.7, source_received=20.0)
    assert late == (FULL_BRAKE, 5 * MS, 'stale_inference')
    fresh = gate.on_inference(6 * MS, Control(throttle=1.0), now=20.8, source_received=20.6)
    assert fresh.reason is None and fresh.control.throttle == 1.0


def test_synchronous_outputs_answer_their_frame_however_long_inference_takes():
    # The world waits for the control: a slow (loaded) inference is not late, so the model's
    # command goes out, and the timer sends nothing the simulator would take for the frame.
    gate = SafetyGate(GateConfig(max_age_s=0.5, synchronous=True))
    gate.on_image(20.0, 5 * MS)
    assert gate.command(25.0) is None
    slow = gate.on_inference(5 * MS, Control(throttle=1.0), now=27.0, source_received=20.0)
    assert slow.reason is None and slow.control.throttle == 1.0 and slow.stamp_ns == 5 * MS
    assert gate.command(40.0) is None
    assert sum(gate.interventions.values()) == 0
    # What does not depend on time still brakes.
    bad = gate.on_inference(5 * MS, Control(steer=math.nan), now=41.0)
    assert bad == (FULL_BRAKE, 5 * MS, 'nan_output')
    assert gate.set_emergency_stop(True) == (FULL_BRAKE, 5 * MS, 'emergency_stop')


@pytest.mark.parametrize('bad', [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize('field', ['steer', 'throttle', 'brake'])
def test_non_finite_outputs_brake_until_a_finite_one_arrives(field, bad):
    gate = driving_gate()
    command = gate.on_inference(1050 * MS, Control(**{field: bad}), 10.05)
    assert command == (FULL_BRAKE, 1050 * MS, 'nan_output')
    assert gate.command(10.1) is None  # that result was the brake for its frame
    assert gate.braking_reason(10.1) == 'nan_output'
    recovered = gate.on_inference(1100 * MS, Control(throttle=0.4), 10.15)
    assert recovered.reason is None and recovered.control.throttle == 0.4
    assert gate.interventions['nan_output'] == 1


def test_emergency_stop_latches_until_released_and_beats_everything_but_disable():
    gate = driving_gate()
    # One brake to send at once, then every output is a brake; the timer stays silent
    # while outputs are fresh (they carry the brake).
    assert gate.set_emergency_stop(True) == (FULL_BRAKE, 1000 * MS, 'emergency_stop')
    assert gate.command(10.1) is None
    assert gate.on_inference(1050 * MS, Control(throttle=1.0), 10.1).reason == 'emergency_stop'
    assert gate.command(20.0).reason == 'emergency_stop'  # even when everything is stale
    assert gate.set_enabled(False) == (FULL_BRAKE, 1000 * MS, 'disabled')
    assert gate.command(20.0).reason == 'disabled'
    assert gate.set_enabled(True) is None
    assert gate.set_emergency_stop(False) is None
    assert gate.command(20.0).reason == 'stale_image'
    gate.on_image(20.0, 2000 * MS)
    assert gate.command(20.01).reason == 'stale_inference'


def test_release_drives_with_the_next_output():
    gate = driving_gate(steer_smoothing=1.0)
    gate.set_emergency_stop(True)
    gate.on_image(10.05, 1050 * MS)
    assert gate.on_inference(1050 * MS, Control(steer=-0.2, throttle=0.7),
                             10.06).reason == 'emergency_stop'
    assert gate.set_emergency_stop(False) is None
    gate.on_image(10.1, 1100 * MS)
    command = gate.on_inference(1100 * MS, Control(steer=-0.2, throttle=0.7), 10.11)
    assert command == (Control(steer=-0.2, throttle=0.7), 1100 * MS, None)


def test_disabled_brakes_and_reenabling_drives_again():
    gate = driving_gate()
    assert gate.set_enabled(False) == (FULL_BRAKE, 1000 * MS, 'disabled')
    assert gate.on_inference(1050 * MS, Control(throttle=0.5), 10.05).reason == 'disabled'
    gate.set_enabled(True)
    assert gate.on_inference(1100 * MS, Control(throttle=0.5), 10.1).reason is None
    assert gate.interventions == {'disabled': 2}


def test_brake_wins_over_throttle_and_a_tiny_brake_is_released():
    gate = driving_gate(brake_threshold=0.1)
    both = gate.on_inference(1050 * MS, Control(throttle=0.8, brake=0.3), 10.05)
    assert both.control.throttle == 0.0 and both.control.brake == 0.3
    assert both.reason == 'throttle_and_brake'
    tiny = gate.on_inference(1100 * MS, Control(throttle=0.6, brake=0.05), 10.1)
    assert tiny.control.throttle == 0.6 and tiny.control.brake == 0.0 and tiny.reason is None
    coast = gate.on_inference(1150 * MS, Control(throttle=0.0, brake=0.5), 10.15)
    assert coast.reason is None and coast.control.brake == 0.5
    assert gate.interventions == {'throttle_and_brake': 1}


def test_out_of_range_values_are_clamped_and_counted():
    gate = driving_gate(steer_rate_limit=0.0, steer_smoothing=1.0)
    command = gate.on_inference(1050 * MS, Control(steer=-3.0, throttle=1.7, brake=-0.2),
                                10.05)
    assert command.control == Control(steer=-1.0, throttle=1.0, brake=0.0)
    assert command.reason == 'out_of_range'
    assert gate.interventions == {'out_of_range': 1}


def test_steering_rate_is_limited_in_stamp_time():
    gate = SafetyGate(GateConfig(steer_rate_limit=2.0, steer_smoothing=1.0))
    gate.on_image(0.0, 0)
    assert gate.on_inference(0, Control(steer=0.0, throttle=0.3), 0.0).control.steer == 0.0
    # 50 ms of stamp time at 2/s: at most 0.1, however little wall time passed.
    command = gate.on_inference(STEP_NS, Control(steer=1.0, throttle=0.3), 0.001)
    assert command.control.steer == pytest.approx(0.1)
    assert command.reason == 'steer_rate_limited'
    command = gate.on_inference(3 * STEP_NS, Control(steer=1.0, throttle=0.3), 0.002)
    assert command.control.steer == pytest.approx(0.3)
    command = gate.on_inference(3 * STEP_NS, Control(steer=-1.0, throttle=0.3), 0.003)
    assert command.control.steer == pytest.approx(0.3)  # no stamp time, no change
    assert gate.interventions['steer_rate_limited'] == 3
    # A long gap allows at most max_age worth of change.
    command = gate.on_inference(100 * STEP_NS, Control(steer=-1.0, throttle=0.3), 0.004)
    assert command.control.steer == pytest.approx(0.3 - 2.0 * 0.5)


def test_steering_is_smoothed_by_an_exponential_moving_average():
    gate = SafetyGate(GateConfig(steer_rate_limit=0.0, steer_smoothing=0.25))
    gate.on_image(0.0, 0)
    steers = [gate.on_inference(i * STEP_NS, Control(steer=s), 0.0).control.steer
              for i, s in enumerate([0.0, 1.0, 1.0, -1.0])]
    assert steers == pytest.approx([0.0, 0.25, 0.4375, 0.078125])
    assert sum(gate.interventions.values()) == 0  # smoothing is filtering, not intervening


def test_after_a_brake_steering_starts_from_the_new_prediction():
    gate = driving_gate(steer_smoothing=0.5, steer_rate_limit=1.0)
    gate.set_emergency_stop(True)
    gate.set_emergency_stop(False)
    command = gate.on_inference(1050 * MS, Control(steer=-0.8, throttle=0.2), 10.06)
    assert command.control.steer == pytest.approx(-0.8)


def test_timer_brakes_never_move_the_steering_state_of_fresh_outputs():
    gate = SafetyGate(GateConfig(steer_rate_limit=1.0, steer_smoothing=1.0))
    gate.on_image(0.0, 0)
    gate.on_inference(0, Control(steer=0.0), 0.0)
    first = gate.on_inference(STEP_NS, Control(steer=1.0), 0.01)
    assert first.control.steer == pytest.approx(0.05)
    assert all(gate.command(0.01 + 0.05 * i) is None for i in range(5))
    second = gate.on_inference(2 * STEP_NS, Control(steer=1.0), 0.3)
    assert second.control.steer == pytest.approx(0.1)


@pytest.mark.parametrize('changes, message', [
    ({'max_age_s': 0.0}, 'max_age_s must be > 0, got 0.0'),
    ({'max_age_s': math.nan}, 'max_age_s must be a finite number, got nan'),
    ({'steer_rate_limit': -1.0}, 'steer_rate_limit must be >= 0'),
    ({'steer_smoothing': 0.0}, r'steer_smoothing must be in \(0, 1\], got 0.0'),
    ({'steer_smoothing': 1.5}, r'steer_smoothing must be in \(0, 1\], got 1.5'),
    ({'brake_threshold': 0.0}, r'brake_threshold must be in \(0, 1\], got 0.0'),
    ({'max_age_s': True}, 'max_age_s must be a finite number, got True'),
    ({'synchronous': 'yes'}, "synchronous must be true or false, got 'yes'"),
])
def test_config_names_the_bad_value(changes, message):
    with pytest.raises(ValueError, match=message):
        GateConfig(**changes)
