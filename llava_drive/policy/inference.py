"""
Run the driving model off the ROS executor: newest frame in, control out (no ROS imports).

:func:`load_policy` pairs a checkpoint with the extractor its feature specification names and
refuses a mismatch. :class:`InferenceWorker` is a thread with a one-slot mailbox: a frame that
arrives while the model is busy replaces the waiting one (the replaced frame is counted as
dropped, stale), so the model always works on the newest image and the executor that serves
timers never waits for it.
"""
from collections import deque
from dataclasses import dataclass
import math
from pathlib import Path
import threading
import time
from typing import Callable, Optional

from llava_drive.control import Control
from llava_drive.features.route_prompt import NO_PLAN_COMMAND, RouteInput
from llava_drive.image_codec import to_rgb
from llava_drive.learning.checkpoint import check_feature_spec, load_checkpoint
from llava_drive.policy.controller import ControllerConfig, WaypointController
import numpy as np

# Time step assumed by the controller's PID when stamps do not give one (20 Hz).
DEFAULT_DT_S = 0.05


class PolicyLoadError(ValueError):
    """The checkpoint or the model it names cannot be used."""


@dataclass
class LoadedPolicy:
    """
    An extractor and the head trained on its features.

    :param extractor: a ``LlavaFeatureExtractor`` (or anything with ``extract`` and ``spec``).
    :param head: an ``ActionHead`` in eval mode.
    :param config: the checkpoint's ``config.json``.
    """

    extractor: object
    head: object
    config: dict


def load_policy(checkpoint_dir, model_dir=None, device='cpu', dtype=None) -> LoadedPolicy:
    """
    Load a checkpoint and the extractor its feature spec describes; refuse a mismatch.

    :param checkpoint_dir: a checkpoint directory (``model.safetensors`` + ``config.json``).
    :param model_dir: the LLaVA model directory; None or '' uses the path in the spec.
    :param device: torch device for extractor and head.
    :param dtype: compute dtype; None or '' uses the spec's.
    :raises PolicyLoadError: missing checkpoint or model, or features that differ from those
        the head was trained on (the message names every difference).
    """
    from llava_drive.features.choices import ChoiceError, resolve_device
    from llava_drive.features.extractor import ExtractorError, LlavaFeatureExtractor
    from llava_drive.learning.checkpoint import CheckpointError, FeatureSpecMismatch

    try:  # before anything loads: torch's own refusal of a device is a long traceback
        resolve_device(device, dtype or None)
    except ChoiceError as error:
        raise PolicyLoadError(str(error)) from None
    if not checkpoint_dir:
        raise PolicyLoadError('no checkpoint given: set the checkpoint parameter to a '
                              'checkpoint directory (llava-drive train --out DIR)')
    checkpoint_dir = Path(checkpoint_dir)
    if not checkpoint_dir.is_dir():
        raise PolicyLoadError(f'checkpoint directory not found: {checkpoint_dir}')
    try:
        head, config = load_checkpoint(checkpoint_dir, device=device)
    except CheckpointError as error:
        raise PolicyLoadError(str(error)) from None
    spec = config.get('feature_spec') or {}
    model = Path(model_dir or spec.get('model_name', ''))
    if not (model / 'config.json').is_file():
        raise PolicyLoadError(
            f'model directory {str(model)!r} ('
            + ('model parameter' if model_dir else f'named by {checkpoint_dir}/config.json')
            + ') is not a model directory; pass the LLaVA model the checkpoint was trained on')
    try:
        extractor = LlavaFeatureExtractor(
            model, mode=spec['mode'], layer=spec['layer'], grid=spec['grid'] or 1,
            prompt=spec['prompt'], device=device, dtype=dtype or spec['dtype'],
            preprocessing=spec['preprocessing'],
            command_phrases=spec.get('command_phrases') or None)
    except (ExtractorError, KeyError) as error:
        raise PolicyLoadError(f'cannot build the extractor {checkpoint_dir} was trained with: '
                              f'{error}') from None
    try:
        check_feature_spec(config, extractor.spec)
    except FeatureSpecMismatch as error:
        raise PolicyLoadError(f'refusing checkpoint {checkpoint_dir} with model {model}: '
                              f'{error}') from None
    return LoadedPolicy(extractor, head, config)


@dataclass
class Frame:
    """
    One camera frame waiting for the model.

    :param stamp_ns: the image's header stamp.
    :param image: ``H x W x C`` uint8 array as decoded (a view of the message is fine).
    :param encoding: its ROS encoding (``bgra8``...), converted to RGB on the worker thread.
    :param received: wall time it arrived (monotonic seconds).
    :param speed: vehicle speed in m/s when it arrived (NaN when unknown).
    :param route: the route command and target point when it arrived (None: follow the lane).
    """

    stamp_ns: int
    image: np.ndarray
    encoding: str
    received: float
    speed: float = math.nan
    route: Optional[RouteInput] = None


@dataclass
class InferenceResult:
    """
    The model's answer for one frame.

    :param stamp_ns: the source image's stamp.
    :param control: the raw (ungated) prediction.
    :param received: when the source image arrived (monotonic seconds).
    :param forward_s: time spent in extractor and head (plus any injected delay).
    :param latency_s: from arrival of the image to the result (waiting included).
    :param rgb: the frame as RGB (for drawing), or None.
    :param speed: the speed fed to the head (NaN when unused or unknown).
    :param route: the route input the frame was conditioned on.
    :param waypoints: a waypoint head's ``[K, 2]`` path (forward, left in m), else None.
    :param target_speed: a waypoint head's target speed (m/s), else NaN.
    :param lookahead: the point the controller pursued (forward, left), or None.
    :param controller_valid: False when the controller refused the prediction (full brake).
    """

    stamp_ns: int
    control: Control
    received: float
    forward_s: float
    latency_s: float
    rgb: Optional[np.ndarray] = None
    speed: float = math.nan
    route: Optional[RouteInput] = None
    waypoints: Optional[np.ndarray] = None
    target_speed: float = math.nan
    lookahead: Optional[tuple] = None
    controller_valid: bool = True


def percentile(values, q: float) -> float:
    """
    Return the ``q``-th percentile of ``values``, NaN when empty.

    :param values: numbers.
    :param q: percentile in [0, 100].
    """
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if len(values) \
        else math.nan


class FeatureHistory:
    """
    The last K frames' features (and speeds, commands, targets) a temporal head needs.

    Newest last. Until K frames have been seen the oldest known frame is repeated, so the
    head can drive from the first frame.

    :param window: K.
    """

    def __init__(self, window: int):
        """Start empty."""
        self.window = int(window)
        self.frames = deque(maxlen=self.window)

    def push(self, features: np.ndarray, speed: float, command: int = int(NO_PLAN_COMMAND),
             target=(math.nan, math.nan)):
        """
        Add one frame; return ``(features [K, D], speeds [K], commands [K], targets [K, 2])``.

        :param features: the frame's feature vector [D].
        :param speed: the speed at the frame (m/s).
        :param command: the route command in effect (RoadOption value).
        :param target: the next target point (forward, left) in m.
        """
        self.frames.append((np.asarray(features, dtype=np.float32), float(speed),
                            int(command), tuple(target)))
        frames = [self.frames[0]] * (self.window - len(self.frames)) + list(self.frames)
        features, speeds, commands, targets = zip(*frames)
        return (np.stack(features), np.asarray(speeds, dtype=np.float32),
                np.asarray(commands, dtype=np.int64), np.asarray(targets, dtype=np.float32))

    def clear(self):
        """Forget every frame (a new episode)."""
        self.frames.clear()


class InferenceWorker:
    """
    A thread that runs the model on the newest frame only and reports every result.

    :param policy: the loaded extractor and head.
    :param on_result: called with an :class:`InferenceResult` on the worker thread.
    :param debug_delay_s: extra seconds slept per frame (tests of the safety gate).
    :param stats_window: number of recent frames the latency and rate statistics cover.
    :param keep_rgb: pass the RGB frame on in the result (for the annotated image).
    :param on_error: called with the exception when a frame fails (the thread goes on).
    :param controller: gains of the waypoint controller (waypoint heads; None: defaults).
    """

    def __init__(self, policy: LoadedPolicy, on_result: Callable[[InferenceResult], None],
                 debug_delay_s: float = 0.0, stats_window: int = 200, keep_rgb: bool = False,
                 on_error: Callable[[Exception], None] = None,
                 controller: Optional[ControllerConfig] = None):
        """Prepare the mailbox; :meth:`start` starts the thread."""
        if not 0.0 <= debug_delay_s < 3600.0:
            raise ValueError(f'debug_delay_s must be in [0, 3600), got {debug_delay_s!r}')
        self.policy = policy
        self.on_result = on_result
        self.on_error = on_error
        self.debug_delay_s = float(debug_delay_s)
        self.keep_rgb = keep_rgb
        self.history = FeatureHistory(policy.head.window)
        self.uses_speed = bool(policy.head.uses_speed)
        head_config = getattr(policy.head, 'config', None)
        self.uses_command = bool(getattr(head_config, 'use_command', False))
        self.uses_target = bool(getattr(head_config, 'use_target', False))
        self.controller = WaypointController(controller) \
            if getattr(policy.head, 'output_kind', 'control') == 'waypoints' else None
        self._last_stamp_ns = None
        self._slot: Optional[Frame] = None
        self._condition = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name='inference', daemon=True)
        self.submitted = 0
        self.processed = 0
        self.dropped_stale = 0
        self.errors = 0
        self._forward = deque(maxlen=stats_window)
        self._latency = deque(maxlen=stats_window)
        self._finished = deque(maxlen=stats_window)

    def start(self) -> 'InferenceWorker':
        """Start the thread; return self."""
        self._thread.start()
        return self

    def submit(self, frame: Frame) -> None:
        """
        Offer a frame; it replaces a frame still waiting (counted in ``dropped_stale``).

        :param frame: the newest camera frame.
        """
        with self._condition:
            if self._slot is not None:
                self.dropped_stale += 1
            self._slot = frame
            self.submitted += 1
            self._condition.notify()

    def stop(self, timeout: float = 5.0) -> None:
        """
        Stop the thread after the frame in progress.

        :param timeout: seconds to wait for it.
        """
        with self._condition:
            self._stopping = True
            self._slot = None
            self._condition.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def infer(self, frame: Frame) -> InferenceResult:
        """
        Run extractor and head on one frame (on the calling thread); return the result.

        :param frame: the frame.
        """
        rgb = to_rgb(frame.image, frame.encoding)
        speed = frame.speed if math.isfinite(frame.speed) else 0.0
        route = frame.route or RouteInput(NO_PLAN_COMMAND, speed)
        forward_started = time.monotonic()
        features = self.policy.extractor.extract([rgb], [route])[0].float().cpu().numpy()
        window, speeds, commands, targets = self.history.push(
            features, speed, int(route.command), (route.target_forward, route.target_left))
        output = self.policy.head.predict(window, speeds if self.uses_speed else None,
                                          commands if self.uses_command else None,
                                          targets if self.uses_target else None)
        if self.debug_delay_s:
            time.sleep(self.debug_delay_s)
        forward_done = time.monotonic()
        extra = {}
        if self.controller is None:
            control = Control(steer=float(output[0]), throttle=float(output[1]),
                              brake=float(output[2]))
        else:
            dt = DEFAULT_DT_S
            if self._last_stamp_ns is not None and frame.stamp_ns > self._last_stamp_ns:
                dt = min(1.0, (frame.stamp_ns - self._last_stamp_ns) / 1e9)
            self._last_stamp_ns = frame.stamp_ns
            waypoints = np.asarray(output[:-1], dtype=np.float64).reshape(-1, 2)
            decided = self.controller.control(waypoints, float(output[-1]), speed, dt)
            control = decided.control
            extra = {'waypoints': waypoints, 'target_speed': float(output[-1]),
                     'lookahead': decided.lookahead, 'controller_valid': decided.valid}
        finished = time.monotonic()
        return InferenceResult(
            stamp_ns=frame.stamp_ns, control=control, received=frame.received,
            forward_s=forward_done - forward_started, latency_s=finished - frame.received,
            rgb=rgb if self.keep_rgb else None,
            speed=speed if self.uses_speed else math.nan, route=route, **extra)

    def _run(self):
        while True:
            with self._condition:
                while self._slot is None and not self._stopping:
                    self._condition.wait()
                if self._stopping:
                    return
                frame, self._slot = self._slot, None
            try:
                result = self.infer(frame)
            except Exception as error:  # noqa: B902 - one bad frame must not end the thread
                self.errors += 1
                if self.on_error is not None:
                    self.on_error(error)
                continue
            with self._condition:
                self.processed += 1
                self._forward.append(result.forward_s)
                self._latency.append(result.latency_s)
                self._finished.append(time.monotonic())
            self.on_result(result)

    def stats(self) -> dict:
        """Return latency percentiles (s), frames/s and counters over the recent window."""
        with self._condition:
            forward, latency = list(self._forward), list(self._latency)
            finished = list(self._finished)
            counters = {'submitted': self.submitted, 'processed': self.processed,
                        'dropped_stale': self.dropped_stale, 'errors': self.errors}
        span = finished[-1] - finished[0] if len(finished) > 1 else 0.0
        return dict(counters,
                    forward_p50_s=percentile(forward, 50), forward_p99_s=percentile(forward, 99),
                    latency_p50_s=percentile(latency, 50), latency_p99_s=percentile(latency, 99),
                    frames_per_s=(len(finished) - 1) / span if span > 0 else 0.0)
