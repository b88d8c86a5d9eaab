"""
Pair each camera frame with the control in effect at its stamp (no ROS imports).

A control stamped ``t`` is the command computed from the sensors at ``t`` and applied from
``t`` on, so the label of frame ``t`` is the newest control with stamp <= ``t``. It usually
arrives *after* the frame (it is computed from it), so frames wait in a short queue until a
control at or past their stamp arrives, or until they are too old to wait for.
"""
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any, List, Optional, Tuple

from llava_drive.control import Control


@dataclass(frozen=True)
class PairingConfig:
    """Pairing limits, all in stamp time (nanoseconds of the ROS clock)."""

    max_control_age_ns: int = 100_000_000
    max_pending: int = 50
    control_history: int = 200

    def __post_init__(self):
        if self.max_control_age_ns < 0:
            raise ValueError(f'max_control_age_ns must be >= 0, got {self.max_control_age_ns}')
        if self.max_pending < 1:
            raise ValueError(f'max_pending must be >= 1, got {self.max_pending}')
        if self.control_history < 1:
            raise ValueError(f'control_history must be >= 1, got {self.control_history}')


@dataclass(frozen=True)
class Paired:
    """A frame and its label, both stamped ``stamp_ns``."""

    stamp_ns: int
    frame: Any
    control: Control


class Pairer:
    """
    Turns a stream of frames and controls into pairs; counts every rejection by reason.

    Reasons: ``duplicate_stamp``, ``backwards_stamp`` (frames), ``nan_control``,
    ``control_out_of_range``, ``backwards_control_stamp`` (controls), ``no_control``,
    ``control_too_old``, ``invalid_label`` (frames without a usable label), ``queue_overflow``.
    A rejected control still marks its stamp: the frames it was in effect for have no valid
    label, and are not paired with an older one.
    """

    def __init__(self, config: PairingConfig = PairingConfig()):
        self.config = config
        self.rejected = Counter()
        # (stamp_ns, Control or None for a rejected one), sorted by stamp
        self._controls = deque(maxlen=config.control_history)
        self._pending = deque()  # (stamp_ns, frame), sorted
        self._last_frame_stamp = None

    def add_frame(self, stamp_ns: int, frame) -> List[Paired]:
        """Queue a frame; return the pairs that are complete now."""
        last = self._last_frame_stamp
        if last is not None and stamp_ns <= last:
            self._reject('duplicate_stamp' if stamp_ns == last else 'backwards_stamp')
            return []
        self._last_frame_stamp = stamp_ns
        self._pending.append((stamp_ns, frame))
        pairs = self._resolve()
        while len(self._pending) > self.config.max_pending:
            self._pending.popleft()
            self._reject('queue_overflow')
        return pairs

    def add_control(self, stamp_ns: int, control: Control) -> List[Paired]:
        """Record a control; return the pairs that are complete now."""
        if self._controls and stamp_ns < self._controls[-1][0]:
            self._reject('backwards_control_stamp')
            return []
        problem = control.problem()
        if problem is not None:
            self._reject(problem)
            control = None
        self._controls.append((stamp_ns, control))
        return self._resolve()

    def expire(self, now_ns: int) -> List[Paired]:
        """Settle frames older than the age limit at ``now_ns``; return any pairs made."""
        pairs = []
        while self._pending and now_ns - self._pending[0][0] > self.config.max_control_age_ns:
            pairs.extend(self._settle(*self._pending.popleft()))
        return pairs

    def flush(self) -> List[Paired]:
        """Settle every waiting frame (on stop): pair what can be paired, count the rest."""
        pairs = []
        while self._pending:
            pairs.extend(self._settle(*self._pending.popleft()))
        return pairs

    @property
    def pending(self) -> int:
        """Frames waiting for their control."""
        return len(self._pending)

    def _resolve(self) -> List[Paired]:
        if not self._controls:
            return []
        newest = self._controls[-1][0]
        pairs = []
        while self._pending and self._pending[0][0] <= newest:
            pairs.extend(self._settle(*self._pending.popleft()))
        return pairs

    def _settle(self, stamp_ns: int, frame) -> List[Paired]:
        found = self._control_at(stamp_ns)
        if found is None:
            self._reject('no_control')
            return []
        control_stamp, control = found
        if control is None:
            self._reject('invalid_label')
            return []
        if stamp_ns - control_stamp > self.config.max_control_age_ns:
            self._reject('control_too_old')
            return []
        return [Paired(stamp_ns, frame, control)]

    def _control_at(self, stamp_ns: int) -> Optional[Tuple[int, Optional[Control]]]:
        for control_stamp, control in reversed(self._controls):
            if control_stamp <= stamp_ns:
                return control_stamp, control
        return None

    def _reject(self, reason: str):
        self.rejected[reason] += 1
