"""
Top-down picture of the world (grass, sidewalks, asphalt, markings) with a mipmap pyramid.

The camera renders the ground by sampling this picture, so everything flat is painted here
once per episode: grass with large patches and fine grain, sidewalks with kerbs, the asphalt
(lanes and parking shoulders), solid edge lines, the dashed centre line and the shadows under
parked cars. ``levels[k]`` is the picture downsampled ``2**k`` times (``cv2.pyrDown``), so far
road can be sampled without aliasing.

Pixel ``(col, row)`` of level 0 covers map ``x = x_min + col * res``, ``y = y_max - row * res``
(rows grow southwards, like an image); :meth:`TopDownRaster.world_to_level` gives the affine
map for any level.
"""
import math
from typing import List, Sequence, Tuple

import cv2
from llava_drive.sim.appearance import Appearance
import numpy as np

# cv2.remap addresses pixels with 16-bit integers.
MAX_RASTER_SIDE = 32000
LEVEL_COUNT = 7
EDGE_LINE_WIDTH_M = 0.15
CENTRE_LINE_WIDTH_M = 0.12
DASH_LENGTH_M = 3.0
DASH_GAP_M = 6.0
KERB_WIDTH_M = 0.25
# Fixed-point bits for sub-pixel polygon vertices in cv2 drawing calls.
SHIFT = 3


def _scaled(colour: Sequence[int], brightness: float) -> Tuple[int, int, int]:
    return tuple(int(min(255, max(0, round(c * brightness)))) for c in colour)


class TopDownRaster:
    """
    Paint the route's ground into an image pyramid.

    :param route: the :class:`~llava_drive.sim.road.Route`
    :param appearance: colours and lighting
    :param resolution_m: metres per pixel of level 0 (made coarser if the picture would exceed
        :data:`MAX_RASTER_SIDE` pixels)
    :param margin_m: grass painted around the road's bounding box
    """

    def __init__(self, route, appearance: Appearance, resolution_m: float = 0.08,
                 margin_m: float = 40.0):
        """Paint the picture and build the pyramid."""
        self.route = route
        self.appearance = appearance
        cfg = route.config
        outer = cfg.lane_width_m + cfg.shoulder_width_m + cfg.sidewalk_width_m
        pts = route.points
        self.x_min = float(pts[:, 0].min()) - outer - margin_m
        self.y_max = float(pts[:, 1].max()) + outer + margin_m
        span_x = float(pts[:, 0].max()) + outer + margin_m - self.x_min
        span_y = self.y_max - (float(pts[:, 1].min()) - outer - margin_m)
        self.resolution = max(resolution_m, max(span_x, span_y) / MAX_RASTER_SIDE)
        self.width = int(math.ceil(span_x / self.resolution))
        self.height = int(math.ceil(span_y / self.resolution))
        rng = np.random.default_rng([route.seed, 0xBEEF])
        brightness = appearance.brightness
        self.border_bgr = _scaled(appearance.grass_bgr, brightness)
        image = self._paint_grass(rng)
        self._paint_road(image)
        self._add_grain(image, rng, 5.0 * appearance.texture_strength)
        # Soften the painted edges a little: the camera magnifies level 0 close to the car.
        cv2.GaussianBlur(image, (3, 3), 0.6, dst=image)
        if abs(brightness - 1.0) > 1e-3:
            cv2.convertScaleAbs(image, dst=image, alpha=brightness)
        self.levels: List[np.ndarray] = [image]
        for _ in range(1, LEVEL_COUNT):
            self.levels.append(cv2.pyrDown(self.levels[-1]))

    # -- geometry ------------------------------------------------------------------------------

    def world_to_level(self, level: int) -> np.ndarray:
        """
        Return the 2x3 affine matrix from map ``(x, y)`` to pixel ``(col, row)`` of a level.

        :param level: pyramid level, 0 = full resolution
        """
        scale = 1.0 / (self.resolution * 2 ** level)
        # Pixel centres: level-k pixel i covers level-0 pixels [i * 2^k, (i + 1) * 2^k).
        offset = 0.5 / 2 ** level - 0.5
        return np.array([[scale, 0.0, -self.x_min * scale + offset],
                         [0.0, -scale, self.y_max * scale + offset]])

    def _to_pixels(self, xy: np.ndarray) -> np.ndarray:
        """Return fixed-point (``SHIFT`` bits) int32 pixel coordinates of map points."""
        col = (xy[:, 0] - self.x_min) / self.resolution
        row = (self.y_max - xy[:, 1]) / self.resolution
        return np.round(np.stack((col, row), axis=1) * (1 << SHIFT)).astype(np.int32)

    def _band(self, inner: float, outer: float, s_from: float = None,
              s_to: float = None) -> np.ndarray:
        """Return the polygon between two lateral offsets over an arc-length interval."""
        a = self.route.offset_path(outer, s_from, s_to)[:, :2]
        b = self.route.offset_path(inner, s_from, s_to)[:, :2]
        if s_from is not None and s_to is not None:
            # Exact dash ends, not the nearest 1 m samples.
            ends_a = [self.route.pose_at(s, outer)[:2] for s in (s_from, s_to)]
            ends_b = [self.route.pose_at(s, inner)[:2] for s in (s_from, s_to)]
            a = np.vstack(([ends_a[0]], a, [ends_a[1]]))
            b = np.vstack(([ends_b[0]], b, [ends_b[1]]))
        return self._to_pixels(np.vstack((a, b[::-1])))

    # -- painting ------------------------------------------------------------------------------

    def _paint_grass(self, rng: np.random.Generator) -> np.ndarray:
        ap = self.appearance
        # Large patches: smooth noise from a coarse grid (about one value per 12 m).
        coarse = rng.random((max(2, self.height // 150), max(2, self.width // 150)))
        coarse = cv2.resize((coarse * 255).astype(np.uint8), (self.width, self.height),
                            interpolation=cv2.INTER_CUBIC)
        channels = []
        for grass, patch in zip(ap.grass_bgr, ap.grass_patch_bgr):
            # convertScaleAbs takes |a * m + b|; both ends are >= 0 so the abs is harmless.
            channels.append(cv2.convertScaleAbs(coarse, alpha=(patch - grass) / 255.0,
                                                beta=float(grass)))
        image = cv2.merge(channels)
        # Medium-scale clumps (about 0.5 m), so motion over grass is visible up close.
        self._add_grain(image, rng, 14.0 * ap.texture_strength, blur=5)
        return image

    def _add_grain(self, image: np.ndarray, rng: np.random.Generator, amplitude: float,
                   blur: int = 0):
        """Add zero-mean luminance noise (a repeated 512 px tile) in place."""
        if amplitude <= 0:
            return
        tile = rng.normal(128.0, 40.0, (512, 512)).clip(0, 255).astype(np.uint8)
        if blur:
            # Blur a wrapped copy so the tile stays seamless.
            pad = 3 * blur
            wrapped = np.pad(tile, pad, mode='wrap')
            tile = cv2.GaussianBlur(wrapped, (0, 0), blur)[pad:-pad, pad:-pad]
            tile = cv2.normalize(tile, None, 0, 255, cv2.NORM_MINMAX)
        reps = (-(-image.shape[0] // 512), -(-image.shape[1] // 512))
        noise = np.tile(tile, reps)[:image.shape[0], :image.shape[1]]
        noise = cv2.merge((noise, noise, noise))
        # image + amplitude * (noise - 128) / 128, saturated to uint8.
        cv2.addWeighted(image, 1.0, noise, amplitude / 128.0, -amplitude, dst=image)

    def _paint_road(self, image: np.ndarray):
        ap = self.appearance
        cfg = self.route.config
        lane = cfg.lane_width_m
        asphalt_edge = lane + cfg.shoulder_width_m
        walk_edge = asphalt_edge + cfg.sidewalk_width_m
        aa = cv2.LINE_AA

        def fill(polygons, colour):
            cv2.fillPoly(image, polygons, colour, aa, SHIFT)

        if cfg.sidewalk_width_m > 0:
            fill([self._band(-walk_edge, walk_edge)], ap.sidewalk_bgr)
            fill([self._band(-(asphalt_edge + KERB_WIDTH_M), asphalt_edge + KERB_WIDTH_M)],
                 ap.kerb_bgr)
        fill([self._band(-asphalt_edge, asphalt_edge)], ap.road_bgr)
        # Slightly darker, worn lane centres where tyres run.
        worn = tuple(int(c * 0.95) for c in ap.road_bgr)
        for centre in (-0.5 * lane, 0.5 * lane):
            for wheel in (-0.8, 0.8):
                d = centre + wheel
                fill([self._band(d - 0.2, d + 0.2)], worn)
        for car in self.route.parked_cars:
            shadow = car.corners() * 1.0
            centre = shadow.mean(axis=0)
            shadow = centre + 1.12 * (shadow - centre)
            fill([self._to_pixels(shadow)], tuple(int(c * 0.45) for c in ap.road_bgr))
        half = 0.5 * EDGE_LINE_WIDTH_M
        fill([self._band(lane - half, lane + half), self._band(-lane - half, -lane + half)],
             ap.marking_bgr)
        half = 0.5 * CENTRE_LINE_WIDTH_M
        s_start = float(self.route.points[0, 3])
        s_end = float(self.route.points[-1, 3])
        dashes = []
        s = s_start + 1.0
        while s + DASH_LENGTH_M < s_end:
            dashes.append(self._band(-half, half, s, s + DASH_LENGTH_M))
            s += DASH_LENGTH_M + DASH_GAP_M
        fill(dashes, ap.marking_bgr)
