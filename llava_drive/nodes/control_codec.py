"""
The one place that knows control message types and fields (architecture: Topics).

On the wire: ``carla_msgs/msg/CarlaEgoVehicleControl`` when carla_msgs is importable, else
``sensor_msgs/Joy`` with ``axes = [steer, throttle, brake]``. Everything else deals in
:class:`llava_drive.control.Control` plus a stamp in nanoseconds.

Ackermann output (:class:`AckermannCodec`, ``control_wire: ackermann``) is
``ackermann_msgs/msg/AckermannDriveStamped`` where ackermann_msgs is importable, else
``sensor_msgs/Joy`` with ``axes = [steering_angle, speed, acceleration]``. It goes on
``/carla/<role>/ackermann_cmd_stamped`` (:data:`ACKERMANN_TOPIC`): carla_ackermann_control's
``ackermann_cmd`` carries the unstamped ``AckermannDrive``, and a control must carry the stamp
of its frame.
"""
from dataclasses import dataclass
import math
from typing import Tuple

from llava_drive.config_checks import number_in_range
from llava_drive.control import Control
from llava_drive.nodes.interfaces import ACKERMANN_CMD_LEAF, VEHICLE_CONTROL_CMD_LEAF

try:
    from ackermann_msgs.msg import AckermannDriveStamped
except ImportError:  # not on PyPI; the Joy fallback keeps Ackermann output working
    AckermannDriveStamped = None
try:
    from carla_msgs.msg import CarlaEgoVehicleControl
except ImportError:  # not installable from PyPI; Joy keeps everything working
    CarlaEgoVehicleControl = None
from sensor_msgs.msg import Joy

# Types of vehicle_control_cmd (CARLA's VehicleControl semantics).
WIRE_TYPES = ('auto', 'carla', 'joy')
# What a driving node (expert, policy) may publish: a control, or an Ackermann command.
DRIVE_WIRES = WIRE_TYPES + ('ackermann',)
CONTROL_TOPIC = VEHICLE_CONTROL_CMD_LEAF
ACKERMANN_TOPIC = ACKERMANN_CMD_LEAF


def stamp_to_ns(stamp) -> int:
    """Convert a ``builtin_interfaces/Time`` to integer nanoseconds."""
    return stamp.sec * 1_000_000_000 + stamp.nanosec


def ns_to_stamp(stamp_ns: int, stamp) -> None:
    """Fill a ``builtin_interfaces/Time`` in place from integer nanoseconds."""
    stamp.sec, stamp.nanosec = divmod(int(stamp_ns), 1_000_000_000)


class ControlCodec:
    """Encode and decode control messages of one wire type."""

    topic = CONTROL_TOPIC

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


@dataclass(frozen=True)
class AckermannConfig:
    """
    How a :class:`Control` becomes an Ackermann command.

    :param max_steer_deg: front-wheel angle at ``|steer| = 1`` of the vehicle the policy was
        trained on (about 70 for CARLA's cars, 35 in the embedded simulator)
    :param wheelbase_m: wheelbase of that vehicle (m)
    :param robot_wheelbase_m: wheelbase of the vehicle receiving the command, whose steering
        angle then gives the same curvature ``tan(angle) / wheelbase``; 0 = the same vehicle
    :param target_speed_mps: commanded speed while not braking (m/s)
    :param max_accel_mps2: acceleration at full throttle (m/s^2)
    :param max_decel_mps2: deceleration at full brake (m/s^2)
    :param stop_brake: a brake at or above this commands speed 0
    """

    max_steer_deg: float = 70.0
    wheelbase_m: float = 2.9
    robot_wheelbase_m: float = 0.0
    target_speed_mps: float = 8.0
    max_accel_mps2: float = 3.0
    max_decel_mps2: float = 8.0
    stop_brake: float = 0.5

    def __post_init__(self):
        """Check every field, naming the bad value."""
        number_in_range('max_steer_deg', self.max_steer_deg, 1.0, 89.0)
        number_in_range('wheelbase_m', self.wheelbase_m, 0.1, 20.0)
        if self.robot_wheelbase_m != 0.0:
            number_in_range('robot_wheelbase_m', self.robot_wheelbase_m, 0.1, 20.0)
        number_in_range('target_speed_mps', self.target_speed_mps, 0.0, 100.0)
        number_in_range('max_accel_mps2', self.max_accel_mps2, 0.0, 50.0, low_open=True)
        number_in_range('max_decel_mps2', self.max_decel_mps2, 0.0, 50.0, low_open=True)
        number_in_range('stop_brake', self.stop_brake, 0.0, 1.0, low_open=True)


class AckermannCodec:
    """
    Encode and decode Ackermann commands (steering angle, speed, acceleration).

    ``steering_angle`` follows REP-103 (positive turns left) while CARLA's steer turns right
    when positive: ``angle = -steer * max_steer`` for the same vehicle.

    :param config: the conversion
    """

    topic = ACKERMANN_TOPIC

    def __init__(self, config: AckermannConfig = AckermannConfig()):
        self.config = config
        self.msg_type = AckermannDriveStamped if AckermannDriveStamped is not None else Joy
        self.name = ('ackermann_msgs/msg/AckermannDriveStamped' if self.msg_type is not Joy
                     else 'sensor_msgs/msg/Joy (ackermann_msgs missing: axes [steering_angle, '
                          'speed, acceleration])')

    def steering_angle(self, steer: float) -> float:
        """Return the REP-103 steering angle (rad) for a CARLA steer in [-1, 1]."""
        angle = -steer * math.radians(self.config.max_steer_deg)
        if self.config.robot_wheelbase_m:
            curvature = math.tan(angle) / self.config.wheelbase_m
            angle = math.atan(curvature * self.config.robot_wheelbase_m)
        return angle

    def encode(self, control: Control, stamp_ns: int, frame_id: str = ''):
        """Return the Ackermann command of ``control`` (clamped; NaN brakes) at ``stamp_ns``."""
        c, cfg = control.clamped(), self.config
        braking = c.brake >= cfg.stop_brake or c.hand_brake
        speed = 0.0 if braking else cfg.target_speed_mps * (-1.0 if c.reverse else 1.0)
        acceleration = c.throttle * cfg.max_accel_mps2 - c.brake * cfg.max_decel_mps2
        angle = self.steering_angle(c.steer)
        msg = self.msg_type()
        ns_to_stamp(stamp_ns, msg.header.stamp)
        msg.header.frame_id = frame_id
        if self.msg_type is Joy:
            msg.axes = [float(angle), float(speed), float(acceleration)]
        else:
            msg.drive.steering_angle = float(angle)
            msg.drive.speed = float(speed)
            msg.drive.acceleration = float(acceleration)
        return msg

    def decode(self, msg) -> Tuple[int, Control]:
        """
        Return ``(stamp_ns, Control)`` of an Ackermann command (the inverse of :meth:`encode`).

        :raises ValueError: a Joy with fewer than 3 axes, or a non-finite value
        """
        if isinstance(msg, Joy):
            if len(msg.axes) < 3:
                raise ValueError(f'Ackermann Joy needs axes [steering_angle, speed, '
                                 f'acceleration], got {len(msg.axes)} axes')
            angle, speed, acceleration = (float(v) for v in msg.axes[:3])
        else:
            drive = msg.drive
            angle, speed, acceleration = (float(drive.steering_angle), float(drive.speed),
                                          float(drive.acceleration))
        for name, value in (('steering_angle', angle), ('speed', speed),
                            ('acceleration', acceleration)):
            if not math.isfinite(value):
                raise ValueError(f'Ackermann {name} is not finite: {value}')
        cfg = self.config
        if cfg.robot_wheelbase_m:
            angle = math.atan(math.tan(angle) / cfg.robot_wheelbase_m * cfg.wheelbase_m)
        steer = min(max(-angle / math.radians(cfg.max_steer_deg), -1.0), 1.0)
        throttle = min(max(acceleration / cfg.max_accel_mps2, 0.0), 1.0)
        brake = min(max(-acceleration / cfg.max_decel_mps2, 0.0), 1.0)
        if speed == 0.0 and acceleration >= 0.0:
            throttle, brake = 0.0, 1.0  # "stand still" without a deceleration given
        return stamp_to_ns(msg.header.stamp), Control(steer=steer, throttle=throttle,
                                                      brake=brake, reverse=speed < 0.0)


def driving_codec(wire: str, ackermann: AckermannConfig = AckermannConfig()):
    """
    Return the codec a driving node publishes with: :class:`ControlCodec` or Ackermann.

    :param wire: one of :data:`DRIVE_WIRES`
    :param ackermann: the conversion used when ``wire == 'ackermann'``
    """
    if wire == 'ackermann':
        return AckermannCodec(ackermann)
    return ControlCodec(wire)
