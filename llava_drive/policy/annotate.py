"""
What the policy sees and says, for RViz: an annotated camera frame and a path (no ROS imports).

:func:`annotate_frame` draws the predicted control in the one overlay style
(:func:`llava_drive.visual.overlay.draw_overlay`: steering arrow, throttle and brake bars, text)
and adds the expert's steering when known and the safety gate's verdict.
:func:`steering_path` gives the path the predicted steering implies (kinematic bicycle model)
in the vehicle frame, for a ``LINE_STRIP`` marker. For waypoint heads the frame also shows the
route command, the target speed, the controller's output and a top-down inset of the
predicted waypoints with the point the controller pursues.
"""
import math
from typing import Optional

from llava_drive.control import Control
from llava_drive.visual.overlay import (BRAKE_COLOUR, draw_border, draw_overlay,
                                        draw_steer_arrow, draw_waypoint_inset, WAYPOINT_COLOUR,
                                        WHITE)
import numpy as np

EXPERT_COLOUR = (255, 0, 255)  # BGR magenta, beside the overlay's yellow prediction
ROUTE_COLOUR = (0, 255, 255)  # BGR yellow
GATE_COLOUR = (80, 80, 255)  # light red: legible on black


def steering_path(steer: float, speed: float = 0.0, max_steer_deg: float = 35.0,
                  wheelbase: float = 2.9, length: Optional[float] = None,
                  points: int = 30, horizon_s: float = 2.0, min_length: float = 5.0):
    """
    Return the arc the vehicle follows at constant ``steer``, as ``points x 2`` (x, y) metres.

    Vehicle frame as REP-103: x forward, y left. CARLA's steer +1 turns right, so a positive
    steer bends the path towards negative y. Kinematic bicycle model: curvature
    ``tan(steer * max_steer) / wheelbase``.

    :param steer: CARLA steer in [-1, 1] (NaN draws a straight line).
    :param speed: m/s; sets the default length to the distance covered in ``horizon_s``.
    :param max_steer_deg: wheel angle at full lock (35 in the embedded simulator).
    :param wheelbase: metres between the axles.
    :param length: arc length in metres (None: ``max(min_length, speed * horizon_s)``).
    :param points: number of points, the first at the origin.
    :param horizon_s: seconds of travel drawn when ``length`` is None.
    :param min_length: shortest default length (a standing car still shows its steering).
    """
    if points < 2:
        raise ValueError(f'points must be >= 2, got {points}')
    if wheelbase <= 0:
        raise ValueError(f'wheelbase must be > 0, got {wheelbase}')
    steer = float(np.clip(steer, -1.0, 1.0)) if math.isfinite(steer) else 0.0
    speed = abs(speed) if math.isfinite(speed) else 0.0
    if length is None:
        length = max(min_length, speed * horizon_s)
    curvature = -math.tan(math.radians(max_steer_deg) * steer) / wheelbase
    distance = np.linspace(0.0, float(length), points)
    if abs(curvature) < 1e-9:
        return np.stack([distance, np.zeros_like(distance)], axis=1)
    heading = curvature * distance
    return np.stack([np.sin(heading) / curvature, (1.0 - np.cos(heading)) / curvature], axis=1)


def annotate_frame(image_rgb: np.ndarray, predicted: Control, speed: float = math.nan,
                   time_s: float = 0.0, expert: Optional[Control] = None,
                   gate_reason: Optional[str] = None, latency_s: float = math.nan,
                   command: Optional[str] = None, waypoints=None,
                   target_speed: float = math.nan, lookahead=None) -> np.ndarray:
    """
    Return a BGR image: the frame with the predicted control, the expert's, and the gate.

    The prediction is drawn by ``draw_overlay`` (yellow arrow, bars, two text lines); the
    expert's steering is a thin magenta arrow; a red frame and text show a braking gate.

    :param image_rgb: ``H x W x 3`` RGB frame (put on a canvas of bounded size and shape).
    :param predicted: the model's control.
    :param speed: vehicle speed in m/s (NaN when unknown).
    :param time_s: the frame's stamp in seconds.
    :param expert: the expert's control for the same moment, or None.
    :param gate_reason: why the gate changed the command, or None.
    :param latency_s: image-to-result latency to print (NaN: not printed).
    :param command: the route command in effect (a RoadOption name), or None.
    :param waypoints: a waypoint head's ``[K, 2]`` path (forward, left in m), or None.
    :param target_speed: its target speed (m/s).
    :param lookahead: the point its controller pursued (forward, left), or None.
    """
    notes = []
    if command is not None:
        notes.append((f'route: {command}', ROUTE_COLOUR))
    if waypoints is not None:
        notes.append((f'target {target_speed:.1f} m/s -> steer {predicted.steer:+.2f} '
                      f'thr {predicted.throttle:.2f} brk {predicted.brake:.2f}',
                      WAYPOINT_COLOUR))
    expert_known = expert is not None and math.isfinite(expert.steer)
    if expert_known:
        notes.append((f'expert steer {expert.steer:+.2f}  thr {expert.throttle:.2f}  '
                      f'brk {expert.brake:.2f}', EXPERT_COLOUR))
    if math.isfinite(latency_s):
        notes.append((f'latency {latency_s * 1000:.0f} ms', WHITE))
    if gate_reason:
        notes.append((f'gate: {gate_reason}', GATE_COLOUR))
    frame = draw_overlay(image_rgb, predicted, speed, time_s, None, notes=notes)
    if expert_known:
        draw_steer_arrow(frame, expert.steer, EXPERT_COLOUR, width_units=1)
    if waypoints is not None:
        draw_waypoint_inset(frame, waypoints, lookahead)
    if gate_reason:
        draw_border(frame, BRAKE_COLOUR, 2)
    return frame
