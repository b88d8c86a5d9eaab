"""Camera renderer: format, sky and road placement, marking geometry, obstacles, intrinsics."""
import math

import cv2
from llava_drive.sim.appearance import Appearance
from llava_drive.sim.camera import CameraConfig
from llava_drive.sim.world import SimConfig, Simulator
import numpy as np
import pytest

W, H = 400, 300


@pytest.fixture(scope='module')
def sim():
    """Return a plain-looking (not randomized) simulator on a short route."""
    return Simulator(SimConfig(width=W, height=H, route_seed=4, route_length_m=150.0,
                               randomize=False))


def place(sim, s, lateral_from_lane=0.0, yaw_offset=0.0):
    """Teleport the car to arc length ``s``, offset left of its lane centre."""
    x, y, yaw = sim.route.pose_at(s, sim.config.lane_offset_m + lateral_from_lane)
    sim.teleport(x, y, yaw + yaw_offset)


def test_intrinsics_formula():
    """Use fx = fy = W / (2 tan(fov / 2)) and the image centre as principal point."""
    assert CameraConfig(800, 600, 90.0).intrinsics() == pytest.approx((400.0, 400.0, 400, 300))
    fx, fy, cx, cy = CameraConfig(640, 480, 60.0).intrinsics()
    assert fx == fy == pytest.approx(320.0 / math.tan(math.radians(30.0)))
    assert (cx, cy) == (320.0, 240.0)
    assert CameraConfig(640, 480, 60.0).k_matrix()[0] == pytest.approx(fx)
    sim = Simulator(SimConfig(width=320, height=240, fov_deg=100.0, route_length_m=100.0))
    assert sim.camera_intrinsics() == pytest.approx(
        CameraConfig(320, 240, 100.0).intrinsics())


def test_image_is_bgra8_with_sky_on_top_and_road_at_the_bottom(sim):
    """Render H x W x 4 uint8, opaque, blue sky at the top, grey asphalt below the centre."""
    place(sim, 10.0)
    image = sim.render()
    assert image.shape == (H, W, 4) and image.dtype == np.uint8
    assert (image[..., 3] == 255).all()
    top = image[:20, :, :3].reshape(-1, 3).mean(axis=0)
    assert top[0] > top[2] + 30 and top[0] > 150  # blue dominates
    bottom = image[-30:, W // 2 - 20:W // 2 + 20, :3].reshape(-1, 3).mean(axis=0)
    road = np.array(Appearance().road_bgr, float)
    assert np.abs(bottom - road).max() < 15
    grass = np.array(Appearance().grass_bgr, float)
    assert np.abs(bottom - grass).max() > 25


def bright_columns(image, row):
    """Return the columns of lane-marking pixels (near white) in ``row``."""
    bgr = image[row, :, :3].astype(int)
    return np.nonzero(bgr.min(axis=1) > 180)[0]


def test_lane_markings_shift_when_the_car_moves_sideways(sim):
    """Moving the car 0.5 m left moves the right edge line right by fx * 0.5 / depth pixels."""
    row = H - 40
    place(sim, 12.0)
    centred = bright_columns(sim.render(), row)
    place(sim, 12.0, lateral_from_lane=0.5)
    shifted = bright_columns(sim.render(), row)
    right_a = centred[centred > W // 2]
    right_b = shifted[shifted > W // 2]
    assert len(right_a) > 0 and len(right_b) > 0
    config = sim.camera_config()
    fx, fy, cx, cy = config.intrinsics()
    pitch = math.radians(config.pitch_deg)
    # Depth along the optical axis of the ground seen by ``row``.
    up_c = -(row - cy) / fy
    depth = config.mount_height_m / (math.sin(pitch) - up_c * math.cos(pitch))
    expected = fx * 0.5 / depth
    measured = right_b.mean() - right_a.mean()
    assert measured == pytest.approx(expected, abs=3.0)
    assert expected > 10.0
    # The left (dashed or edge) markings of the same frame also move right.
    half_left = W // 2 - int(expected) - 20
    left_a, left_b = centred[centred < half_left], shifted[shifted < W // 2]
    if len(left_a) and len(left_b):
        assert left_b.mean() > left_a.mean()


def asphalt_columns(image, row):
    """Return the longest run of asphalt-like columns (grey, mid brightness) in ``row``."""
    bgr = image[row, :, :3].astype(int)
    grey = (bgr.max(axis=1) - bgr.min(axis=1) < 10) & (bgr.mean(axis=1) > 60) & \
        (bgr.mean(axis=1) < 150)
    cols = np.nonzero(grey)[0]
    if len(cols) == 0:
        return cols
    # Split where columns are not adjacent (a 2 px gap is a lane marking), keep the longest.
    runs = np.split(cols, np.nonzero(np.diff(cols) > 12)[0] + 1)
    return max(runs, key=len)


def test_road_recedes_to_the_horizon(sim):
    """The asphalt narrows row by row towards the horizon, and the sky has none."""
    place(sim, 10.0)
    image = sim.render()
    horizon = sim.camera_config().horizon_row()
    widths = []
    for offset in (60, 30, 15, 6):
        cols = asphalt_columns(image, int(horizon) + offset)
        assert len(cols) > 0, offset
        widths.append(cols.max() - cols.min())
    assert widths == sorted(widths, reverse=True) and widths[0] > 2 * widths[-1]
    assert len(asphalt_columns(image, int(horizon) - 10)) == 0


def test_view_turns_with_the_car(sim):
    """Yawing the car left moves the road right in the image."""
    row = int(sim.camera_config().horizon_row()) + 30
    centres = []
    for yaw_offset in (0.0, math.radians(10.0)):
        place(sim, 10.0, yaw_offset=yaw_offset)
        centres.append(asphalt_columns(sim.render(), row).mean())
    fx = sim.camera_config().intrinsics()[0]
    assert centres[1] - centres[0] > 0.5 * fx * math.tan(math.radians(10.0))


def test_parked_car_is_drawn():
    """A parked car ahead appears as a box over the road, and not with obstacles off."""
    config = {'width': W, 'height': H, 'route_seed': 5, 'route_length_m': 200.0,
              'randomize': False}
    with_cars = Simulator(SimConfig(**config))
    without = Simulator(SimConfig(obstacles=False, **config))
    car = with_cars.route.parked_cars[0]
    for sim in (with_cars, without):
        place(sim, car.s - 12.0)
    a = with_cars.render()[..., :3].astype(int)
    b = without.render()[..., :3].astype(int)
    changed = np.abs(a - b).max(axis=2) > 40
    assert changed.sum() > 300
    rows, cols = np.nonzero(changed)
    # On the car's side of the image, and standing on the ground below the horizon.
    assert (cols.mean() > W / 2) == (car.lateral < 0)
    assert rows.max() > with_cars.camera_config().horizon_row()


def test_randomized_seeds_look_different_and_repeat():
    """Two seeds give different colours; the same seed renders the same image."""
    def image(seed):
        sim = Simulator(SimConfig(width=160, height=120, route_seed=seed, route_length_m=80.0))
        return sim.render()
    a, b, a_again = image(1), image(2), image(1)
    assert np.array_equal(a, a_again)
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 5


def test_png_round_trip(tmp_path, sim):
    """Write a frame with OpenCV and read it back unchanged."""
    place(sim, 20.0)
    image = sim.render()
    path = str(tmp_path / 'frame.png')
    assert cv2.imwrite(path, image)
    np.testing.assert_array_equal(cv2.imread(path, cv2.IMREAD_UNCHANGED), image)
