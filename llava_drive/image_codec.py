"""
Raw camera frames as numpy arrays, validated (no ROS imports).

ROS ``sensor_msgs/Image`` fields come in as plain values, so the recorder, the policy and the
tests share one place that knows encodings and the ways a frame can be broken.
"""
from typing import Tuple

import cv2
import numpy as np

# encoding -> channels; CARLA publishes bgra8.
CHANNELS = {'bgra8': 4, 'rgba8': 4, 'bgr8': 3, 'rgb8': 3, 'mono8': 1}


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
    if height <= 0 or width <= 0:
        raise ImageError('empty_image', f'{width}x{height}')
    if step < width * channels:
        raise ImageError('truncated_image', f'step {step} < width {width} x {channels} channels')
    buffer = np.frombuffer(data, dtype=np.uint8)  # free: no copy
    if buffer.size == 0:
        raise ImageError('empty_image', 'no pixel data')
    if buffer.size < step * height:
        raise ImageError('truncated_image', f'{buffer.size} bytes < step {step} x {height} rows')
    rows = buffer[:step * height].reshape(height, step)
    return rows[:, :width * channels].reshape(height, width, channels)


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
