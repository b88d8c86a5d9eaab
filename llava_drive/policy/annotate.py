"""
What the policy sees and says, for RViz: an annotated camera frame and a path (no ROS imports).

:func:`annotate_frame` draws the predicted control with the bag reviewer's overlay
(:func:`llava_drive.bag.review.draw_overlay`: steering arrow, throttle and brake bars, text)
and adds the expert's steering when known and the safety gate's verdict.
:func:`steering_path` gives the path the predicted steering implies (kinematic bicycle model)
in the vehicle frame, for a ``LINE_STRIP`` marker. For waypoint heads the frame also shows the
route command, the target speed, the controller's output and a top-down inset of the
predicted waypoints with the point the controller pursues.
"""
import math
from typing import Optional

import cv2
from llava_drive.bag.review import draw_overlay
from llava_drive.control import Control
import numpy as np

# draw_overlay's steering arrow: from the bottom centre, full lock = 60 degrees.
ARROW_FULL_LOCK_DEG = 60.0
EXPERT_COLOUR = (255, 0, 255)  # BGR magenta, beside the overlay's yellow prediction
BRAKE_COLOUR = (0, 0, 255)
WAYPOINT_COLOUR = (255, 200, 0)  # BGR light blue
ROUTE_COLOUR = (0, 255, 255)  # BGR yellow
# The top-down inset shows this many metres ahead of the car.
INSET_RANGE_M = 20.0


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


def _arrow(frame, steer: float, colour, unit: int):
    """Draw a steering arrow the way ``draw_overlay`` does, in ``colour``."""
    height, width = frame.shape[:2]
    base = (width // 2, height - 12 * unit)
    angle = math.radians(ARROW_FULL_LOCK_DEG) * float(np.clip(steer, -1, 1))
    length = height // 4
    tip = (int(base[0] + length * math.sin(angle)), int(base[1] - length * math.cos(angle)))
    cv2.arrowedLine(frame, base, tip, colour, max(1, unit), tipLength=0.25)


def _waypoint_inset(frame, waypoints, lookahead, unit: int):
    """Draw a top-down box (car at its bottom centre) with the waypoints and lookahead."""
    height, width = frame.shape[:2]
    side = max(40, min(height, width) // 3)
    left, top = width - side - 2 * unit, 36 * unit
    if top + side > height:
        top = max(0, height - side)
    cv2.rectangle(frame, (left, top), (left + side, top + side), (0, 0, 0), -1)
    cv2.rectangle(frame, (left, top), (left + side, top + side), (255, 255, 255), 1)
    scale = (side - 4) / INSET_RANGE_M

    def pixel(forward, lateral):
        # Image x grows to the right (negative REP-103 y), image y upwards with forward.
        x = left + side / 2 - lateral * scale
        y = top + side - 2 - forward * scale
        return int(np.clip(x, left, left + side)), int(np.clip(y, top, top + side))

    points = [pixel(0.0, 0.0)] + [pixel(f, lat) for f, lat in np.asarray(waypoints)]
    cv2.polylines(frame, [np.array(points, np.int32)], False, WAYPOINT_COLOUR, max(1, unit))
    for point in points[1:]:
        cv2.circle(frame, point, 2 * unit, WAYPOINT_COLOUR, -1)
    if lookahead is not None:
        cv2.circle(frame, pixel(*lookahead), 3 * unit, ROUTE_COLOUR, 1)
    cv2.rectangle(frame, (points[0][0] - unit, points[0][1] - 2 * unit),
                  (points[0][0] + unit, points[0][1]), (255, 255, 255), -1)


def annotate_frame(image_rgb: np.ndarray, predicted: Control, speed: float = math.nan,
                   time_s: float = 0.0, expert: Optional[Control] = None,
                   gate_reason: Optional[str] = None, latency_s: float = math.nan,
                   command: Optional[str] = None, waypoints=None,
                   target_speed: float = math.nan, lookahead=None) -> np.ndarray:
    """
    Return a BGR image: the frame with the predicted control, the expert's, and the gate.

    The prediction is drawn by ``draw_overlay`` (yellow arrow, bars, two text lines); the
    expert's steering is a thin magenta arrow; a red frame and text show a braking gate.

    :param image_rgb: ``H x W x 3`` RGB frame (frames narrower than 320 px are upscaled).
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
    frame = draw_overlay(image_rgb, predicted, speed, time_s, None)
    height, width = frame.shape[:2]
    unit = max(1, width // 160)
    lines = []
    if command is not None:
        lines.append((f'route: {command}', ROUTE_COLOUR))
    if waypoints is not None:
        lines.append((f'target {target_speed:.1f} m/s -> steer {predicted.steer:+.2f} '
                      f'thr {predicted.throttle:.2f} brk {predicted.brake:.2f}',
                      WAYPOINT_COLOUR))
    if expert is not None and math.isfinite(expert.steer):
        _arrow(frame, expert.steer, EXPERT_COLOUR, unit)
        lines.append((f'expert steer {expert.steer:+.2f}  thr {expert.throttle:.2f}  '
                      f'brk {expert.brake:.2f}', EXPERT_COLOUR))
    if math.isfinite(latency_s):
        lines.append((f'latency {latency_s * 1000:.0f} ms', (255, 255, 255)))
    if gate_reason:
        lines.append((f'gate: {gate_reason}', (80, 80, 255)))  # light red: legible on black
    if lines:
        # A dark band under draw_overlay's header, the same way it draws its own text.
        top = int(24 * unit)
        scale, pitch = 0.3 * unit, 10 * unit
        cv2.rectangle(frame, (0, top), (width, top + pitch * len(lines) + 3 * unit),
                      (0, 0, 0), -1)
        for row, (line, colour) in enumerate(lines):
            cv2.putText(frame, line, (3, top + pitch * (row + 1)), cv2.FONT_HERSHEY_SIMPLEX,
                        scale, colour, 1, cv2.LINE_AA)
    if waypoints is not None and np.isfinite(np.asarray(waypoints, dtype=float)).all():
        _waypoint_inset(frame, waypoints, lookahead, unit)
    if gate_reason:
        cv2.rectangle(frame, (0, 0), (width - 1, height - 1), BRAKE_COLOUR, 2 * unit)
    return frame
