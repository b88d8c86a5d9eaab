"""Validation and defaults shared by the configuration dataclasses (no ROS)."""
import dataclasses
import inspect
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


def default_of(owner, name: str):
    """
    Return the default of field ``name`` of a dataclass, or of parameter ``name`` of a function.

    Command-line options take their defaults from here, so each default is written once, in
    the dataclass (or function) the option fills.

    :param owner: a dataclass or a function
    :param name: field or parameter name
    :raises KeyError: if ``owner`` has no such field or parameter, or it has no default
    """
    if dataclasses.is_dataclass(owner):
        for item in dataclasses.fields(owner):
            if item.name == name:
                if item.default is not dataclasses.MISSING:
                    return item.default
                if item.default_factory is not dataclasses.MISSING:
                    return item.default_factory()
        raise KeyError(f'{owner.__name__} has no field {name!r} with a default')
    parameter = inspect.signature(owner).parameters.get(name)
    if parameter is None or parameter.default is inspect.Parameter.empty:
        raise KeyError(f'{owner.__name__} has no parameter {name!r} with a default')
    return parameter.default
