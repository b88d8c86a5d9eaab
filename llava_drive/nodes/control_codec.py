"""
The one place that knows control message types and fields (architecture: Topics).

On the wire: ``carla_msgs/msg/CarlaEgoVehicleControl`` when carla_msgs is importable, else
``sensor_msgs/Joy`` with ``axes = [steer, throttle, brake]``. Everything else deals in
:class:`llava_drive.control.Control` plus a stamp in nanoseconds.
"""
from typing import Tuple

from llava_drive.control import Control

try:
    from carla_msgs.msg import CarlaEgoVehicleControl
except ImportError:  # not installable from PyPI; Joy keeps everything working
    CarlaEgoVehicleControl = None
from sensor_msgs.msg import Joy

WIRE_TYPES = ('auto', 'carla', 'joy')


def stamp_to_ns(stamp) -> int:
    """Convert a ``builtin_interfaces/Time`` to integer nanoseconds."""
    return stamp.sec * 1_000_000_000 + stamp.nanosec


def ns_to_stamp(stamp_ns: int, stamp) -> None:
    """Fill a ``builtin_interfaces/Time`` in place from integer nanoseconds."""
    stamp.sec, stamp.nanosec = divmod(int(stamp_ns), 1_000_000_000)


class ControlCodec:
    """Encode and decode control messages of one wire type."""

    def __init__(self, wire: str = 'auto'):
        """
        Pick the wire type.

        :param wire: ``carla`` (needs carla_msgs), ``joy``, or ``auto`` (carla if importable).
        """
        if wire not in WIRE_TYPES:
            raise ValueError(f'control wire type must be one of {WIRE_TYPES}, got {wire!r}')
        if wire == 'carla' and CarlaEgoVehicleControl is None:
            raise ValueError('control wire type "carla" needs carla_msgs, which is not '
                             'importable here: source the carla-ros-bridge workspace or use "joy"')
        use_carla = wire == 'carla' or (wire == 'auto' and CarlaEgoVehicleControl is not None)
        self.msg_type = CarlaEgoVehicleControl if use_carla else Joy
        self.name = 'carla_msgs/msg/CarlaEgoVehicleControl' if use_carla else 'sensor_msgs/msg/Joy'

    def encode(self, control: Control, stamp_ns: int, frame_id: str = ''):
        """Return a message carrying ``control`` stamped ``stamp_ns``."""
        msg = self.msg_type()
        ns_to_stamp(stamp_ns, msg.header.stamp)
        msg.header.frame_id = frame_id
        if self.msg_type is Joy:
            msg.axes = [float(v) for v in control.as_array()]
            msg.buttons = [int(control.hand_brake), int(control.reverse)]
        else:
            msg.steer = float(control.steer)
            msg.throttle = float(control.throttle)
            msg.brake = float(control.brake)
            msg.hand_brake = bool(control.hand_brake)
            msg.reverse = bool(control.reverse)
        return msg

    def decode(self, msg) -> Tuple[int, Control]:
        """Return ``(stamp_ns, Control)``; a Joy with fewer than 3 axes raises ValueError."""
        stamp_ns = stamp_to_ns(msg.header.stamp)
        if isinstance(msg, Joy):
            if len(msg.axes) < 3:
                raise ValueError(f'Joy control needs axes [steer, throttle, brake], '
                                 f'got {len(msg.axes)} axes')
            buttons = list(msg.buttons) + [0, 0]
            return stamp_ns, Control(steer=float(msg.axes[0]), throttle=float(msg.axes[1]),
                                     brake=float(msg.axes[2]), hand_brake=bool(buttons[0]),
                                     reverse=bool(buttons[1]))
        return stamp_ns, Control(steer=float(msg.steer), throttle=float(msg.throttle),
                                 brake=float(msg.brake), hand_brake=bool(msg.hand_brake),
                                 reverse=bool(msg.reverse))
