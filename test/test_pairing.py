"""Pairing frames with the control in effect at their stamp (pure logic)."""
import math

from llava_drive.control import Control
from llava_drive.recording.pairing import Pairer, PairingConfig
import pytest

MS = 1_000_000


def test_control_after_frame_pairs_on_arrival():
    pairer = Pairer()
    assert pairer.add_frame(100 * MS, 'f1') == []
    pairs = pairer.add_control(100 * MS, Control(steer=0.2, throttle=0.5))
    assert [(p.stamp_ns, p.frame, p.control.steer) for p in pairs] == [(100 * MS, 'f1', 0.2)]
    assert pairer.pending == 0


def test_control_before_frame_pairs_with_newest_earlier_control():
    pairer = Pairer()
    pairer.add_control(90 * MS, Control(steer=-0.1))
    pairer.add_control(95 * MS, Control(steer=0.3))
    pairs = pairer.add_frame(100 * MS, 'f')
    assert pairs == []  # waits: a control for 100 ms may still come
    pairs = pairer.add_control(150 * MS, Control(steer=0.9))
    assert len(pairs) == 1 and pairs[0].control.steer == 0.3


def test_control_too_old_is_rejected_and_counted():
    pairer = Pairer(PairingConfig(max_control_age_ns=50 * MS))
    pairer.add_control(0, Control())
    pairer.add_frame(200 * MS, 'late')
    assert pairer.add_control(300 * MS, Control()) == []
    assert pairer.rejected['control_too_old'] == 1


def test_duplicate_and_backwards_frame_stamps():
    pairer = Pairer()
    pairer.add_frame(100 * MS, 'a')
    pairer.add_frame(100 * MS, 'dup')
    pairer.add_frame(50 * MS, 'back')
    assert pairer.rejected == {'duplicate_stamp': 1, 'backwards_stamp': 1}
    assert [p.frame for p in pairer.add_control(100 * MS, Control())] == ['a']


@pytest.mark.parametrize('control,reason', [
    (Control(steer=math.nan), 'nan_control'),
    (Control(throttle=math.inf), 'nan_control'),
    (Control(steer=1.5), 'control_out_of_range'),
    (Control(brake=-0.1), 'control_out_of_range'),
])
def test_bad_controls_are_not_labels(control, reason):
    pairer = Pairer()
    pairer.add_control(90 * MS, Control(steer=0.1))
    pairer.add_frame(100 * MS, 'f')
    assert pairer.add_control(100 * MS, control) == []
    assert pairer.rejected == {reason: 1, 'invalid_label': 1}
    # the frame was not paired with the older control either; the next frame is fine
    pairer.add_frame(150 * MS, 'g')
    assert [p.frame for p in pairer.add_control(150 * MS, Control())] == ['g']


def test_expire_settles_frames_whose_control_never_came():
    pairer = Pairer(PairingConfig(max_control_age_ns=100 * MS))
    pairer.add_frame(0, 'orphan')
    assert pairer.expire(50 * MS) == []
    assert pairer.expire(200 * MS) == []
    assert pairer.rejected['no_control'] == 1 and pairer.pending == 0


def test_flush_pairs_what_it_can():
    pairer = Pairer()
    pairer.add_control(0, Control(throttle=1.0))
    pairer.add_frame(10 * MS, 'x')
    assert [p.frame for p in pairer.flush()] == ['x']


def test_queue_overflow_is_counted():
    pairer = Pairer(PairingConfig(max_pending=3))
    for i in range(5):
        pairer.add_frame(i * MS, i)
    assert pairer.pending == 3 and pairer.rejected['queue_overflow'] == 2


def test_config_validation_names_the_value():
    with pytest.raises(ValueError, match='max_pending'):
        PairingConfig(max_pending=0)
