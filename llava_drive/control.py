"""Vehicle control as plain data, with CARLA VehicleControl ranges (no ROS imports)."""
from dataclasses import dataclass
import math
from typing import Optional

STEER_RANGE = (-1.0, 1.0)
THROTTLE_RANGE = (0.0, 1.0)
BRAKE_RANGE = (0.0, 1.0)


@dataclass(frozen=True)
class Control:
    """One control command: steer in [-1, 1], throttle and brake in [0, 1]."""

    steer: float = 0.0
    throttle: float = 0.0
    brake: float = 0.0
    hand_brake: bool = False
    reverse: bool = False

    def as_array(self):
        """Return ``(steer, throttle, brake)``, the action order used everywhere."""
        return (self.steer, self.throttle, self.brake)

    def problem(self) -> Optional[str]:
        """Return why this control is unusable as a label (``'nan_control'`` ...), or None."""
        values = self.as_array()
        if not all(math.isfinite(v) for v in values):
            return 'nan_control'
        ranges = (STEER_RANGE, THROTTLE_RANGE, BRAKE_RANGE)
        if any(not lo <= v <= hi for v, (lo, hi) in zip(values, ranges)):
            return 'control_out_of_range'
        return None

    def clamped(self) -> 'Control':
        """Return a copy with every field inside its range (NaN becomes 0, brake 1)."""
        def clamp(value, lo, hi, nan_value):
            return nan_value if not math.isfinite(value) else min(hi, max(lo, value))
        return Control(
            steer=clamp(self.steer, *STEER_RANGE, 0.0),
            throttle=clamp(self.throttle, *THROTTLE_RANGE, 0.0),
            brake=clamp(self.brake, *BRAKE_RANGE, 1.0),
            hand_brake=self.hand_brake,
            reverse=self.reverse,
        )


FULL_BRAKE = Control(steer=0.0, throttle=0.0, brake=1.0)
