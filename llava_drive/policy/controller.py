"""
Waypoint controller: predicted path and target speed in, steer/throttle/brake out (pure).

Lateral: pure pursuit on the predicted waypoints. The path starts at the car's reference point
(where the waypoint labels were measured: the odometry pose, CARLA's actor location); the
lookahead circle is drawn around the rear axle, ``rear_axle_offset_m`` behind it, with a
radius that grows with speed; where the path is shorter than the radius its last segment is
extended. Longitudinal: a PID on the target-speed error with anti-windup; a target below
``stop_speed_mps`` brakes with ``stop_brake`` (the TCP/CARLA-agents habit: a low target means
stop, not coast), an overspeed beyond ``brake_deadband_mps`` brakes proportionally.

Conventions as the expert: vehicle frame REP-103 (x ahead, y left); CARLA's steer +1 turns
right, so a path bending left gives a negative steer. Non-finite input gives a full brake and
clears the controller's memory; the caller counts it.
"""
from dataclasses import dataclass, fields
import math
from typing import Optional, Tuple

from llava_drive.config_checks import number_in_range
from llava_drive.control import Control, FULL_BRAKE
from llava_drive.expert.driver import ExpertConfig
import numpy as np


@dataclass
class ControllerConfig:
    """
    Gains and geometry of the waypoint controller (SI units).

    :param wheelbase_m: wheelbase of the driven vehicle
    :param max_steer_deg: wheel angle at ``|steer| = 1``
    :param rear_axle_offset_m: how far the rear axle is behind the reference point
    :param lookahead_time_s: the lookahead distance grows by this times the speed
    :param min_lookahead_m: smallest lookahead distance
    :param max_lookahead_m: largest lookahead distance
    :param kp: throttle (or brake) per m/s of speed error
    :param ki: integral gain per m of accumulated error
    :param kd: derivative gain per m/s^2
    :param integral_limit: anti-windup clamp on the integral (m)
    :param max_throttle: throttle ceiling
    :param brake_deadband_mps: overspeed tolerated before braking
    :param stop_speed_mps: a target speed below this means stop
    :param stop_brake: brake applied when stopping
    """

    # The expert's tracking by default: the policy follows its waypoints the way the expert
    # that drove the labels followed its lane.
    wheelbase_m: float = ExpertConfig.wheelbase_m
    max_steer_deg: float = ExpertConfig.max_steer_deg
    rear_axle_offset_m: float = ExpertConfig.rear_axle_offset_m
    lookahead_time_s: float = ExpertConfig.lookahead_time_s
    min_lookahead_m: float = ExpertConfig.min_lookahead_m
    max_lookahead_m: float = ExpertConfig.max_lookahead_m
    kp: float = ExpertConfig.kp
    ki: float = ExpertConfig.ki
    kd: float = ExpertConfig.kd
    integral_limit: float = ExpertConfig.integral_limit
    max_throttle: float = ExpertConfig.max_throttle
    brake_deadband_mps: float = ExpertConfig.brake_deadband_mps
    stop_speed_mps: float = 0.5
    stop_brake: float = 0.6

    def __post_init__(self):
        """Check every value is finite and in range; errors name the bad one."""
        positive = ('wheelbase_m', 'min_lookahead_m', 'max_lookahead_m')
        for f in fields(self):
            number_in_range(f'ControllerConfig.{f.name}', getattr(self, f.name), 0,
                            low_open=f.name in positive)
        number_in_range('ControllerConfig.max_steer_deg', self.max_steer_deg, 0, 90,
                        low_open=True, high_open=True)
        number_in_range('ControllerConfig.max_throttle', self.max_throttle, 0, 1,
                        low_open=True)
        number_in_range('ControllerConfig.stop_brake', self.stop_brake, 0, 1)
        if self.min_lookahead_m > self.max_lookahead_m:
            raise ValueError(f'ControllerConfig.min_lookahead_m={self.min_lookahead_m} exceeds '
                             f'max_lookahead_m={self.max_lookahead_m}')


@dataclass(frozen=True)
class ControllerOutput:
    """
    What the controller did for one prediction.

    :param control: the command.
    :param lookahead: the pursued point (forward, left) from the reference point, or None.
    :param target_speed: the target speed it followed (m/s; NaN on bad input).
    :param valid: False when the input was unusable (the command is a full brake).
    """

    control: Control
    lookahead: Optional[Tuple[float, float]]
    target_speed: float
    valid: bool = True


class WaypointController:
    """
    Turn predicted waypoints and a target speed into a control; keeps the PID's memory.

    :param config: gains and geometry (defaults when None).
    """

    def __init__(self, config: Optional[ControllerConfig] = None):
        """Create the controller."""
        self.config = config or ControllerConfig()
        self.reset()

    def reset(self):
        """Clear the speed controller's memory (a new episode)."""
        self._integral = 0.0
        self._last_error: Optional[float] = None

    def control(self, waypoints, target_speed: float, speed: float,
                dt: float = 0.05) -> ControllerOutput:
        """
        Return the control for one prediction.

        :param waypoints: ``[K, 2]`` future positions (forward, left) in m from the car's
            reference point, nearest first
        :param target_speed: the predicted target speed (m/s)
        :param speed: the current speed (m/s)
        :param dt: time since the previous call (s), for the PID
        """
        path = np.asarray(waypoints, dtype=np.float64)
        usable = (path.ndim == 2 and path.shape[1] == 2 and len(path) >= 1
                  and np.isfinite(path).all() and math.isfinite(target_speed)
                  and math.isfinite(speed) and math.isfinite(dt) and dt > 0)
        if not usable:
            self.reset()
            return ControllerOutput(FULL_BRAKE, None, math.nan, valid=False)
        steer, lookahead = self._steer(path, max(speed, 0.0))
        throttle, brake = self._speed(max(target_speed, 0.0), speed, dt)
        return ControllerOutput(Control(steer=steer, throttle=throttle, brake=brake).clamped(),
                                lookahead, float(target_speed))

    def _steer(self, path: np.ndarray, speed: float):
        cfg = self.config
        # The path from the rear axle: the reference point first, then the waypoints.
        points = np.vstack([[0.0, 0.0], path]) + [cfg.rear_axle_offset_m, 0.0]
        radius = min(cfg.max_lookahead_m, cfg.min_lookahead_m + cfg.lookahead_time_s * speed)
        distance = np.hypot(points[:, 0], points[:, 1])
        beyond = np.flatnonzero(distance >= radius)
        if len(beyond) == 0:
            # Extend the last segment to the circle (a short prediction at low speed).
            a, b = points[-2], points[-1]
            goal = _circle_crossing(a, b, radius, extend=True)
        else:
            i = beyond[0]
            goal = points[0] if i == 0 else _circle_crossing(points[i - 1], points[i], radius)
        lookahead = (float(goal[0] - cfg.rear_axle_offset_m), float(goal[1]))
        distance2 = float(goal @ goal)
        if distance2 < 1e-6:
            return 0.0, lookahead
        wheel_angle = math.atan(cfg.wheelbase_m * 2.0 * float(goal[1]) / distance2)
        # CARLA: steer +1 is a right turn, a negative wheel angle in REP-103.
        return max(-1.0, min(1.0, -wheel_angle / math.radians(cfg.max_steer_deg))), lookahead

    def _speed(self, target: float, speed: float, dt: float):
        cfg = self.config
        if target < cfg.stop_speed_mps:
            self.reset()
            return 0.0, cfg.stop_brake
        error = target - speed
        self._integral = max(-cfg.integral_limit,
                             min(cfg.integral_limit, self._integral + error * dt))
        derivative = 0.0 if self._last_error is None else (error - self._last_error) / dt
        self._last_error = error
        command = cfg.kp * error + cfg.ki * self._integral + cfg.kd * derivative
        if command >= 0.0:
            return min(command, cfg.max_throttle), 0.0
        if error < -cfg.brake_deadband_mps:
            return 0.0, min(1.0, -command)
        return 0.0, 0.0


def _circle_crossing(a: np.ndarray, b: np.ndarray, radius: float,
                     extend: bool = False) -> np.ndarray:
    """
    Return where segment a->b (or its extension) meets the circle of ``radius`` at the origin.

    :param a: segment start (inside the circle)
    :param b: segment end (outside, or inside with ``extend``)
    :param radius: circle radius
    :param extend: follow the segment's line beyond b
    """
    direction = b - a
    length2 = float(direction @ direction)
    if length2 < 1e-12:
        return b if not extend or float(b @ b) > 1e-12 else np.array([radius, 0.0])
    # |a + t d| = r  ->  t^2 |d|^2 + 2 t a.d + |a|^2 - r^2 = 0, the root with t >= 0.
    half_b = float(a @ direction)
    c = float(a @ a) - radius * radius
    t = (-half_b + math.sqrt(max(half_b * half_b - length2 * c, 0.0))) / length2
    return a + (t if extend else min(max(t, 0.0), 1.0)) * direction
