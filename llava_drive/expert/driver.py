"""
Expert driver: pure pursuit on the planned lane path plus a PID speed controller.

Pure logic with no ROS and no simulator imports. Its inputs are exactly what a ROS node gets
from ``nav_msgs/Odometry`` (pose of the vehicle reference point, heading, speed) and
``nav_msgs/Path`` (lane-centre waypoints in the map frame), so the same code drives the
embedded simulator and CARLA through carla_ros_bridge.

Conventions: REP-103 map frame, yaw counter-clockwise. The output follows CARLA: steer +1
turns **right**, so a path bending left (positive curvature) gives a negative steer.
The pose is taken as the footprint centre (CARLA's actor location); pure pursuit works at the
rear axle, ``rear_axle_offset_m`` behind it.
"""
from dataclasses import dataclass, fields
import math
from typing import Optional, Sequence, Tuple

from llava_drive.config_checks import number_in_range
from llava_drive.control import Control, FULL_BRAKE
import numpy as np


@dataclass
class ExpertConfig:
    """
    Expert parameters (SI units).

    :param target_speed_mps: cruise speed on straights
    :param max_lateral_accel_mps2: curve speed limit ``sqrt(a / curvature)``
    :param comfort_decel_mps2: deceleration used to slow for curves ahead and for the path end
    :param wheelbase_m: wheelbase of the driven vehicle
    :param max_steer_deg: wheel angle at ``|steer| = 1`` (35 in the embedded simulator; about
        70 for most CARLA cars)
    :param rear_axle_offset_m: how far the rear axle is behind the reported position
    :param lookahead_time_s: lookahead distance grows by this times the speed
    :param min_lookahead_m: smallest lookahead distance
    :param max_lookahead_m: largest lookahead distance
    :param kp: proportional gain, (throttle or brake) per m/s of speed error
    :param ki: integral gain per m of accumulated error
    :param kd: derivative gain per m/s^2
    :param integral_limit: anti-windup clamp on the integral term (m)
    :param max_throttle: throttle ceiling
    :param brake_deadband_mps: overspeed tolerated before braking
    :param stop_margin_m: stop this far before the last waypoint
    """

    target_speed_mps: float = 8.0
    max_lateral_accel_mps2: float = 2.0
    comfort_decel_mps2: float = 2.5
    wheelbase_m: float = 2.9
    max_steer_deg: float = 35.0
    rear_axle_offset_m: float = 1.45
    lookahead_time_s: float = 0.6
    min_lookahead_m: float = 4.0
    max_lookahead_m: float = 15.0
    kp: float = 0.35
    ki: float = 0.05
    kd: float = 0.0
    integral_limit: float = 10.0
    max_throttle: float = 0.75
    brake_deadband_mps: float = 0.3
    stop_margin_m: float = 2.0

    def __post_init__(self):
        """Check every value is finite and in range (all >= 0, some > 0)."""
        positive = ('max_lateral_accel_mps2', 'comfort_decel_mps2', 'wheelbase_m',
                    'min_lookahead_m')
        for f in fields(self):
            number_in_range(f'ExpertConfig.{f.name}', getattr(self, f.name), 0,
                            low_open=f.name in positive)
        number_in_range('ExpertConfig.max_steer_deg', self.max_steer_deg, 0, 90,
                        low_open=True, high_open=True)
        number_in_range('ExpertConfig.max_throttle', self.max_throttle, 0, 1, low_open=True)
        if self.min_lookahead_m > self.max_lookahead_m:
            raise ValueError(f'ExpertConfig.min_lookahead_m={self.min_lookahead_m} exceeds '
                             f'max_lookahead_m={self.max_lookahead_m}')


def path_curvatures(points: np.ndarray) -> np.ndarray:
    """
    Return the unsigned curvature at the interior vertices of a polyline (Menger formula).

    :param points: ``(N, 2)`` polyline, N >= 3
    :return: ``(N - 2,)`` curvatures in 1/m
    """
    a, b, c = points[:-2], points[1:-1], points[2:]
    ab = np.linalg.norm(b - a, axis=1)
    bc = np.linalg.norm(c - b, axis=1)
    ca = np.linalg.norm(a - c, axis=1)
    cross = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    denominator = ab * bc * ca
    out = np.zeros(len(a))
    valid = denominator > 1e-9
    out[valid] = 2.0 * np.abs(cross[valid]) / denominator[valid]
    return out


class ExpertDriver:
    """
    Follow a lane path with pure pursuit and hold a curve-aware target speed with a PID.

    The driver keeps a little state (PID integral, last error); call :meth:`reset` between
    episodes.

    :param config: parameters
    """

    def __init__(self, config: Optional[ExpertConfig] = None):
        """Create the driver."""
        self.config = config or ExpertConfig()
        self.reset()

    def reset(self):
        """Clear the speed controller's memory."""
        self._integral = 0.0
        self._last_error: Optional[float] = None
        self.last_target_speed = 0.0
        self.last_lookahead_point: Optional[Tuple[float, float]] = None

    def control(self, x: float, y: float, yaw: float, speed: float,
                waypoints_xy: Sequence[Sequence[float]], dt: float = 0.05) -> Control:
        """
        Return the command for the current pose and path.

        :param x: vehicle position x in the map frame (m)
        :param y: vehicle position y in the map frame (m)
        :param yaw: heading (rad, counter-clockwise)
        :param speed: forward speed (m/s)
        :param waypoints_xy: lane-centre path ahead, ``[(x, y), ...]`` in the map frame (extra
            columns such as yaw are ignored); it may start behind the car
        :param dt: time since the previous call (for the PID), s
        :return: the control, clamped to CARLA ranges; a full brake when the input is unusable
        """
        cfg = self.config
        if not all(math.isfinite(v) for v in (x, y, yaw, speed)) or len(waypoints_xy) < 2:
            self.reset()
            return FULL_BRAKE
        path = np.asarray(waypoints_xy, dtype=float)[:, :2]
        if not np.isfinite(path).all():
            self.reset()
            return FULL_BRAKE
        cos_yaw, sin_yaw = math.cos(yaw), math.sin(yaw)
        rear_x = x - cfg.rear_axle_offset_m * cos_yaw
        rear_y = y - cfg.rear_axle_offset_m * sin_yaw
        # Path in the rear-axle frame: forward ``fx``, left ``fy``.
        dx, dy = path[:, 0] - rear_x, path[:, 1] - rear_y
        fx = cos_yaw * dx + sin_yaw * dy
        fy = -sin_yaw * dx + cos_yaw * dy
        local = np.stack((fx, fy), axis=1)
        nearest = int(np.argmin(fx * fx + fy * fy))
        ahead = local[nearest:]
        seg = np.linalg.norm(np.diff(ahead, axis=0), axis=1)
        remaining = float(seg.sum())

        steer = self._steer(ahead, max(speed, 0.0))
        target = self._target_speed(ahead, seg, remaining)
        throttle, brake = self._speed_control(target, speed, dt)
        return Control(steer=steer, throttle=throttle, brake=brake).clamped()

    def _steer(self, ahead: np.ndarray, speed: float) -> float:
        cfg = self.config
        lookahead = min(cfg.max_lookahead_m, cfg.min_lookahead_m + cfg.lookahead_time_s * speed)
        dist = np.hypot(ahead[:, 0], ahead[:, 1])
        beyond = np.nonzero(dist >= lookahead)[0]
        if len(beyond) == 0:
            goal = ahead[-1]
        elif beyond[0] == 0:
            goal = ahead[0]
        else:
            # Interpolate where the path crosses the lookahead circle.
            i = beyond[0]
            d0, d1 = dist[i - 1], dist[i]
            t = (lookahead - d0) / (d1 - d0) if d1 > d0 else 1.0
            goal = ahead[i - 1] + t * (ahead[i] - ahead[i - 1])
        self.last_lookahead_point = (float(goal[0]), float(goal[1]))
        distance2 = float(goal[0] ** 2 + goal[1] ** 2)
        if distance2 < 1e-6:
            return 0.0
        curvature = 2.0 * float(goal[1]) / distance2
        wheel_angle = math.atan(cfg.wheelbase_m * curvature)
        # CARLA: steer +1 is a right turn, i.e. a negative wheel angle in REP-103.
        return max(-1.0, min(1.0, -wheel_angle / math.radians(cfg.max_steer_deg)))

    def _target_speed(self, ahead: np.ndarray, seg: np.ndarray, remaining: float) -> float:
        cfg = self.config
        target = cfg.target_speed_mps
        if len(ahead) >= 5:
            # Sample the path every ~3 m so the curvature estimate is not noise from 1 m steps.
            arc = np.concatenate(([0.0], np.cumsum(seg)))
            step = max(1, int(round(3.0 / max(1e-3, float(np.median(seg))))))
            coarse = ahead[::step]
            if len(coarse) >= 3:
                curvature = path_curvatures(coarse)
                # Distance to where each curvature estimate starts (its first sample).
                at = arc[::step][:-2]
                # Slow down early enough: v^2 = v_curve^2 + 2 a d.
                v_curve = np.sqrt(cfg.max_lateral_accel_mps2 / np.maximum(curvature, 1e-6))
                allowed = np.sqrt(v_curve ** 2 + 2.0 * cfg.comfort_decel_mps2 * at)
                target = min(target, float(allowed.min()))
        to_stop = max(0.0, remaining - cfg.stop_margin_m)
        target = min(target, math.sqrt(2.0 * cfg.comfort_decel_mps2 * to_stop))
        self.last_target_speed = target
        return target

    def _speed_control(self, target: float, speed: float, dt: float) -> Tuple[float, float]:
        cfg = self.config
        error = target - speed
        if target < 0.05 and speed < 0.3:
            self._integral = 0.0
            return 0.0, 1.0  # hold still at the end of the path
        self._integral = max(-cfg.integral_limit,
                             min(cfg.integral_limit, self._integral + error * max(dt, 0.0)))
        derivative = 0.0
        if self._last_error is not None and dt > 0:
            derivative = (error - self._last_error) / dt
        self._last_error = error
        command = cfg.kp * error + cfg.ki * self._integral + cfg.kd * derivative
        if command >= 0:
            return min(cfg.max_throttle, command), 0.0
        if error > -cfg.brake_deadband_mps:
            return 0.0, 0.0  # coast: drag alone slows a little overspeed
        return 0.0, min(1.0, -command)
