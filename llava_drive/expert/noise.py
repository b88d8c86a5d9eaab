"""
Seeded perturbation of expert commands, for recording recovery data.

The recorder stores the expert's **clean** command as the label and sends the **noisy** one to
the car: the car drifts off the lane centre and the labels show how to come back. The steer
gets an Ornstein-Uhlenbeck drift plus occasional steer pulses; throttle and brake pass through.
Pure logic, no ROS.
"""
from dataclasses import dataclass, fields, replace
import math
from typing import Optional

from llava_drive.config_checks import number_in_range
from llava_drive.control import Control
import numpy as np


@dataclass
class NoiseConfig:
    """
    Parameters of the steer perturbation.

    :param ou_sigma: stationary standard deviation of the OU steer drift (steer units)
    :param ou_theta: mean reversion rate of the drift (1/s)
    :param pulse_rate_hz: mean number of steer pulses per second
    :param pulse_magnitude: largest pulse (steer units); each pulse draws 50-100% of it
    :param pulse_duration_s: length of one pulse
    """

    ou_sigma: float = 0.04
    ou_theta: float = 1.0
    pulse_rate_hz: float = 0.15
    pulse_magnitude: float = 0.15
    pulse_duration_s: float = 0.4

    def __post_init__(self):
        """Check every value is finite and non-negative, and the magnitudes are at most 1."""
        for f in fields(self):
            high = 1 if f.name in ('ou_sigma', 'pulse_magnitude') else math.inf
            number_in_range(f'NoiseConfig.{f.name}', getattr(self, f.name), 0, high)


class ExpertNoise:
    """
    Perturb the steer of commands with a seeded OU drift and random pulses.

    :param config: noise parameters
    :param seed: random seed (the same seed and call sequence give the same noise)
    """

    def __init__(self, config: Optional[NoiseConfig] = None, seed: int = 0):
        """Create the noise source."""
        self.config = config or NoiseConfig()
        self.reset(seed)

    def reset(self, seed: Optional[int] = None):
        """
        Restart the noise (drift 0, no pulse).

        :param seed: new seed; None keeps drawing from the current generator
        """
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self.drift = 0.0
        self.pulse = 0.0
        self._pulse_left = 0.0

    def perturb(self, control: Control, dt: float) -> Control:
        """
        Advance the noise by ``dt`` and return ``control`` with the noisy steer.

        :param control: the clean command
        :param dt: time since the previous call (s, > 0)
        :return: the command to execute (steer clamped to [-1, 1])
        """
        if not dt > 0:
            raise ValueError(f'dt must be positive, got {dt!r}')
        cfg = self.config
        rng = self._rng
        if cfg.ou_sigma > 0 and cfg.ou_theta > 0:
            # Exact OU update: stationary standard deviation ou_sigma.
            decay = math.exp(-cfg.ou_theta * dt)
            self.drift = self.drift * decay + cfg.ou_sigma * math.sqrt(1 - decay * decay) * \
                float(rng.standard_normal())
        if self._pulse_left > 0:
            self._pulse_left -= dt
            if self._pulse_left <= 0:
                self.pulse = 0.0
        elif cfg.pulse_rate_hz > 0 and rng.random() < 1.0 - math.exp(-cfg.pulse_rate_hz * dt):
            sign = 1.0 if rng.random() < 0.5 else -1.0
            self.pulse = sign * cfg.pulse_magnitude * float(rng.uniform(0.5, 1.0))
            self._pulse_left = cfg.pulse_duration_s
        steer = control.steer + self.drift + self.pulse
        if not math.isfinite(steer):
            return control.clamped()
        return replace(control, steer=max(-1.0, min(1.0, steer)))
