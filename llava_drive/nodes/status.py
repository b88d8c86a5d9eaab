"""
The JSON status payloads on ``std_msgs/String`` topics, one schema each, without ROS.

Producers build a payload dataclass and send :meth:`Payload.to_json`; consumers call
:meth:`Payload.from_json` (or a :class:`PayloadReader`, which counts what it refuses). Every
field is checked against its annotation (an ``int`` is never a ``bool``, a ``float`` is
finite, ``Optional`` allows ``null``) and its declared range; a payload with a missing or
unknown key, another ``version``, or text that is not a JSON object is refused with a
:class:`PayloadError` whose ``reason`` names the class of fault. Adding a field means adding
it here, where producer and consumer both see it. Topics: :mod:`llava_drive.nodes.interfaces`.
"""
from collections import Counter
from dataclasses import asdict, dataclass, field, fields, make_dataclass, MISSING
import json
import math
import typing
from typing import ClassVar, Dict, List, Optional

from llava_drive.sim.scoring import EpisodeSummary

# rosbag2 stores time as int64 nanoseconds.
MAX_STAMP_NS = 2 ** 63 - 1
EPISODE_EVENTS = ('start', 'end')


class PayloadError(ValueError):
    """A payload was refused; ``reason`` is a short identifier for counting."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f'{reason}: {detail}')
        self.reason = reason


def _bounds(low=None, high=None, choices=None):
    """Return field metadata: an inclusive range or a set of allowed values."""
    return {'low': low, 'high': high, 'choices': choices}


def _check(name: str, value, annotation, meta) -> None:
    """Raise :class:`PayloadError` unless ``value`` fits ``annotation`` and ``meta``."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Union:  # Optional[X]
        if value is None:
            return
        annotation = next(arg for arg in args if arg is not type(None))
        origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and \
            math.isfinite(value)
    elif annotation is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif annotation in (str, bool):
        ok = isinstance(value, annotation)
    elif origin in (list, dict):
        ok = isinstance(value, origin)
        if ok and args:
            items = value.items() if origin is dict else enumerate(value)
            for key, item in items:
                if origin is dict and not isinstance(key, str):
                    raise PayloadError('bad_type', f'{name} has a key {key!r} that is no string')
                _check(f'{name}[{key!r}]', item, args[-1], {})
    else:
        ok = isinstance(value, annotation)
    if not ok:
        raise PayloadError('bad_type', f'{name}={value!r:.80} is not {annotation}')
    low, high, choices = (meta.get(key) for key in ('low', 'high', 'choices'))
    if choices is not None and value not in choices:
        raise PayloadError('out_of_range', f'{name}={value!r:.80} is not one of {choices}')
    if (low is not None and value < low) or (high is not None and value > high):
        raise PayloadError('out_of_range', f'{name}={value!r} is outside [{low}, {high}]')


class Payload:
    """Base of the payload dataclasses: validation, JSON in and out."""

    VERSION: ClassVar[int] = 1

    def __post_init__(self):
        """Refuse a payload that would not survive :meth:`from_json` (producer bugs)."""
        self.validate()

    def validate(self) -> None:
        """Raise :class:`PayloadError` naming the first field that does not fit."""
        hints = typing.get_type_hints(type(self))
        for spec in fields(self):
            _check(spec.name, getattr(self, spec.name), hints[spec.name], spec.metadata)

    def to_dict(self) -> dict:
        """Return the payload as plain data, with its ``version``."""
        return dict(asdict(self), version=self.VERSION)

    def to_json(self) -> str:
        """Return the JSON text sent on the wire."""
        return json.dumps(self.to_dict(), allow_nan=False)

    @classmethod
    def from_dict(cls, data):
        """
        Return the payload in ``data`` (a decoded JSON object).

        :raises PayloadError: not an object, another version, a missing, unknown or bad field.
        """
        if not isinstance(data, dict):
            raise PayloadError('not_an_object', f'{type(data).__name__} instead of an object')
        data = dict(data)
        version = data.pop('version', None)
        if version != cls.VERSION:
            raise PayloadError('bad_version', f'{cls.__name__} version {version!r:.40}, '
                                              f'expected {cls.VERSION}')
        names = {spec.name for spec in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise PayloadError('unknown_field', f'{cls.__name__} has no field {unknown[0]!r:.40}')
        required = {spec.name for spec in fields(cls)
                    if spec.default is MISSING and spec.default_factory is MISSING}
        missing = sorted(required - set(data))
        if missing:
            raise PayloadError('missing_field', f'{cls.__name__} needs {missing[0]!r}')
        return cls(**data)

    @classmethod
    def from_json(cls, text):
        """
        Parse and validate one payload.

        :param text: the ``std_msgs/String`` data
        :raises PayloadError: as :meth:`from_dict`, or ``not_json`` for text that does not parse
        """
        if not isinstance(text, str):
            raise PayloadError('not_json', f'{type(text).__name__} instead of text')
        try:
            data = json.loads(text)
        except ValueError as error:  # JSONDecodeError and RecursionError-free ValueErrors
            raise PayloadError('not_json', str(error)) from None
        except RecursionError:
            raise PayloadError('not_json', 'nested too deeply') from None
        return cls.from_dict(data)


@dataclass
class SimEpisode(Payload):
    """
    An episode marker on ``/llava_drive/sim/episode`` (also written into bags).

    :param event: ``start`` (stamp of its first frame) or ``end`` (stamp of its last frame)
    :param episode: episode counter of the simulator, from 0
    :param route_seed: route driven
    :param stamp_ns: simulation time of the boundary (ns)
    :param summary: the episode's score (``EpisodeSummary.to_dict()``), with ``end`` only
    :param global_plan: the route's ``GlobalPlan.to_dict()`` (town world), with ``start`` only
    """

    event: str = field(metadata=_bounds(choices=EPISODE_EVENTS))
    episode: int = field(metadata=_bounds(0, MAX_STAMP_NS))
    route_seed: int = field(metadata=_bounds(0, 2 ** 31 - 1))
    stamp_ns: int = field(metadata=_bounds(0, MAX_STAMP_NS))
    summary: Optional[dict] = None
    global_plan: Optional[dict] = None


class _SimStatusChecks(Payload):
    """Checks of :data:`SimStatus` beyond the field types."""

    def validate(self) -> None:
        """Check the fields, and that ``control`` holds three numbers."""
        super().validate()
        if len(self.control) != 3:
            raise PayloadError('bad_type', f'control has {len(self.control)} values, not 3')


def _summary_fields() -> list:
    """Return ``EpisodeSummary``'s fields for make_dataclass (events travel as objects)."""
    hints = typing.get_type_hints(EpisodeSummary)
    result = []
    for spec in fields(EpisodeSummary):
        annotation = List[dict] if spec.name == 'events' else hints[spec.name]
        metadata = _bounds(0.0, 100.0) if spec.name == 'route_completion' else {}
        if spec.default is not MISSING:
            result.append((spec.name, annotation, field(default=spec.default,
                                                        metadata=metadata)))
        elif spec.default_factory is not MISSING:
            result.append((spec.name, annotation, field(default_factory=spec.default_factory,
                                                        metadata=metadata)))
        else:
            result.append((spec.name, annotation, field(metadata=metadata)))
    return result


def _frame_fields() -> list:
    """Return the per-frame fields of the bridges' status, before the summary's."""
    return [('stamp_ns', int, field(metadata=_bounds(0, MAX_STAMP_NS))),
            ('episode', int, field(metadata=_bounds(0, MAX_STAMP_NS))),
            ('x', float), ('y', float), ('yaw', float), ('speed', float),
            ('control', List[float]),
            ('control_timeouts', int, field(metadata=_bounds(0)))]


def _bridge_fields() -> list:
    """Return the fields only carla_bridge fills (None from sim_bridge)."""
    return [('carla_frame', Optional[int], field(default=None)),
            ('late_controls', Optional[int], field(default=None))]


def _ordered(specs: list) -> list:
    """Put fields without a default first, as dataclasses require."""
    return sorted(specs, key=lambda spec: len(spec) == 3 and (
        spec[2].default is not MISSING or spec[2].default_factory is not MISSING))


# The bridges' state after each frame, on ``/llava_drive/sim/status``: the frame (stamp_ns,
# episode, x, y, yaw, speed, control = [steer, throttle, brake], control_timeouts), every field
# of ``llava_drive.sim.scoring.EpisodeSummary`` (so a new score field needs no change here),
# and carla_bridge's carla_frame and late_controls.
SimStatus = make_dataclass(
    'SimStatus', _ordered(_frame_fields() + _summary_fields() + _bridge_fields()),
    bases=(_SimStatusChecks,))
SimStatus.__doc__ = "The bridges' state after each frame, on ``/llava_drive/sim/status``."


@dataclass
class RecorderStatus(Payload):
    """
    The recorder's state, on ``/recorder/status`` every ``status_period``.

    :param recording: a bag is open
    :param bag: the current (or next) bag directory
    :param pairs_written: pairs in the current (or last closed) bag
    :param rejected: inputs refused, by reason
    :param error: the storage error that stopped the recording, or None
    :param span_s: seconds of stamps recorded
    :param last_stamp_ns: newest pair's stamp, or None
    :param cpu_s: CPU seconds the process used
    :param pending: frames waiting for their control
    :param closed_bags: bag directories closed so far
    :param lost: what a failed write cost (the writer's loss report), or None
    """

    recording: bool
    bag: str
    pairs_written: int = field(metadata=_bounds(0))
    rejected: Dict[str, int]
    error: Optional[str]
    span_s: float = field(metadata=_bounds(0.0))
    last_stamp_ns: Optional[int] = field(metadata=_bounds(0, MAX_STAMP_NS))
    cpu_s: float = field(metadata=_bounds(0.0))
    pending: int = field(metadata=_bounds(0))
    closed_bags: List[str] = field(default_factory=list)
    lost: Optional[dict] = None


class PayloadReader:
    """
    Parse one payload type, counting (and logging once per reason) what it refuses.

    :param payload_type: a :class:`Payload` subclass
    :param log: called with one line the first time each reason is seen (e.g. a logger's
        ``warning``); None = silent
    """

    def __init__(self, payload_type, log=None):
        self.payload_type = payload_type
        self.log = log
        self.rejected: Counter = Counter()

    def parse(self, text):
        """Return the payload in ``text``, or None when refused (counted by reason)."""
        try:
            return self.payload_type.from_json(text)
        except PayloadError as error:
            self.rejected[error.reason] += 1
            if self.rejected[error.reason] == 1 and self.log is not None:
                self.log(f'refused a {self.payload_type.__name__} ({error}); further ones for '
                         f'this reason are only counted')
            return None
