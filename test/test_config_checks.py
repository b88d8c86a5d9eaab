"""number_in_range: accepted values, refused non-numbers, and the rule in each message."""
import math

from llava_drive.config_checks import number_in_range
import pytest


@pytest.mark.parametrize('value, low, high', [
    (0.5, 0, 1), (0, 0, 1), (1, 0, 1), (1.0, 0.0, 1.0), (3, -math.inf, math.inf),
    (-2.5, -5, 5), (1e9, 0, math.inf),
])
def test_accepted_values_are_returned_unchanged(value, low, high):
    """Return finite numbers inside the range (closed bounds included) unchanged."""
    result = number_in_range('x', value, low, high)
    assert result == value and type(result) is type(value)


@pytest.mark.parametrize('value', [True, False, math.nan, math.inf, -math.inf, '1', None])
def test_non_finite_or_non_numbers_are_refused(value):
    """Refuse bool, nan, inf and non-numbers with the finite-number message."""
    with pytest.raises(ValueError) as error:
        number_in_range('Config.x', value, 0, 1)
    assert str(error.value) == f'Config.x must be a finite number, got {value!r}'


@pytest.mark.parametrize('value, bounds, options, rule', [
    (0.0, (0, 1), {'low_open': True}, 'in (0, 1]'),
    (1.5, (0, 1), {'low_open': True}, 'in (0, 1]'),
    (1, (0, 1), {'high_open': True}, 'in [0, 1)'),
    (-1, (0, 1), {}, 'in [0, 1]'),
    (90, (0, 90), {'low_open': True, 'high_open': True}, 'in (0, 90)'),
    (0.1, (0.2, 10.0), {}, 'in [0.2, 10]'),
    (0.0, (0,), {'low_open': True}, '> 0'),
    (-0.5, (0,), {}, '>= 0'),
    (5, (-math.inf, 5), {'high_open': True}, '< 5'),
    (5.5, (-math.inf, 5), {}, '<= 5'),
])
def test_out_of_range_message_states_the_rule(value, bounds, options, rule):
    """Name the open, closed or one-sided rule that the value breaks."""
    with pytest.raises(ValueError) as error:
        number_in_range('name', value, *bounds, **options)
    assert str(error.value) == f'name must be {rule}, got {value!r}'


def test_example_message():
    """Match the message format the safety gate tests expect."""
    with pytest.raises(ValueError, match=r'^steer_smoothing must be in \(0, 1\], got 0.0$'):
        number_in_range('steer_smoothing', 0.0, 0, 1, low_open=True)
