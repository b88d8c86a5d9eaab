"""
Vehicle model: kinematic bicycle with simple longitudinal dynamics, CARLA control semantics.

Control follows CARLA ``VehicleControl``: throttle and brake in ``[0, 1]``, steer in
``[-1, 1]`` where **+1 turns right**. In REP-103 (yaw counter-clockwise) a right turn lowers
the yaw, so the front-wheel angle is ``delta = -steer * max_steer_angle`` and
``yaw_rate = speed * tan(delta) / wheelbase``. ``reverse`` makes the throttle push backwards;
``hand_brake`` adds a strong brake. NaN or out-of-range inputs are clamped by
:meth:`llava_drive.control.Control.clamped` (NaN throttle/steer become 0, NaN brake becomes a
full brake).

The state's ``x, y`` is the centre of the car's footprint (what CARLA reports as the actor
location); the bicycle model itself is integrated at the rear axle, ``wheelbase / 2`` behind.
"""
from dataclasses import dataclass, replace
import math

from llava_drive.config_checks import number_in_range
from llava_drive.control import Control

GRAVITY = 9.81


@dataclass
class VehicleParams:
    """
    Physical parameters (SI units), loosely a mid-size car.

    :param wheelbase_m: distance between axles
    :param length_m: footprint length (the footprint is centred between the axles)
    :param width_m: footprint width
    :param max_steer_deg: front-wheel angle at ``|steer| = 1`` and standstill
    :param steer_reduction_speed_mps: above 0, the maximum wheel angle is divided by
        ``1 + (speed / this)^2`` (less twitchy at speed); 0 disables it
    :param steer_time_constant_s: first-order lag of the wheel angle behind the command
    :param mass_kg: vehicle mass
    :param max_engine_force_n: drive force at full throttle and low speed
    :param max_power_w: drive power limit (force falls as ``power / speed`` above a speed)
    :param drag_area_m2: drag coefficient times frontal area
    :param rolling_resistance: rolling resistance coefficient
    :param max_brake_decel_mps2: deceleration at ``brake = 1``
    :param hand_brake_decel_mps2: extra deceleration with ``hand_brake``
    :param max_speed_mps: hard speed cap
    :param max_reverse_speed_mps: hard cap in reverse
    """

    wheelbase_m: float = 2.9
    length_m: float = 4.7
    width_m: float = 1.9
    max_steer_deg: float = 35.0
    steer_reduction_speed_mps: float = 0.0
    steer_time_constant_s: float = 0.1
    mass_kg: float = 1500.0
    max_engine_force_n: float = 6000.0
    max_power_w: float = 90000.0
    drag_area_m2: float = 0.7
    rolling_resistance: float = 0.015
    max_brake_decel_mps2: float = 8.0
    hand_brake_decel_mps2: float = 5.0
    max_speed_mps: float = 40.0
    max_reverse_speed_mps: float = 8.0

    def __post_init__(self):
        """Check that every parameter is a finite number in its range."""
        allow_zero = ('steer_reduction_speed_mps', 'steer_time_constant_s', 'drag_area_m2',
                      'rolling_resistance', 'hand_brake_decel_mps2')
        for name, value in vars(self).items():
            number_in_range(f'VehicleParams.{name}', value, 0, low_open=name not in allow_zero)
        number_in_range('VehicleParams.max_steer_deg', self.max_steer_deg, 0, 90,
                        low_open=True, high_open=True)

    def max_steer_angle(self, speed: float) -> float:
        """
        Return the front-wheel angle (rad) at ``|steer| = 1`` for ``speed`` (m/s).

        :param speed: vehicle speed, sign ignored
        """
        angle = math.radians(self.max_steer_deg)
        if self.steer_reduction_speed_mps > 0:
            angle /= 1.0 + (speed / self.steer_reduction_speed_mps) ** 2
        return angle


@dataclass(frozen=True)
class VehicleState:
    """
    Kinematic state of the car in the map frame.

    :param x: footprint centre x (m)
    :param y: footprint centre y (m)
    :param yaw: heading (rad, counter-clockwise from +x)
    :param speed: signed longitudinal speed (m/s, negative when rolling backwards)
    :param steer_angle: current front-wheel angle (rad, positive turns left)
    """

    x: float = 0.0
    y: float = 0.0
    yaw: float = 0.0
    speed: float = 0.0
    steer_angle: float = 0.0


class Vehicle:
    """
    Integrate the vehicle model with a fixed step.

    :param params: physical parameters
    :param state: initial state
    """

    def __init__(self, params: VehicleParams = None, state: VehicleState = None):
        """Create the vehicle at ``state`` (default: origin, at rest)."""
        self.params = params or VehicleParams()
        self.state = state or VehicleState()

    def rear_axle(self):
        """Return ``(x, y)`` of the rear axle centre, the bicycle model's reference point."""
        half = 0.5 * self.params.wheelbase_m
        st = self.state
        return st.x - half * math.cos(st.yaw), st.y - half * math.sin(st.yaw)

    def step(self, control: Control, dt: float) -> VehicleState:
        """
        Advance the state by ``dt`` seconds under ``control`` and return the new state.

        :param control: the command (clamped first; NaN means full brake, no throttle)
        :param dt: time step in seconds (positive)
        """
        if not dt > 0:
            raise ValueError(f'dt must be positive, got {dt!r}')
        p = self.params
        c = control.clamped()
        st = self.state
        v = st.speed

        # Steering: CARLA steer +1 is a right turn, i.e. a negative (clockwise) wheel angle.
        target = -c.steer * p.max_steer_angle(v)
        if p.steer_time_constant_s > 0:
            alpha = 1.0 - math.exp(-dt / p.steer_time_constant_s)
            delta = st.steer_angle + alpha * (target - st.steer_angle)
        else:
            delta = target

        # Longitudinal: drive force along the gear direction, then losses that only slow down.
        direction = -1.0 if c.reverse else 1.0
        force = c.throttle * p.max_engine_force_n
        if abs(v) > 1e-3:
            force = min(force, c.throttle * p.max_power_w / abs(v))
        v_new = v + direction * force / p.mass_kg * dt
        decel = (c.brake * p.max_brake_decel_mps2
                 + (p.hand_brake_decel_mps2 if c.hand_brake else 0.0)
                 + p.rolling_resistance * GRAVITY
                 + 0.5 * 1.2 * p.drag_area_m2 * v_new * v_new / p.mass_kg)
        if abs(v_new) <= decel * dt:
            v_new = 0.0  # losses stop the car; they never push it the other way
        else:
            v_new -= math.copysign(decel * dt, v_new)
        v_new = min(p.max_speed_mps, max(-p.max_reverse_speed_mps, v_new))

        # Kinematic bicycle at the rear axle; the midpoint heading makes arcs exact.
        rx, ry = self.rear_axle()
        distance = 0.5 * (v + v_new) * dt
        yaw_change = distance * math.tan(delta) / p.wheelbase_m
        mid_yaw = st.yaw + 0.5 * yaw_change
        if abs(yaw_change) > 1e-9:
            chord = 2.0 * math.sin(0.5 * yaw_change) * p.wheelbase_m / math.tan(delta)
        else:
            chord = distance
        rx += chord * math.cos(mid_yaw)
        ry += chord * math.sin(mid_yaw)
        yaw = (st.yaw + yaw_change + math.pi) % (2.0 * math.pi) - math.pi
        half = 0.5 * p.wheelbase_m
        self.state = VehicleState(rx + half * math.cos(yaw), ry + half * math.sin(yaw), yaw,
                                  v_new, delta)
        return self.state

    def stop(self):
        """Set the speed to zero, keeping pose and steering (used after a collision)."""
        self.state = replace(self.state, speed=0.0)
