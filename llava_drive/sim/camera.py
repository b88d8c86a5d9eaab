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
from typing import List, NamedTuple, Optional, Sequence, Tuple

import cv2
from llava_drive.config_checks import number_in_range
from llava_drive.nodes.interfaces import CAMERA_HEIGHT, CAMERA_WIDTH
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

    width: int = CAMERA_WIDTH
    height: int = CAMERA_HEIGHT
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
        number_in_range('CameraConfig.fov_deg', self.fov_deg, 1.0, 170.0)
        number_in_range('CameraConfig.mount_height_m', self.mount_height_m, 0.2, 10.0)
        number_in_range('CameraConfig.pitch_deg', self.pitch_deg, -45.0, 60.0)

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


GLASS_BGR = (70.0, 60.0, 55.0)
TYRE_BGR = (28.0, 28.0, 28.0)
TAIL_LAMP_BGR = (30.0, 30.0, 200.0)
HEAD_LAMP_BGR = (200.0, 235.0, 245.0)
TRUNK_BGR = (45.0, 65.0, 95.0)


def car_parts(car) -> List[Tuple[Tuple[float, ...], Tuple[float, float, float], bool]]:
    """
    Return the boxes of a parked car in painting order, in the car's own frame.

    Wheels first, then body and lamps, then the cabin: back to front for any camera above the
    bonnet, which sorting single faces by depth gets wrong for the wheels.

    :param car: a :class:`~llava_drive.sim.obstacles.ParkedCar`
    :return: ``((x0, x1, y0, y1, z0, z1), colour_bgr, glass_sides)`` per box
    """
    hl, hw = 0.5 * car.length, 0.5 * car.width
    wheel_x = hl - 0.85
    paint = tuple(float(c) for c in car.colour_bgr)
    parts = []
    for x in (-wheel_x, wheel_x):
        for y0, y1 in ((-hw + 0.02, -hw + 0.3), (hw - 0.3, hw - 0.02)):
            parts.append(((x - 0.33, x + 0.33, y0, y1, 0.0, 0.66), TYRE_BGR, False))
    parts.append(((-hl, hl, -hw, hw, 0.32, 0.95), paint, False))
    for y0, y1 in ((-hw + 0.1, -hw + 0.4), (hw - 0.4, hw - 0.1)):
        parts.append(((-hl - 0.03, -hl, y0, y1, 0.72, 0.86), TAIL_LAMP_BGR, False))
        parts.append(((hl, hl + 0.03, y0, y1, 0.72, 0.84), HEAD_LAMP_BGR, False))
    parts.append(((-hl + 1.0, hl - 1.4, -hw + 0.1, hw - 0.1, 0.95, car.height), paint, True))
    return parts


def tree_parts(tree) -> List[Tuple[Tuple[float, ...], Tuple[float, float, float], bool]]:
    """
    Return the boxes of a tree in painting order (trunk, lower crown, upper crown).

    :param tree: a :class:`~llava_drive.sim.obstacles.Tree`
    :return: ``((x0, x1, y0, y1, z0, z1), colour_bgr, glass_sides)`` per box
    """
    h, w = tree.height, 0.5 * tree.crown_width
    crown = tuple(float(c) for c in tree.colour_bgr)
    top = tuple(0.85 * c for c in crown)
    return [((-0.15, 0.15, -0.15, 0.15, 0.0, 0.45 * h), TRUNK_BGR, False),
            ((-w, w, -w, w, 0.35 * h, 0.75 * h), crown, False),
            ((-0.6 * w, 0.6 * w, -0.6 * w, 0.6 * w, 0.75 * h, h), top, False)]


# Faces of a box as corner indices (corner bit 0: x, bit 1: y, bit 2: z) and outward normals.
_FACES = (
    ((0, 2, 6, 4), (-1.0, 0.0, 0.0)), ((1, 5, 7, 3), (1.0, 0.0, 0.0)),
    ((0, 4, 5, 1), (0.0, -1.0, 0.0)), ((2, 3, 7, 6), (0.0, 1.0, 0.0)),
    ((0, 1, 3, 2), (0.0, 0.0, -1.0)), ((4, 6, 7, 5), (0.0, 0.0, 1.0)),
)


_FACE_INDEX = np.array([index for index, _ in _FACES])
_FACE_NORMALS = np.array([normal for _, normal in _FACES])


class Camera:
    """
    Render camera images of a :class:`~llava_drive.sim.raster.TopDownRaster` world.

    :param config: camera configuration
    :param raster: the painted ground
    :param parked_cars: parked cars to draw
    :param trees: trees to draw
    :param props: more static props, ``(x, y, yaw, size, parts)`` each, ``parts`` as
        :func:`car_parts` returns them (``size`` widens the field-of-view test)
    """

    def __init__(self, config: CameraConfig, raster, parked_cars: Sequence = (),
                 trees: Sequence = (), props: Sequence = ()):
        """Precompute the per-pixel ground points, the sky, the haze and the props."""
        self.config = config
        self.raster = raster
        self.parked_cars = list(parked_cars)
        self.trees = list(trees)
        self._extra = list(props)
        ap = raster.appearance
        self._haze_bgr = np.array([c * ap.brightness for c in ap.sky_horizon_bgr]).clip(0, 255)
        self._background = self._sky()
        self._bands = self._ground_bands()
        self._static = _pack_props(self._prepare_props())
        self._skyline = self._prepare_skyline()

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
        threshold = 0.75 - 0.4 * ap.cloud_cover
        cover = np.clip((clouds - threshold) * 2.5, 0, 1) * np.sqrt(t[:, None]) * 0.85
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

    def _prepare_props(self):
        """Return the static props as :meth:`prepare_prop` returns them."""
        props = [(car.x, car.y, car.yaw, car.length, car_parts(car)) for car in self.parked_cars]
        props += [(tree.x, tree.y, 0.0, tree.crown_width, tree_parts(tree))
                  for tree in self.trees]
        return [self.prepare_prop(*prop) for prop in props + self._extra]

    def prepare_prop(self, x: float, y: float, yaw: float, size: float, parts):
        """
        Return a prop ready to draw: pose, box corners (boxes x 8 x 3), face centres, colours.

        A part whose third element is ``'lit'`` glows: its colour is neither shaded nor dimmed
        by the lighting (lamps); ``True`` gives it glass sides.

        :param x: map x (m)
        :param y: map y (m)
        :param yaw: heading (rad)
        :param size: extent used by the field-of-view test (m)
        :param parts: ``((x0, x1, y0, y1, z0, z1), colour_bgr, glass_sides)`` per box
        """
        ap = self.raster.appearance
        corners = np.array([[(b[i & 1], b[2 + ((i >> 1) & 1)], b[4 + (i >> 2)])
                             for i in range(8)] for b, _, _ in parts], float)
        colours = np.empty((len(parts), len(_FACES), 3))
        for p, (_, base, glass_sides) in enumerate(parts):
            for f, (_, normal) in enumerate(_FACES):
                if glass_sides == 'lit':
                    colours[p, f] = base
                    continue
                shade = 0.55 + 0.45 * max(0.0, float(np.dot(normal, LIGHT_DIRECTION)))
                colour = GLASS_BGR if glass_sides and normal[2] == 0.0 else base
                colours[p, f] = np.array(colour) * shade * ap.brightness
        centres = corners[:, _FACE_INDEX].mean(axis=2)          # boxes x faces x 3
        return (x, y, yaw, size, corners, centres, colours)

    # -- rendering -----------------------------------------------------------------------------

    def render(self, rear_x: float, rear_y: float, yaw: float,
               dynamic: Sequence = ()) -> np.ndarray:
        """
        Render the view from a vehicle pose.

        :param rear_x: map x of the rear axle centre (m)
        :param rear_y: map y of the rear axle centre (m)
        :param yaw: heading (rad)
        :param dynamic: props of this frame only (moving cars, lit lamps), as
            :meth:`prepare_prop` returns them
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
        self._draw_skyline(out, yaw)
        if self._static is not None or dynamic:
            self._draw_props(out, rear_x, rear_y, yaw, dynamic)
        return cv2.cvtColor(out, cv2.COLOR_BGR2BGRA)

    def _draw_props(self, out: np.ndarray, rear_x: float, rear_y: float, yaw: float,
                    dynamic: Sequence = ()):
        # All props at once in numpy (a town has hundreds): Python only loops over the faces
        # that are drawn.
        cfg = self.config
        fx, fy, cx, cy = cfg.intrinsics()
        pitch = math.radians(cfg.pitch_deg)
        cos_p, sin_p = math.cos(pitch), math.sin(pitch)
        c, s = math.cos(yaw), math.sin(yaw)
        cam_x, cam_y = rear_x + c * cfg.mount_forward_m, rear_y + s * cfg.mount_forward_m
        tan_half_fov = 0.5 * cfg.width / fx
        kept = []
        for batch in (self._static, _pack_props(dynamic)):
            if batch is None:
                continue
            dx, dy = batch.x - cam_x, batch.y - cam_y
            ahead = c * dx + s * dy
            distance2 = dx * dx + dy * dy
            visible = (ahead >= -batch.size) & (distance2 <= MAX_OBSTACLE_DISTANCE_M ** 2) & \
                (np.abs(-s * dx + c * dy) <= np.maximum(ahead, 0.0) * tan_half_fov +
                 2.0 * batch.size)  # not well outside the field of view
            boxes = visible[batch.owner]
            kept.append((distance2[batch.owner][boxes], batch.corners[boxes],
                         batch.centres[boxes], batch.normals[boxes], batch.colours[boxes]))
        if not kept:
            return
        distance2, corners, centres, normals, colours = (np.concatenate(a) for a in zip(*kept))
        if not len(distance2):
            return
        order = np.argsort(-distance2, kind='stable')  # far to near, a prop's boxes in order
        distance2, corners = distance2[order], corners[order]
        centres, normals, colours = centres[order], normals[order], colours[order]
        # Map -> vehicle frame -> camera-aligned (forward, left, up), every corner at once.
        mx, my = corners[..., 0] - rear_x, corners[..., 1] - rear_y
        vx = c * mx + s * my - cfg.mount_forward_m
        vy = -s * mx + c * my
        vz = corners[..., 2] - cfg.mount_height_m
        forward = vx * cos_p - vz * sin_p
        up = vx * sin_p + vz * cos_p
        eye = np.array((cam_x, cam_y, cfg.mount_height_m))
        front = np.einsum('bfk,bfk->bf', eye - centres, normals) > 0  # back-face culling
        ahead = forward >= NEAR_PLANE_M
        depth = np.where(ahead, forward, 1.0)
        pixels = np.round(np.stack((cx - fx * vy / depth, cy - fy * up / depth), axis=-1) * 8)
        pixels = np.ascontiguousarray(pixels.astype(np.int32)[:, _FACE_INDEX])  # b x f x 4 x 2
        whole = ahead[:, _FACE_INDEX].all(axis=2)
        # A face wholly off the image (1 px of antialiasing spared) or absurdly far off it
        # (beyond fillConvexPoly's range) is skipped.
        low, high = pixels.min(axis=2), pixels.max(axis=2)
        onscreen = (high[..., 0] >= -16) & (low[..., 0] <= 8 * cfg.width + 16) & \
            (high[..., 1] >= -16) & (low[..., 1] <= 8 * cfg.height + 16) & \
            (np.maximum(-low, high).max(axis=2) < 2 ** 27)
        boxes, faces = np.nonzero(front & (onscreen | ~whole))
        amount = self.raster.appearance.haze * \
            (1.0 - np.exp(-np.sqrt(distance2[boxes, None]) / HAZE_DISTANCE_M))
        shades = colours[boxes, faces] * (1.0 - amount) + self._haze_bgr * amount
        cam = None
        for b, f, shade in zip(boxes.tolist(), faces.tolist(), shades.tolist()):
            if whole[b, f]:
                pts = pixels[b, f]
            else:
                if cam is None:
                    cam = np.stack((forward, vy, up), axis=-1)
                poly = _clip_near(cam[b, _FACE_INDEX[f]])
                if poly is None:
                    continue
                u = cx - fx * poly[:, 1] / poly[:, 0]
                v = cy - fy * poly[:, 2] / poly[:, 0]
                pts = np.round(np.stack((u, v), axis=1) * 8).astype(np.int32)
                if np.abs(pts).max() >= 2 ** 27:
                    continue
            cv2.fillConvexPoly(out, pts, shade, cv2.LINE_AA, 3)

    def _prepare_skyline(self):
        """Return a distant tree line: per-azimuth height (px) and colour, and column angles."""
        cfg = self.config
        ap = self.raster.appearance
        fx, fy, cx, _ = cfg.intrinsics()
        rng = np.random.default_rng([self.raster.route.seed, 0x7EE5])
        count = 4096
        azimuth = np.linspace(0.0, 2.0 * math.pi, count, endpoint=False)
        elevation = np.full(count, 0.9)
        for k, amplitude in ((2, 0.5), (5, 0.35), (13, 0.25), (40, 0.15), (110, 0.1)):
            elevation += amplitude * np.sin(k * azimuth + rng.uniform(0, 2 * math.pi))
        # Ragged crowns: noise smoothed over a few samples (about half a degree).
        crowns = np.convolve(rng.random(count + 6), np.ones(7) / 7.0, mode='valid')
        elevation += 0.5 * (crowns - 0.5)
        heights = fy * np.tan(np.radians(np.clip(elevation, 0.1, 3.0)))
        dark = np.array(ap.grass_bgr, float) * 0.5 * ap.brightness
        base = 0.55 * dark + 0.45 * self._haze_bgr
        colours = base[None, :] * (0.9 + 0.2 * rng.random((count, 1)))
        columns = np.arctan((cx - np.arange(cfg.width)) / fx)
        return heights, colours.clip(0, 255).astype(np.uint8), columns

    def _draw_skyline(self, out: np.ndarray, yaw: float):
        """Draw the distant tree line above the horizon; it turns with the car, no parallax."""
        heights, colours, columns = self._skyline
        horizon = self.config.horizon_row()
        bottom = min(self.config.height, int(math.floor(horizon)) + 1)
        top_row = max(0, int(math.floor(horizon - heights.max())))
        if bottom <= top_row:
            return
        count = len(heights)
        index = (((yaw + columns) / (2.0 * math.pi)) * count).astype(np.int64) % count
        tops = horizon - heights[index]
        rows = np.arange(top_row, bottom)[:, None]
        mask = rows >= tops[None, :]
        band = out[top_row:bottom]
        band[mask] = np.broadcast_to(colours[index][None], band.shape)[mask]


class _Props(NamedTuple):
    """Props packed for drawing: per prop its position and size, per box the rest (map frame)."""

    x: np.ndarray        # props
    y: np.ndarray
    size: np.ndarray
    owner: np.ndarray    # boxes: index of the box's prop
    corners: np.ndarray  # boxes x 8 x 3
    centres: np.ndarray  # boxes x faces x 3, face centres
    normals: np.ndarray  # boxes x faces x 3, outward face normals
    colours: np.ndarray  # boxes x faces x 3, lit face colours (bgr)


def _pack_props(props: Sequence) -> Optional[_Props]:
    """Pack props as :meth:`Camera.prepare_prop` returns them; None for none."""
    if not len(props):
        return None
    x, y, yaw, size = (np.array([prop[i] for prop in props], float) for i in range(4))
    owner = np.repeat(np.arange(len(props)), [len(prop[4]) for prop in props])
    corners, centres, colours = (np.concatenate([prop[i] for prop in props]) for i in (4, 5, 6))
    c, s = np.cos(yaw)[owner, None], np.sin(yaw)[owner, None]

    def to_map(points, px, py):
        return np.stack((px + c * points[..., 0] - s * points[..., 1],
                         py + s * points[..., 0] + c * points[..., 1], points[..., 2]), axis=-1)

    px, py = x[owner, None], y[owner, None]
    return _Props(x, y, size, owner, to_map(corners, px, py), to_map(centres, px, py),
                  to_map(np.broadcast_to(_FACE_NORMALS, centres.shape), 0.0, 0.0), colours)


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
