"""Validation shared by the configuration dataclasses (no ROS)."""
import math


def number_in_range(name, value, low=-math.inf, high=math.inf, *, low_open=False,
                    high_open=False) -> float:
    """
    Return ``value`` unchanged if it is a finite real number inside the interval.

    ``bool`` is refused although it is an ``int``. Error messages name the value and the rule,
    e.g. ``steer_smoothing must be in (0, 1], got 0.0``.

    :param name: name used in the error message (e.g. ``'SimConfig.fov_deg'``)
    :param value: the value to check
    :param low: lower bound (``-inf``: none)
    :param high: upper bound (``inf``: none)
    :param low_open: exclude ``low`` itself
    :param high_open: exclude ``high`` itself
    :raises ValueError: if ``value`` is not a finite ``int`` or ``float``, or is out of range
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not math.isfinite(value):
        raise ValueError(f'{name} must be a finite number, got {value!r}')
    above = value > low if low_open else value >= low
    below = value < high if high_open else value <= high
    if not (above and below):
        if high == math.inf:
            rule = ('> ' if low_open else '>= ') + f'{low:g}'
        elif low == -math.inf:
            rule = ('< ' if high_open else '<= ') + f'{high:g}'
        else:
            opening, closing = '(' if low_open else '[', ')' if high_open else ']'
            rule = f'in {opening}{low:g}, {high:g}{closing}'
        raise ValueError(f'{name} must be {rule}, got {value!r}')
    return value
