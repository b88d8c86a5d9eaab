"""
Front camera renderer: sky, perspective ground from the top-down raster, parked cars.

The ground is a plane, so the ground point seen by every pixel below the horizon is fixed in
the vehicle frame: it is computed once per camera configuration. Each frame applies the
vehicle pose to those points with one affine ``cv2.transform`` and samples the raster with
``cv2.remap``; rows are grouped into bands by distance and each band samples the pyramid level
that matches its pixel footprint, so far road does not alias. Distance haze blends towards the
horizon colour. Parked cars are drawn as shaded boxes (body, glass cabin, wheels), far to near.

Frames: the vehicle frame has x forward, y left, z up, origin at the rear axle on the ground.
The camera sits ``mount_forward_m`` ahead of the rear axle, ``mount_height_m`` up, pitched
down by ``pitch_deg``. Output is ``H x W x 4`` uint8 **bgra8**, like CARLA's camera.
"""
from dataclasses import dataclass
import math
from typing import List, Sequence, Tuple

import cv2
import numpy as np

# Distance over which the haze reaches 63% of its strength (m).
HAZE_DISTANCE_M = 140.0
# Ground farther than this is not sampled precisely (it is all haze and border grass).
MAX_GROUND_DISTANCE_M = 5000.0
# Parked cars farther than this are not drawn (they would be a few pixels in the haze).
MAX_OBSTACLE_DISTANCE_M = 150.0
NEAR_PLANE_M = 0.2
LIGHT_DIRECTION = np.array([0.4, 0.3, 0.87])


@dataclass(frozen=True)
class CameraConfig:
    """
    Pinhole camera mounted on the car.

    :param width: image width (px)
    :param height: image height (px)
    :param fov_deg: horizontal field of view (deg)
    :param mount_height_m: height above the ground
    :param mount_forward_m: position ahead of the rear axle
    :param pitch_deg: downward pitch (deg)
    """

    width: int = 800
    height: int = 600
    fov_deg: float = 90.0
    mount_height_m: float = 1.6
    mount_forward_m: float = 1.5
    pitch_deg: float = 5.0

    def __post_init__(self):
        """Check image size, field of view, height and pitch."""
        for name in ('width', 'height'):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 16:
                raise ValueError(f'CameraConfig.{name} must be an integer >= 16, got {value!r}')
        if not 1.0 <= self.fov_deg <= 170.0:
            raise ValueError(f'CameraConfig.fov_deg must be in [1, 170], got {self.fov_deg!r}')
        if not 0.2 <= self.mount_height_m <= 10.0:
            raise ValueError(f'CameraConfig.mount_height_m must be in [0.2, 10], '
                             f'got {self.mount_height_m!r}')
        if not -45.0 <= self.pitch_deg <= 60.0:
            raise ValueError(f'CameraConfig.pitch_deg must be in [-45, 60], '
                             f'got {self.pitch_deg!r}')

    def intrinsics(self) -> Tuple[float, float, float, float]:
        """Return ``(fx, fy, cx, cy)`` with ``fx = fy = W / (2 tan(fov / 2))``, centre W/2, H/2."""
        focal = self.width / (2.0 * math.tan(math.radians(self.fov_deg) / 2.0))
        return focal, focal, self.width / 2.0, self.height / 2.0

    def k_matrix(self) -> List[float]:
        """Return the row-major 3x3 camera matrix ``K`` (for ``sensor_msgs/CameraInfo.k``)."""
        fx, fy, cx, cy = self.intrinsics()
        return [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]

    def horizon_row(self) -> float:
        """Return the image row of the horizon (can be outside the image)."""
        _, fy, _, cy = self.intrinsics()
        return cy - fy * math.tan(math.radians(self.pitch_deg))


def _car_boxes(car) -> List[Tuple[Tuple[float, ...], str]]:
    """Return boxes ``((x0, x1, y0, y1, z0, z1), part)`` of a parked car in its own frame."""
    hl, hw = 0.5 * car.length, 0.5 * car.width
    wheel_x = hl - 0.85
    boxes = [((-hl, hl, -hw, hw, 0.32, 0.95), 'body'),
             ((-hl + 1.0, hl - 1.4, -hw + 0.1, hw - 0.1, 0.95, car.height), 'cabin')]
    for x in (-wheel_x, wheel_x):
        for y0, y1 in ((-hw + 0.02, -hw + 0.3), (hw - 0.3, hw - 0.02)):
            boxes.append(((x - 0.33, x + 0.33, y0, y1, 0.0, 0.66), 'wheel'))
    for y0, y1 in ((-hw + 0.1, -hw + 0.4), (hw - 0.4, hw - 0.1)):
        boxes.append(((-hl - 0.03, -hl, y0, y1, 0.72, 0.86), 'tail_lamp'))
        boxes.append(((hl, hl + 0.03, y0, y1, 0.72, 0.84), 'head_lamp'))
    return boxes


# Boxes of _car_boxes in painting order: four wheels, body, four lamps, cabin.
_PAINT_ORDER = (2, 3, 4, 5, 0, 6, 7, 8, 9, 1)
_PART_COLOURS = {'wheel': (28.0, 28.0, 28.0), 'tail_lamp': (30.0, 30.0, 200.0),
                 'head_lamp': (200.0, 235.0, 245.0)}

# Faces of a box as corner indices (corner bit 0: x, bit 1: y, bit 2: z) and outward normals.
_FACES = (
    ((0, 2, 6, 4), (-1.0, 0.0, 0.0)), ((1, 5, 7, 3), (1.0, 0.0, 0.0)),
    ((0, 4, 5, 1), (0.0, -1.0, 0.0)), ((2, 3, 7, 6), (0.0, 1.0, 0.0)),
    ((0, 1, 3, 2), (0.0, 0.0, -1.0)), ((4, 6, 7, 5), (0.0, 0.0, 1.0)),
)


class Camera:
    """
    Render camera images of a :class:`~llava_drive.sim.raster.TopDownRaster` world.

    :param config: camera configuration
    :param raster: the painted ground
    :param parked_cars: obstacles to draw as boxes
    """

    def __init__(self, config: CameraConfig, raster, parked_cars: Sequence = ()):
        """Precompute the per-pixel ground points, the sky and the haze."""
        self.config = config
        self.raster = raster
        self.parked_cars = list(parked_cars)
        ap = raster.appearance
        self._haze_bgr = np.array([c * ap.brightness for c in ap.sky_horizon_bgr]).clip(0, 255)
        self._background = self._sky()
        self._bands = self._ground_bands()
        self._cars = self._prepare_cars()

    def intrinsics(self) -> Tuple[float, float, float, float]:
        """Return ``(fx, fy, cx, cy)``."""
        return self.config.intrinsics()

    # -- precomputation ------------------------------------------------------------------------

    def _sky(self) -> np.ndarray:
        cfg = self.config
        ap = self.raster.appearance
        _, fy, _, cy = cfg.intrinsics()
        rows = np.arange(cfg.height, dtype=np.float64)
        # Elevation angle of each row's ray above the horizontal.
        elevation = np.arctan((cy - rows) / fy) - math.radians(cfg.pitch_deg)
        t = np.clip(elevation / math.radians(35.0), 0.0, 1.0) ** 0.7
        horizon = np.array(ap.sky_horizon_bgr, float)
        zenith = np.array(ap.sky_zenith_bgr, float)
        colours = (horizon[None] * (1 - t[:, None]) + zenith[None] * t[:, None]) * ap.brightness
        sky = np.repeat(colours[:, None, :], cfg.width, axis=1)
        # Soft clouds: smooth noise, stronger higher up.
        rng = np.random.default_rng([self.raster.route.seed, 0xC10D])
        # Coarse grids with more rows than columns: clouds stretched horizontally.
        clouds = sum(weight * cv2.resize(rng.random(shape), (cfg.width, cfg.height),
                                         interpolation=cv2.INTER_CUBIC)
                     for shape, weight in (((14, 5), 0.65), ((40, 14), 0.35)))
        cover = np.clip((clouds - 0.5) * 2.5, 0, 1) * np.sqrt(t[:, None]) * 0.85
        white = 245.0 * ap.brightness
        sky = sky * (1 - cover[..., None]) + white * cover[..., None]
        return sky.clip(0, 255).astype(np.uint8)

    def _ground_bands(self):
        """Split the rows below the horizon into bands of one pyramid level each."""
        cfg = self.config
        fx, fy, cx, cy = cfg.intrinsics()
        pitch = math.radians(cfg.pitch_deg)
        first = max(0, int(math.floor(cfg.horizon_row())) + 1)
        rows = np.arange(first, cfg.height, dtype=np.float64)
        up_c = -(rows - cy) / fy                      # camera-aligned ray, forward component 1
        fwd = math.cos(pitch) + up_c * math.sin(pitch)
        up = -math.sin(pitch) + up_c * math.cos(pitch)
        valid = up < -1e-9
        rows, fwd, up = rows[valid], fwd[valid], up[valid]
        t = np.minimum(cfg.mount_height_m / -up, MAX_GROUND_DISTANCE_M)  # depth on the axis
        ground_x = cfg.mount_forward_m + t * fwd
        cols = np.arange(cfg.width, dtype=np.float64)
        left = -(cols - cx) / fx
        # Pixel footprint on the ground: across (t / fx) and along (row-to-row distance).
        along = np.abs(np.gradient(ground_x)) if len(ground_x) > 1 else np.ones_like(ground_x)
        footprint = np.sqrt((t / fx) * np.maximum(along, 1e-6))
        level = np.floor(np.log2(np.maximum(footprint / self.raster.resolution, 1.0)))
        level = np.clip(level, 0, len(self.raster.levels) - 1).astype(int)
        ap = self.raster.appearance
        haze = ap.haze * (1.0 - np.exp(-t / HAZE_DISTANCE_M))
        bands = []
        start = 0
        for i in range(1, len(rows) + 1):
            if i == len(rows) or level[i] != level[start]:
                r = slice(start, i)
                points = np.empty((i - start, cfg.width, 2), np.float32)
                points[..., 0] = ground_x[r, None]
                points[..., 1] = (t[r, None] * left[None, :])
                weights = np.repeat(haze[r, None], cfg.width, axis=1).astype(np.float32)
                bands.append({
                    'rows': (int(rows[start]), int(rows[i - 1]) + 1),
                    'level': int(level[start]),
                    'points': points,
                    'haze': weights,
                    'clear': (1.0 - weights).astype(np.float32),
                })
                start = i
        self._haze_image = np.empty((cfg.height, cfg.width, 3), np.uint8)
        self._haze_image[:] = self._haze_bgr.astype(np.uint8)
        return bands

    def _prepare_cars(self):
        """Return per car: corner array (boxes x 8 x 3) in the car frame and face colours."""
        ap = self.raster.appearance
        prepared = []
        for car in self.parked_cars:
            boxes = _car_boxes(car)
            corners = np.array([[(b[0][i & 1], b[0][2 + ((i >> 1) & 1)], b[0][4 + (i >> 2)])
                                 for i in range(8)] for b in boxes], float)
            paint = np.array(car.colour_bgr, float)
            glass = np.array((70.0, 60.0, 55.0))
            colours = []
            for _, part in boxes:
                face_colours = []
                for _, normal in _FACES:
                    shade = 0.55 + 0.45 * max(0.0, float(np.dot(normal, LIGHT_DIRECTION)))
                    if part in _PART_COLOURS:
                        base = np.array(_PART_COLOURS[part])
                    elif part == 'cabin' and normal[2] == 0.0:
                        base = glass
                    else:
                        base = paint
                    face_colours.append(base * shade * ap.brightness)
                colours.append(face_colours)
            prepared.append((car, corners, np.array(colours)))
        return prepared

    # -- rendering -----------------------------------------------------------------------------

    def render(self, rear_x: float, rear_y: float, yaw: float) -> np.ndarray:
        """
        Render the view from a vehicle pose.

        :param rear_x: map x of the rear axle centre (m)
        :param rear_y: map y of the rear axle centre (m)
        :param yaw: heading (rad)
        :return: ``H x W x 4`` uint8 bgra8 image
        """
        out = self._background.copy()
        c, s = math.cos(yaw), math.sin(yaw)
        vehicle_to_map = np.array([[c, -s, rear_x], [s, c, rear_y], [0.0, 0.0, 1.0]])
        border = self.raster.border_bgr
        for band in self._bands:
            r0, r1 = band['rows']
            level = band['level']
            matrix = self.raster.world_to_level(level) @ vehicle_to_map
            coords = cv2.transform(band['points'], matrix)
            ground = cv2.remap(self.raster.levels[level], coords, None, cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=border)
            out[r0:r1] = cv2.blendLinear(ground, self._haze_image[r0:r1], band['clear'],
                                         band['haze'])
        if self._cars:
            self._draw_cars(out, rear_x, rear_y, yaw)
        return cv2.cvtColor(out, cv2.COLOR_BGR2BGRA)

    def _draw_cars(self, out: np.ndarray, rear_x: float, rear_y: float, yaw: float):
        cfg = self.config
        fx, fy, cx, cy = cfg.intrinsics()
        pitch = math.radians(cfg.pitch_deg)
        cos_p, sin_p = math.cos(pitch), math.sin(pitch)
        c, s = math.cos(yaw), math.sin(yaw)
        visible = []
        for car, corners, colours in self._cars:
            dx, dy = car.x - rear_x, car.y - rear_y
            ahead = c * dx + s * dy
            if ahead < -car.length or dx * dx + dy * dy > MAX_OBSTACLE_DISTANCE_M ** 2:
                continue
            # Car frame -> map -> vehicle frame -> camera-aligned (forward, left, up).
            cc, cs = math.cos(car.yaw), math.sin(car.yaw)
            mx = car.x + cc * corners[..., 0] - cs * corners[..., 1]
            my = car.y + cs * corners[..., 0] + cc * corners[..., 1]
            vx = c * (mx - rear_x) + s * (my - rear_y) - cfg.mount_forward_m
            vy = -s * (mx - rear_x) + c * (my - rear_y)
            vz = corners[..., 2] - cfg.mount_height_m
            forward = vx * cos_p - vz * sin_p
            up = vx * sin_p + vz * cos_p
            cam = np.stack((forward, vy, up), axis=-1)          # boxes x 8 x 3
            # Camera position in the car frame, for back-face culling.
            ex = rear_x + c * cfg.mount_forward_m - car.x
            ey = rear_y + s * cfg.mount_forward_m - car.y
            eye = np.array((cc * ex + cs * ey, -cs * ex + cc * ey, cfg.mount_height_m))
            faces = []
            # Wheels, then body and lamps, then cabin: back to front for any camera above the
            # bonnet, which per-face depth sorting gets wrong for the wheels.
            for b in _PAINT_ORDER:
                box = corners[b]
                for f, (idx, normal) in enumerate(_FACES):
                    if np.dot(normal, eye - box[list(idx)].mean(axis=0)) <= 0:
                        continue
                    faces.append((cam[b, list(idx)], colours[b, f]))
            visible.append((dx * dx + dy * dy, faces))
        visible.sort(key=lambda item: -item[0])
        haze = self.raster.appearance.haze
        for distance2, faces in visible:
            amount = haze * (1.0 - math.exp(-math.sqrt(distance2) / HAZE_DISTANCE_M))
            for poly, colour in faces:
                poly = _clip_near(poly)
                if poly is None:
                    continue
                u = cx - fx * poly[:, 1] / poly[:, 0]
                v = cy - fy * poly[:, 2] / poly[:, 0]
                pts = np.round(np.stack((u, v), axis=1) * 8).astype(np.int32)
                if np.abs(pts).max() > 2 ** 27:
                    continue
                shade = colour * (1 - amount) + self._haze_bgr * amount
                cv2.fillConvexPoly(out, pts, tuple(float(x) for x in shade), cv2.LINE_AA, 3)


def _clip_near(poly: np.ndarray):
    """Clip a camera-frame polygon to ``forward >= NEAR_PLANE_M``; None if nothing is left."""
    inside = poly[:, 0] >= NEAR_PLANE_M
    if inside.all():
        return poly
    if not inside.any():
        return None
    out = []
    count = len(poly)
    for i in range(count):
        a, b = poly[i], poly[(i + 1) % count]
        a_in, b_in = a[0] >= NEAR_PLANE_M, b[0] >= NEAR_PLANE_M
        if a_in:
            out.append(a)
        if a_in != b_in:
            t = (NEAR_PLANE_M - a[0]) / (b[0] - a[0])
            out.append(a + t * (b - a))
    return np.array(out) if len(out) >= 3 else None
