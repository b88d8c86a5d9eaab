"""
Shared helpers for the feature tests: one tiny LLaVA per test process, frames and small bags.

Import the fixtures into a test module with ``from fixtures_llava import tiny_llava_dir``.
"""
from pathlib import Path

from llava_drive.control import Control
import numpy as np
import pytest

_CACHE = {}


def tiny_llava_path(tmp_path_factory) -> Path:
    """
    Return the directory of the tiny LLaVA, created once per test process.

    :param tmp_path_factory: pytest's session temporary directory factory.
    """
    if 'tiny' not in _CACHE:
        from llava_drive.features.tiny_model import create_tiny_llava
        _CACHE['tiny'] = create_tiny_llava(tmp_path_factory.mktemp('llava') / 'tiny', seed=0)
    return _CACHE['tiny']


@pytest.fixture(scope='session')
def tiny_llava_dir(tmp_path_factory):
    """Provide the tiny LLaVA directory (seed 0)."""
    return tiny_llava_path(tmp_path_factory)


def scene_frame(index: int, height: int = 48, width: int = 64) -> np.ndarray:
    """
    Return a deterministic RGB frame that differs from frame to frame (a moving road scene).

    :param index: frame number; different numbers give different frames.
    :param height: frame height.
    :param width: frame width.
    """
    rows, cols = np.mgrid[0:height, 0:width]
    frame = np.zeros((height, width, 3), np.uint8)
    frame[..., 2] = 200 - 100 * rows // height  # sky to ground
    frame[..., 1] = 60 + 40 * (rows > height // 2)
    lane = np.abs(cols - (width // 2 + (index * 7) % (width // 2) - width // 4)) < 3
    frame[lane & (rows > height // 2)] = (250, 250, 250)
    frame[..., 0] = (frame[..., 0].astype(np.int64) + 37 * index) % 256
    return frame


def write_bag(path, count: int = 6, start_ns: int = 1_700_000_000_000_000_000,
              episode: int = 0, size=(48, 64), poses=None, plan=None, controls=None,
              speeds=None) -> list:
    """
    Write a small bag with ``count`` pairs via BagWriter; return the written controls.

    :param path: bag directory to create.
    :param count: number of image/control pairs.
    :param start_ns: stamp of the first pair.
    :param episode: episode id of the single episode.
    :param size: (height, width) of the frames.
    :param poses: optional ``(x, y, yaw)`` per pair, written as odometry.
    :param plan: optional global plan dict for the start marker (as sim_bridge writes it).
    :param controls: optional control per pair (default: a steer ramp).
    :param speeds: optional speed per pair (default: the pair index).
    """
    import math

    from llava_drive.bag.format import OdometrySample
    from llava_drive.bag.writer import BagWriter, BagWriterConfig

    written = []
    writer = BagWriter(BagWriterConfig(path=str(path), image_format='raw', backend='mcap'))
    try:
        marker = {'event': 'start', 'episode': episode}
        if plan is not None:
            marker['global_plan'] = plan
        writer.write_episode_marker(start_ns, marker)
        for index in range(count):
            control = controls[index] if controls else Control(
                steer=round(-0.5 + index / count, 3), throttle=0.5, brake=0.1 * (index % 2))
            odometry = None
            if poses is not None:
                x, y, yaw = poses[index]
                odometry = OdometrySample(position=(x, y, 0.0), orientation=(
                    0.0, 0.0, math.sin(yaw / 2), math.cos(yaw / 2)))
            writer.write_pair(start_ns + index * 50_000_000,
                              scene_frame(index + 10 * episode, *size), 'rgb8', control,
                              speed=speeds[index] if speeds else float(index),
                              odometry=odometry)
            written.append(control)
    finally:
        writer.close()
    return written
