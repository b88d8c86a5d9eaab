"""CARLA's ``RoadOption`` route commands (``agents.navigation.local_planner``), same values."""
from enum import IntEnum


class RoadOption(IntEnum):
    """
    High-level command of a route point, with CARLA's integer values.

    ``carla_msgs/CarlaRoute.road_options`` carries them as ``uint8``: VOID (-1) wraps to 255 on
    the wire, which :meth:`parse` accepts back.
    """

    VOID = -1
    LEFT = 1
    RIGHT = 2
    STRAIGHT = 3
    LANEFOLLOW = 4
    CHANGELANELEFT = 5
    CHANGELANERIGHT = 6

    @classmethod
    def parse(cls, value) -> 'RoadOption':
        """
        Return the option for an int, a uint8 wire value or a name (``'LEFT'``, ``'left'``).

        :param value: the value to convert
        :raises ValueError: naming the value when it is no RoadOption
        """
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            try:
                return cls[value.strip().upper()]
            except KeyError:
                raise ValueError(f'unknown RoadOption name {value!r}') from None
        if isinstance(value, bool) or not hasattr(value, '__index__'):
            raise ValueError(f'RoadOption must be an int or a name, got {value!r}')
        number = int(value)
        if number == 255:
            number = -1
        try:
            return cls(number)
        except ValueError:
            raise ValueError(f'{number} is no RoadOption value (valid: '
                             f'{sorted(int(o) for o in cls)})') from None

    @property
    def wire(self) -> int:
        """Return the ``uint8`` value for ``CarlaRoute.road_options`` (VOID -> 255)."""
        return int(self) & 0xFF


# Options of the lanes that cross a junction; the planner announces them before the junction.
JUNCTION_OPTIONS = frozenset({RoadOption.LEFT, RoadOption.RIGHT, RoadOption.STRAIGHT})
