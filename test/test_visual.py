"""The one overlay style and MP4 writer: bounded canvases, the same picture everywhere."""
import cv2
from llava_drive.control import Control
from llava_drive.policy.annotate import annotate_frame
from llava_drive.visual.overlay import (ASPECT_RANGE, canvas, draw_overlay, MAX_WIDTH,
                                        MIN_WIDTH)
from llava_drive.visual.video import Mp4Writer
import numpy as np
import pytest


def test_a_frame_within_bounds_keeps_its_size_and_pixels():
    frame = np.random.default_rng(0).integers(0, 255, (601, 801, 3), dtype=np.uint8)
    assert np.array_equal(canvas(frame), frame[:, :, ::-1])


@pytest.mark.parametrize('height, width', [(600, 1), (1, 600), (1, 1), (3000, 4000),
                                           (100, 8192), (60, 80), (4096, 16)])
def test_any_frame_makes_a_canvas_of_bounded_size_and_shape(height, width):
    frame = np.full((height, width, 3), 200, np.uint8)
    for picture in (canvas(frame), draw_overlay(frame, Control(steer=0.5), 1.0, 0.0, 0),
                    annotate_frame(frame, Control(), expert=Control(steer=-0.5),
                                   gate_reason='stale_image', command='LEFT',
                                   waypoints=np.ones((4, 2)))):
        out_height, out_width = picture.shape[:2]
        assert MIN_WIDTH <= out_width <= MAX_WIDTH
        low, high = ASPECT_RANGE
        assert low - 0.01 <= out_width / out_height <= high + 0.01
    # The frame itself is on the canvas, centred, scaled with its aspect ratio kept.
    picture = canvas(frame)
    assert (picture == 200).all(axis=2).any()


def test_small_frames_are_upscaled_without_letterbox():
    frame = np.random.default_rng(1).integers(0, 255, (60, 80, 3), dtype=np.uint8)
    picture = canvas(frame)
    assert picture.shape == (240, 320, 3)
    assert np.array_equal(picture[::4, ::4], frame[:, :, ::-1])


def test_the_writer_evens_sizes_resizes_later_frames_and_discards(tmp_path):
    video = Mp4Writer(tmp_path / 'sub' / 'v.mp4', fps=10.0)
    video.write(np.zeros((61, 81, 3), np.uint8))
    video.write(np.full((120, 160, 3), 255, np.uint8))  # another size: resized to the first
    assert video.close() == tmp_path / 'sub' / 'v.mp4' and video.frames == 2
    capture = cv2.VideoCapture(str(video.path))
    ok, first = capture.read()
    ok2, second = capture.read()
    capture.release()
    assert ok and ok2 and first.shape == second.shape == (60, 80, 3)
    assert second.mean() > first.mean() + 200
    video.discard()
    assert not video.path.exists() and video.frames == 0
    assert Mp4Writer(tmp_path / 'none.mp4').close() is None
    assert not (tmp_path / 'none.mp4').exists()
