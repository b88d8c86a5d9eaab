"""Control codec: the only code that touches control message fields."""
from llava_drive.control import Control, FULL_BRAKE
from llava_drive.nodes.control_codec import CarlaEgoVehicleControl, ControlCodec
import pytest
from sensor_msgs.msg import Joy


def test_round_trip_keeps_values_and_stamp():
    codec = ControlCodec('auto')
    msg = codec.encode(Control(steer=-0.25, throttle=0.5, brake=0.0, reverse=True),
                       12_345_000_001, frame_id='ego')
    assert msg.header.stamp.sec == 12 and msg.header.stamp.nanosec == 345_000_001
    stamp_ns, control = codec.decode(msg)
    assert stamp_ns == 12_345_000_001
    assert control == Control(steer=-0.25, throttle=0.5, brake=0.0, reverse=True)


def test_joy_fallback_layout_is_steer_throttle_brake():
    msg = ControlCodec('joy').encode(Control(steer=0.5, throttle=0.25, brake=0.0), 0)
    assert isinstance(msg, Joy) and list(msg.axes) == [0.5, 0.25, 0.0]


def test_short_joy_is_a_clear_error():
    with pytest.raises(ValueError, match='axes'):
        ControlCodec('joy').decode(Joy(axes=[0.1]))


def test_unknown_or_unavailable_wire_type_is_refused():
    with pytest.raises(ValueError, match='one of'):
        ControlCodec('ackermann')
    if CarlaEgoVehicleControl is None:
        with pytest.raises(ValueError, match='carla_msgs'):
            ControlCodec('carla')


def test_control_clamping_and_problems():
    assert Control(steer=2.0).problem() == 'control_out_of_range'
    assert Control(steer=float('nan')).clamped() == Control(steer=0.0)
    assert Control(brake=float('nan')).clamped().brake == 1.0
    assert FULL_BRAKE.problem() is None
