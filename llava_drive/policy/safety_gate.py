"""
The policy's safety gate: what actually goes to the car, whatever the model says (no ROS).

The CARLA bridge applies the last control forever, so every command
passes through :class:`SafetyGate`. It brakes fully (throttle 0, brake 1, steer 0) when the
newest image or the newest inference is older than ``max_age_s`` (monotonic wall clock), when
the model's output is NaN or infinite, while emergency-stopped, and while disabled. Otherwise
it clamps the ranges, never lets throttle and brake act together (brake wins), smooths the
steering (exponential moving average) and limits its rate. Every command it changes is
counted by reason in :attr:`SafetyGate.interventions`.

Output contract (architecture: Control rate): every model output gives exactly one command
(:meth:`SafetyGate.on_inference`), stamped with its source frame, so a synchronous simulator
gets one control per frame. The fixed-rate timer (:meth:`SafetyGate.command`) says nothing
while the outputs are fresh; it brakes only when no output can be trusted any more (no image
or an image older than ``max_age_s``, or the newest output computed from an image older than
that), because then no output will come to answer for it. Engaging the emergency stop or
disabling returns one brake to send at once; every later output is a brake until released.

Synchronous simulation (``GateConfig.synchronous``): the world waits for each control, so a
slow inference is not late and ages are not judged on the wall clock (no ``stale_image`` or
``stale_inference`` brakes, no timer brakes); every output answers its own frame, and the
simulator's control timeout brakes a policy that falls silent. On the wall clock a loaded
machine turned model outputs into brakes at random and made evaluations unrepeatable.

Time: ``now`` arguments are ``time.monotonic()`` seconds; stamps are the source images'
``header.stamp`` in nanoseconds. The steering rate limit runs on stamp time, the time the
vehicle experiences between two frames, so a synchronous simulation that steps faster or
slower than real time is steered exactly as it would be in real time.
"""
from collections import Counter
from dataclasses import dataclass
import math
from typing import NamedTuple, Optional

from llava_drive.config_checks import number_in_range
from llava_drive.control import Control, FULL_BRAKE

# Reasons that replace the command by a full brake, in order of precedence.
DISABLED = 'disabled'
EMERGENCY_STOP = 'emergency_stop'
NO_IMAGE = 'no_image'
STALE_IMAGE = 'stale_image'
NO_INFERENCE = 'no_inference'
STALE_INFERENCE = 'stale_inference'
NAN_OUTPUT = 'nan_output'
BRAKING_REASONS = (DISABLED, EMERGENCY_STOP, NO_IMAGE, STALE_IMAGE, NO_INFERENCE,
                   STALE_INFERENCE, NAN_OUTPUT)
# Reasons that only adjust the model's command.
OUT_OF_RANGE = 'out_of_range'
THROTTLE_AND_BRAKE = 'throttle_and_brake'
STEER_RATE_LIMITED = 'steer_rate_limited'


@dataclass(frozen=True)
class GateConfig:
    """
    Limits of the safety gate.

    :param max_age_s: brake when the newest image, or the image the newest inference was
        computed from, arrived longer ago than this (wall seconds).
    :param steer_rate_limit: largest steering change per second of stamp time (steer units;
        2.0 = centre to full lock in 0.5 s); 0 disables the limit.
    :param steer_smoothing: weight of the newest prediction in the steering moving average
        (1.0 = no smoothing, 0.3 = heavy smoothing).
    :param brake_threshold: a predicted brake at or above this brakes and zeroes the throttle;
        below it the brake is released (a sigmoid output is never exactly 0).
    :param synchronous: the simulator waits for each control: ``max_age_s`` is not applied
    """

    max_age_s: float = 0.5
    steer_rate_limit: float = 4.0
    steer_smoothing: float = 0.6
    brake_threshold: float = 0.1
    synchronous: bool = False

    def __post_init__(self):
        """Check every field; errors name the bad value."""
        number_in_range('max_age_s', self.max_age_s, 0, low_open=True)
        number_in_range('steer_rate_limit', self.steer_rate_limit, 0)
        for name in ('steer_smoothing', 'brake_threshold'):
            number_in_range(name, getattr(self, name), 0, 1, low_open=True)
        if not isinstance(self.synchronous, bool):
            raise ValueError(f'synchronous must be true or false, got {self.synchronous!r}')


class GateCommand(NamedTuple):
    """
    One command to publish.

    :param control: the control to send.
    :param stamp_ns: the source image's stamp (0 before any image arrived).
    :param reason: why the gate braked or changed the command, or None.
    """

    control: Control
    stamp_ns: int
    reason: Optional[str]


def _finite(control: Control) -> bool:
    return all(math.isfinite(value) for value in control.as_array())


class SafetyGate:
    """
    Turn model outputs into safe commands; brake on stale inputs, NaN, e-stop or disable.

    Call :meth:`on_image` for every camera frame, :meth:`on_inference` for every model
    output (publish what it returns: in synchronous simulation that steps the world), and
    :meth:`command` from a fixed-rate timer (publish what it returns, when anything).

    :param config: the limits.
    """

    def __init__(self, config: GateConfig = None):
        """Start disabled-free and un-stopped, with no image and no inference yet."""
        self.config = config or GateConfig()
        self.enabled = True
        self.emergency_stopped = False
        self.interventions = Counter()
        self.image_received = None      # wall time of the newest image
        self.image_stamp_ns = 0
        self.inference_source = None    # wall time its source image arrived
        self.inference_finite = True
        self.smoothed_steer = None      # EMA state over the valid predictions
        self.last_command = None        # the newest gated model command (not a brake)
        self.last_steer_stamp_ns = None

    # -- inputs ------------------------------------------------------------------------
    def on_image(self, now: float, stamp_ns: int = None) -> None:
        """
        Note that a camera frame arrived.

        :param now: wall time (monotonic seconds).
        :param stamp_ns: the image's header stamp (used by braking commands).
        """
        self.image_received = now
        if stamp_ns is not None:
            self.image_stamp_ns = max(self.image_stamp_ns, int(stamp_ns))

    def set_emergency_stop(self, stopped: bool) -> Optional[GateCommand]:
        """
        Latch or release the emergency stop; return the brake to send at once, if any.

        :param stopped: True brakes until called again with False.
        """
        self.emergency_stopped = bool(stopped)
        return self._brake(EMERGENCY_STOP, self.image_stamp_ns) if stopped else None

    def set_enabled(self, enabled: bool) -> Optional[GateCommand]:
        """
        Enable or disable driving (full brake); return the brake to send at once, if any.

        :param enabled: False brakes until enabled again.
        """
        self.enabled = bool(enabled)
        return None if enabled else self._brake(DISABLED, self.image_stamp_ns)

    def on_inference(self, stamp_ns: int, control: Control, now: float,
                     source_received: float = None) -> GateCommand:
        """
        Gate a new model output; return the command to publish now.

        :param stamp_ns: stamp of the image the output was computed from.
        :param control: the model's output.
        :param now: wall time (monotonic seconds).
        :param source_received: wall time the source image arrived (default ``now``): an
            output computed from an image older than ``max_age_s`` is not used.
        """
        stamp_ns = int(stamp_ns)
        self.inference_source = now if source_received is None else source_received
        self.inference_finite = _finite(control)
        reason = self._braking_reason(now)
        if reason is not None:
            return self._brake(reason, stamp_ns)
        return self._gated(control, stamp_ns)

    # -- the fixed-rate output -----------------------------------------------------------
    def command(self, now: float) -> Optional[GateCommand]:
        """
        Return a timer tick's command: a full brake once the outputs are stale, else None.

        Stale: no image, the newest image older than ``max_age_s``, or the newest output
        computed from an image that arrived longer ago (before the first output, the newest
        published command is already a brake for no image). The brake carries the newest
        image's stamp, so it reaches a bridge that waits for the current frame; its reason
        is the strongest one that holds (disabled and the emergency stop first).

        :param now: wall time (monotonic seconds).
        """
        if self.config.synchronous:
            return None  # every frame is answered by its own output
        max_age = self.config.max_age_s
        stale = self.image_received is None or now - self.image_received > max_age or (
            self.inference_source is not None and now - self.inference_source > max_age)
        if not stale:
            return None
        return self._brake(self._braking_reason(now), self.image_stamp_ns)

    def braking_reason(self, now: float) -> Optional[str]:
        """
        Return why a command at ``now`` would be a brake, or None (counts nothing).

        :param now: wall time (monotonic seconds).
        """
        return self._braking_reason(now)

    # -- internals -----------------------------------------------------------------------
    def _braking_reason(self, now: float) -> Optional[str]:
        max_age = self.config.max_age_s
        if not self.enabled:
            return DISABLED
        if self.emergency_stopped:
            return EMERGENCY_STOP
        wall_clock = not self.config.synchronous
        if self.image_received is None:
            return NO_IMAGE
        if wall_clock and now - self.image_received > max_age:
            return STALE_IMAGE
        if self.inference_source is None:
            return NO_INFERENCE
        if wall_clock and now - self.inference_source > max_age:
            return STALE_INFERENCE
        if not self.inference_finite:
            return NAN_OUTPUT
        return None

    def _brake(self, reason: str, stamp_ns: int) -> GateCommand:
        self.interventions[reason] += 1
        self._reset_steering()
        return GateCommand(FULL_BRAKE, int(stamp_ns), reason)

    def _gated(self, control: Control, stamp_ns: int) -> GateCommand:
        adjusted, reasons = self._adjust(control, stamp_ns)
        self.last_command = adjusted
        self.interventions.update(reasons)
        return GateCommand(adjusted, stamp_ns, reasons[0] if reasons else None)

    def _reset_steering(self):
        """Forget the steering history: after a brake, start from the new prediction."""
        self.smoothed_steer = None
        self.last_steer_stamp_ns = None
        self.last_command = None

    def _adjust(self, control: Control, stamp_ns: int):
        """Clamp, separate throttle and brake, smooth and rate-limit; return reasons too."""
        reasons = []
        clamped = control.clamped()
        if clamped.as_array() != control.as_array():
            reasons.append(OUT_OF_RANGE)
        throttle, brake = clamped.throttle, clamped.brake
        if brake >= self.config.brake_threshold:
            if throttle > 0.0:
                reasons.append(THROTTLE_AND_BRAKE)
            throttle = 0.0
        else:
            brake = 0.0
        alpha = self.config.steer_smoothing
        target = clamped.steer if self.smoothed_steer is None else \
            alpha * clamped.steer + (1.0 - alpha) * self.smoothed_steer
        self.smoothed_steer = target
        steer = target
        previous = self.last_command.steer if self.last_command is not None else None
        if previous is not None and self.config.steer_rate_limit > 0:
            # Stamp time, capped: a gap longer than max_age allows no bigger jump.
            elapsed = (stamp_ns - self.last_steer_stamp_ns) / 1e9
            elapsed = min(max(elapsed, 0.0), self.config.max_age_s)
            step = self.config.steer_rate_limit * elapsed
            steer = min(max(target, previous - step), previous + step)
            if steer != target:
                reasons.append(STEER_RATE_LIMITED)
        self.last_steer_stamp_ns = stamp_ns
        return Control(steer=steer, throttle=throttle, brake=brake,
                       hand_brake=clamped.hand_brake, reverse=clamped.reverse), reasons
