"""
Raw camera frames as numpy arrays, validated (no ROS imports).

ROS ``sensor_msgs/Image`` fields come in as plain values, so the recorder, the policy and the
tests share one place that knows encodings and the ways a frame can be broken.

Every decoded frame is bounded (:data:`MIN_SIDE`, :data:`MAX_SIDE`, :data:`MAX_ASPECT`,
:data:`MAX_ROW_PADDING`): buffers derived from a frame (the policy's annotated image, a
review overlay, the model's preprocessing) stay bounded whatever arrives on the wire; a
1 x 600 frame would otherwise make a 320 x 192000 annotated image.
"""
import io
from typing import Tuple

import cv2
import numpy as np
from PIL import Image as PilImage, UnidentifiedImageError

# encoding -> channels; CARLA publishes bgra8.
CHANNELS = {'bgra8': 4, 'rgba8': 4, 'bgr8': 3, 'rgb8': 3, 'mono8': 1}
# Bounds of a usable frame (px); sim_bridge's image_width/height ranges are the same.
MIN_SIDE = 16
MAX_SIDE = 4096
MAX_ASPECT = 8.0  # longer side / shorter side
MAX_ROW_PADDING = 1024  # bytes a row's step may exceed width x channels by


class ImageError(ValueError):
    """A frame that cannot be used; ``reason`` is a short counter key."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f'{reason}: {detail}')
        self.reason = reason


def decode_raw(encoding: str, height: int, width: int, step: int, data) -> np.ndarray:
    """
    Return an ``H x W x C`` uint8 view of raw image bytes, or raise :class:`ImageError`.

    :param encoding: ROS image encoding (``bgra8``, ``rgb8``, ...).
    :param height: rows.
    :param width: columns.
    :param step: bytes per row (may include padding).
    :param data: bytes-like pixel buffer (``msg.data``).
    """
    channels = CHANNELS.get(encoding)
    if channels is None:
        raise ImageError('unsupported_encoding',
                         f'{encoding!r} (supported: {", ".join(sorted(CHANNELS))})')
    check_size(width, height)
    if step < width * channels:
        raise ImageError('truncated_image', f'step {step} < width {width} x {channels} channels')
    if step > width * channels + MAX_ROW_PADDING:
        raise ImageError('bad_step', f'step {step} for width {width} x {channels} channels '
                         f'(at most {MAX_ROW_PADDING} bytes of row padding)')
    buffer = np.frombuffer(data, dtype=np.uint8)  # free: no copy
    if buffer.size == 0:
        raise ImageError('empty_image', 'no pixel data')
    if buffer.size < step * height:
        raise ImageError('truncated_image', f'{buffer.size} bytes < step {step} x {height} rows')
    if buffer.size > step * height:
        raise ImageError('data_size_mismatch',
                         f'{buffer.size} bytes > step {step} x {height} rows')
    rows = buffer.reshape(height, step)
    return rows[:, :width * channels].reshape(height, width, channels)


def check_size(width: int, height: int) -> None:
    """
    Raise :class:`ImageError` unless ``width`` x ``height`` is within the frame bounds.

    :param width: columns.
    :param height: rows.
    """
    if height <= 0 or width <= 0:
        raise ImageError('empty_image', f'{width}x{height}')
    if min(width, height) < MIN_SIDE:
        raise ImageError('image_too_small', f'{width}x{height} (sides >= {MIN_SIDE} px)')
    if max(width, height) > MAX_SIDE:
        raise ImageError('image_too_large', f'{width}x{height} (sides <= {MAX_SIDE} px)')
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise ImageError('bad_aspect_ratio',
                         f'{width}x{height} (at most {MAX_ASPECT:g}:1)')


def decode_compressed(data) -> np.ndarray:
    """
    Return the ``H x W x 3`` BGR frame of compressed bytes (JPEG, PNG), or raise ImageError.

    The size is read from the header and checked before anything is decompressed, so a small
    message cannot claim a huge frame.

    :param data: bytes-like ``sensor_msgs/CompressedImage.data``.
    """
    buffer = np.frombuffer(data, dtype=np.uint8)
    if buffer.size == 0:
        raise ImageError('empty_image', 'no compressed data')
    try:
        with PilImage.open(io.BytesIO(buffer.tobytes())) as header:
            width, height = header.size
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise ImageError('undecodable_jpeg', f'{buffer.size} bytes: {error}') from None
    check_size(width, height)
    bgr = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
    if bgr is None:
        raise ImageError('undecodable_jpeg', f'{buffer.size} bytes ({width}x{height} header)')
    return bgr


def to_rgb(image: np.ndarray, encoding: str) -> np.ndarray:
    """Convert a decoded frame to contiguous ``H x W x 3`` RGB."""
    conversions = {
        'bgra8': cv2.COLOR_BGRA2RGB, 'rgba8': cv2.COLOR_RGBA2RGB,
        'bgr8': cv2.COLOR_BGR2RGB, 'mono8': cv2.COLOR_GRAY2RGB,
    }
    if encoding == 'rgb8':
        return np.ascontiguousarray(image)
    return cv2.cvtColor(np.ascontiguousarray(image), conversions[encoding])


def to_bgr(image: np.ndarray, encoding: str) -> np.ndarray:
    """Convert a decoded frame to contiguous ``H x W x 3`` BGR (OpenCV's order)."""
    conversions = {
        'bgra8': cv2.COLOR_BGRA2BGR, 'rgba8': cv2.COLOR_RGBA2BGR,
        'rgb8': cv2.COLOR_RGB2BGR, 'mono8': cv2.COLOR_GRAY2BGR,
    }
    if encoding == 'bgr8':
        return np.ascontiguousarray(image)
    return cv2.cvtColor(np.ascontiguousarray(image), conversions[encoding])


def raw_fields(image: np.ndarray) -> Tuple[int, int, int, bytes]:
    """
    Return ``(height, width, step, data)`` for filling a ``sensor_msgs/Image``.

    ``bytes`` because assigning a numpy array to ``Image.data`` costs ~240 ms at 800x600.
    """
    image = np.ascontiguousarray(image)
    height, width = image.shape[:2]
    return height, width, image.strides[0], image.tobytes()
