"""
The control overlay drawn on camera frames (no ROS imports).

One style for every picture of driving (``bag review``, the policy's annotated image, the
evaluation video). Sizes are in units of :func:`overlay_unit` (1/160 of the width of a 4:3
frame): a text header (two lines) and optional note lines below it, a steering arrow from the
bottom centre (full lock = 60 degrees), a steer bar along the bottom, the throttle bar on the
right and the brake bar on the left. Every frame is first put on a :func:`canvas` of bounded
size and aspect ratio, whatever the camera sends.
"""
import math
from typing import Optional, Sequence, Tuple

import cv2
from llava_drive.control import Control
import numpy as np

MIN_WIDTH = 320  # small frames are upscaled so the text stays legible
MAX_WIDTH = 1920  # an overlay is for looking at: larger frames are downscaled
ASPECT_RANGE = (0.5, 4.0)  # width / height; frames outside it are letterboxed
ARROW_FULL_LOCK_DEG = 60.0
WHITE = (255, 255, 255)
PREDICTION_COLOUR = (0, 255, 255)  # BGR yellow: the drawn control
THROTTLE_COLOUR = (0, 200, 0)
BRAKE_COLOUR = (0, 0, 255)
WAYPOINT_COLOUR = (255, 200, 0)  # BGR light blue
LOOKAHEAD_COLOUR = (0, 255, 255)
INSET_RANGE_M = 20.0  # the waypoint inset shows this many metres ahead of the car
INSET_TOP_UNITS = 36
FONT = cv2.FONT_HERSHEY_SIMPLEX
# A text line: (text, BGR colour).
Line = Tuple[str, Tuple[int, int, int]]


def canvas(image_rgb: np.ndarray) -> np.ndarray:
    """
    Return a BGR copy of an RGB frame, scaled (and letterboxed) to bounded size and shape.

    The width is brought into ``[MIN_WIDTH, MAX_WIDTH]`` keeping the aspect ratio; a frame
    whose width / height lies outside :data:`ASPECT_RANGE` is centred on a black canvas of the
    nearest allowed shape, so a 1 x 600 frame makes a 320 x 640 picture, not a 320 x 192000
    one. A frame already within bounds keeps its size and pixels.

    :param image_rgb: ``H x W x 3`` RGB frame (H, W >= 1).
    """
    frame = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR)
    height, width = frame.shape[:2]
    out_width = int(np.clip(width, MIN_WIDTH, MAX_WIDTH))
    low, high = ASPECT_RANGE
    if low <= width / height <= high:
        out_height = round(height * out_width / width)
    else:
        out_height = round(out_width / float(np.clip(width / height, low, high)))
    if (out_width, out_height) == (width, height):
        return frame
    scale = min(out_width / width, out_height / height)
    fit = (min(out_width, max(1, round(width * scale))),
           min(out_height, max(1, round(height * scale))))
    frame = cv2.resize(frame, fit, interpolation=cv2.INTER_NEAREST if scale > 1
                       else cv2.INTER_AREA)
    if fit == (out_width, out_height):
        return frame
    board = np.zeros((out_height, out_width, 3), np.uint8)
    top, left = (out_height - fit[1]) // 2, (out_width - fit[0]) // 2
    board[top:top + fit[1], left:left + fit[0]] = frame
    return board


def overlay_unit(frame: np.ndarray) -> int:
    """Return the overlay's length unit in pixels for a canvas (wide frames: by height)."""
    height, width = frame.shape[:2]
    return max(1, min(width, height * 4 // 3) // 160)


def _clipped(value: float, low: float, high: float) -> float:
    return float(np.clip(value, low, high)) if math.isfinite(value) else 0.0


def draw_steer_arrow(frame: np.ndarray, steer: float, colour, width_units: int = 2) -> None:
    """
    Draw a steering arrow from the bottom centre (full lock = 60 degrees), in place.

    :param frame: BGR canvas.
    :param steer: CARLA steer in [-1, 1] (clipped; NaN draws it straight).
    :param colour: BGR colour.
    :param width_units: line width in overlay units.
    """
    unit = overlay_unit(frame)
    height, width = frame.shape[:2]
    base = (width // 2, height - 12 * unit)
    angle = math.radians(ARROW_FULL_LOCK_DEG) * _clipped(steer, -1.0, 1.0)
    length = height // 4
    tip = (int(base[0] + length * math.sin(angle)), int(base[1] - length * math.cos(angle)))
    cv2.arrowedLine(frame, base, tip, colour, width_units * unit, tipLength=0.25)


def draw_text_band(frame: np.ndarray, lines: Sequence[Line], top: int, pitch_units: int,
                   scale_units: float) -> int:
    """
    Draw text lines on a black band across the frame, in place; return the band's bottom row.

    :param frame: BGR canvas.
    :param lines: ``(text, colour)`` per line.
    :param top: first row of the band.
    :param pitch_units: line pitch in overlay units.
    :param scale_units: font scale per overlay unit.
    """
    unit = overlay_unit(frame)
    pitch = pitch_units * unit
    bottom = top + pitch * len(lines) + 2 * unit
    cv2.rectangle(frame, (0, top), (frame.shape[1], bottom), (0, 0, 0), -1)
    for row, (text, colour) in enumerate(lines):
        cv2.putText(frame, text, (3, top + pitch * (row + 1) - unit), FONT, scale_units * unit,
                    colour, 1, cv2.LINE_AA)
    return bottom


def draw_border(frame: np.ndarray, colour, width_units: int) -> None:
    """Draw a frame around the whole canvas, in place (an excluded pair, a braking gate)."""
    height, width = frame.shape[:2]
    cv2.rectangle(frame, (0, 0), (width - 1, height - 1), colour,
                  width_units * overlay_unit(frame))


def _draw_control(frame: np.ndarray, control: Control) -> None:
    """Draw the steering arrow, the steer bar and the throttle and brake bars, in place."""
    unit = overlay_unit(frame)
    height, width = frame.shape[:2]
    steer = _clipped(control.steer, -1.0, 1.0)
    draw_steer_arrow(frame, steer, PREDICTION_COLOUR)
    # Steer bar along the bottom, filled from the centre.
    bar_y = height - 6 * unit
    half = width // 3
    cv2.rectangle(frame, (width // 2 - half, bar_y - 2 * unit),
                  (width // 2 + half, bar_y + 2 * unit), WHITE, 1)
    cv2.rectangle(frame, (width // 2, bar_y - 2 * unit),
                  (int(width // 2 + half * steer), bar_y + 2 * unit), PREDICTION_COLOUR, -1)
    # Throttle (right) and brake (left) vertical bars.
    bar_height = height // 3
    for value, x, colour, label in ((control.throttle, width - 10 * unit, THROTTLE_COLOUR, 'T'),
                                    (control.brake, 4 * unit, BRAKE_COLOUR, 'B')):
        value = _clipped(value, 0.0, 1.0)
        top = height - 16 * unit - bar_height
        cv2.rectangle(frame, (x, top), (x + 6 * unit, top + bar_height), WHITE, 1)
        cv2.rectangle(frame, (x, int(top + bar_height * (1 - value))),
                      (x + 6 * unit, top + bar_height), colour, -1)
        cv2.putText(frame, label, (x, top - 2 * unit), FONT, 0.3 * unit, WHITE, 1, cv2.LINE_AA)


def draw_overlay(image_rgb: np.ndarray, control: Control, speed: float, time_s: float,
                 episode: Optional[int], excluded: bool = False,
                 notes: Sequence[Line] = ()) -> np.ndarray:
    """
    Return a BGR canvas of a frame (see :func:`canvas`) with the control drawn on it.

    A steering arrow and a steer bar in yellow, a green throttle bar on the right, a red brake
    bar on the left, a two-line header, and the ``notes`` in a smaller band below it.

    :param image_rgb: ``H x W x 3`` RGB frame.
    :param control: the control to draw.
    :param speed: speed in m/s (NaN when unknown).
    :param time_s: seconds (since the bag start, or the stamp).
    :param episode: episode id (-1: none; None leaves it out of the text).
    :param excluded: the pair is excluded by ``exclusions.yaml`` (red border and text).
    :param notes: further ``(text, colour)`` lines.
    """
    frame = canvas(image_rgb)
    _draw_control(frame, control)
    episode_text = f'  ep {episode}' if episode is not None else ''
    header = (f't={time_s:.2f}s{episode_text}  {speed:.1f} m/s',
              f'steer {control.steer:+.2f}  thr {control.throttle:.2f}  brk {control.brake:.2f}')
    bottom = draw_text_band(frame, [(line, WHITE) for line in header], 0, 11, 0.35)
    if notes:
        draw_text_band(frame, notes, bottom, 10, 0.3)
    if excluded:
        unit = overlay_unit(frame)
        height, width = frame.shape[:2]
        draw_border(frame, BRAKE_COLOUR, 3)
        cv2.putText(frame, 'EXCLUDED', (width // 2 - 30 * unit, height // 2), FONT, 0.5 * unit,
                    BRAKE_COLOUR, unit, cv2.LINE_AA)
    return frame


def draw_waypoint_inset(frame: np.ndarray, waypoints, lookahead=None) -> None:
    """
    Draw a top-down box (car at its bottom centre) with waypoints and a lookahead, in place.

    Nothing is drawn when a waypoint is not finite.

    :param frame: BGR canvas.
    :param waypoints: ``[K, 2]`` path in the vehicle frame (forward, left in m).
    :param lookahead: the point a controller pursues (forward, left), or None.
    """
    waypoints = np.asarray(waypoints, dtype=float)
    if not np.isfinite(waypoints).all():
        return
    unit = overlay_unit(frame)
    height, width = frame.shape[:2]
    side = max(40, min(height, width) // 3)
    left, top = width - side - 2 * unit, INSET_TOP_UNITS * unit
    if top + side > height:
        top = max(0, height - side)
    cv2.rectangle(frame, (left, top), (left + side, top + side), (0, 0, 0), -1)
    cv2.rectangle(frame, (left, top), (left + side, top + side), WHITE, 1)
    scale = (side - 4) / INSET_RANGE_M

    def pixel(forward, lateral):
        # Image x grows to the right (negative REP-103 y), image y upwards with forward.
        x = left + side / 2 - lateral * scale
        y = top + side - 2 - forward * scale
        return int(np.clip(x, left, left + side)), int(np.clip(y, top, top + side))

    points = [pixel(0.0, 0.0)] + [pixel(f, lat) for f, lat in waypoints]
    cv2.polylines(frame, [np.array(points, np.int32)], False, WAYPOINT_COLOUR, unit)
    for point in points[1:]:
        cv2.circle(frame, point, 2 * unit, WAYPOINT_COLOUR, -1)
    if lookahead is not None:
        cv2.circle(frame, pixel(*lookahead), 3 * unit, LOOKAHEAD_COLOUR, 1)
    cv2.rectangle(frame, (points[0][0] - unit, points[0][1] - 2 * unit),
                  (points[0][0] + unit, points[0][1]), WHITE, -1)
