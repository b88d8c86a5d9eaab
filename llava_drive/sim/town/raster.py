"""
Top-down picture of a town: grass, sidewalks, roads, junction boxes, markings.

Same pyramid and pixel convention as :class:`llava_drive.sim.raster.TopDownRaster` (the camera
samples either one). Roads get solid edge lines and a dashed centre line; junction boxes are
plain asphalt (no centre line) with a zebra crossing and a stop line on every arm; bends are
painted as road with their markings running through.
"""
import math
from typing import List

import cv2
from llava_drive.sim.appearance import Appearance
from llava_drive.sim.raster import CENTRE_LINE_WIDTH_M, DASH_GAP_M, DASH_LENGTH_M, \
    EDGE_LINE_WIDTH_M, KERB_WIDTH_M, LEVEL_COUNT, MAX_RASTER_SIDE, SHIFT, TopDownRaster
from llava_drive.sim.town.geometry import bezier, offset, resample
from llava_drive.sim.town.network import TownMap
import numpy as np

STOP_LINE_WIDTH_M = 0.45
ZEBRA_STRIPE_M = 0.55


class TownRaster(TopDownRaster):
    """
    Paint a :class:`~llava_drive.sim.town.network.TownMap` into an image pyramid.

    :param town: the town
    :param appearance: colours and lighting
    :param resolution_m: metres per pixel of level 0 (coarsened to fit ``MAX_RASTER_SIDE``)
    :param margin_m: grass painted around the town
    """

    def __init__(self, town: TownMap, appearance: Appearance, resolution_m: float = 0.08,
                 margin_m: float = 40.0):
        """Paint the picture and build the pyramid."""
        self.route = town  # the camera seeds its sky from ``raster.route.seed``
        self.town = town
        self.appearance = appearance
        x_min, y_min, x_max, y_max = town.bounds(margin_m)
        self.x_min, self.y_max = x_min, y_max
        self.resolution = max(resolution_m, max(x_max - x_min, y_max - y_min) / MAX_RASTER_SIDE)
        self.width = int(math.ceil((x_max - x_min) / self.resolution))
        self.height = int(math.ceil((y_max - y_min) / self.resolution))
        rng = np.random.default_rng([town.seed, 0xBEEF])
        brightness = appearance.brightness
        self.border_bgr = tuple(int(min(255, max(0, round(c * brightness))))
                                for c in appearance.grass_bgr)
        image = self._paint_grass(rng)
        self._paint_town(image)
        self._add_grain(image, rng, 5.0 * appearance.texture_strength)
        cv2.GaussianBlur(image, (3, 3), 0.6, dst=image)
        if abs(brightness - 1.0) > 1e-3:
            cv2.convertScaleAbs(image, dst=image, alpha=brightness)
        self.levels: List[np.ndarray] = [image]
        for _ in range(1, LEVEL_COUNT):
            self.levels.append(cv2.pyrDown(self.levels[-1]))

    def _strip(self, path: np.ndarray, inner: float, outer: float) -> np.ndarray:
        """Return the polygon between two lateral offsets of a path (rows x, y, yaw, ...)."""
        a = offset(path, outer)[:, :2]
        b = offset(path, inner)[:, :2]
        return self._to_pixels(np.vstack((a, b[::-1])))

    def _junction_hull(self, node, half_width: float) -> np.ndarray:
        """Return the convex hull of the arm ends of a junction, ``half_width`` either side."""
        town = self.town
        cfg = town.config
        pts = []
        for road in node.roads:
            angle = town.arm_angle(node.index, road)
            c, s = math.cos(angle), math.sin(angle)
            for lateral in (-half_width, half_width):
                pts.append((node.x + cfg.arm_start_m * c - lateral * s,
                            node.y + cfg.arm_start_m * s + lateral * c))
        hull = cv2.convexHull(np.array(pts, np.float32))[:, 0, :]
        return self._to_pixels(hull.astype(float))

    def _bend_path(self, node) -> np.ndarray:
        """Return the centreline through a bend, joining its two roads' ends."""
        town = self.town
        ends = []
        for road_index in node.roads:
            road = town.roads[road_index]
            row = road.centre[0] if road.a == node.index else road.centre[-1]
            yaw = town.arm_angle(node.index, road_index)
            ends.append((row[0], row[1], yaw))
        (x0, y0, a0), (x1, y1, a1) = ends
        xy = bezier((x0, y0), a0 + math.pi, (x1, y1), a1, count=40)
        return resample(xy, 0.5)

    def _paint_town(self, image: np.ndarray):
        ap = self.appearance
        town = self.town
        cfg = town.config
        lane = cfg.lane_width_m
        asphalt = cfg.asphalt_half_width_m
        walk = cfg.outer_half_width_m
        aa = cv2.LINE_AA

        def fill(polygons, colour):
            cv2.fillPoly(image, polygons, colour, aa, SHIFT)

        paths = [road.centre for road in town.roads]
        bends = [self._bend_path(node) for node in town.nodes if not node.is_junction]
        junctions = [node for node in town.nodes if node.is_junction]
        for half, colour in ((walk, ap.sidewalk_bgr), (asphalt + KERB_WIDTH_M, ap.kerb_bgr),
                             (asphalt, ap.road_bgr)):
            fill([self._strip(p, -half, half) for p in paths + bends], colour)
            fill([self._junction_hull(node, half) for node in junctions], colour)
        worn = tuple(int(c * 0.95) for c in ap.road_bgr)
        for centre in (-0.5 * lane, 0.5 * lane):
            for wheel in (-0.8, 0.8):
                d = centre + wheel
                fill([self._strip(p, d - 0.2, d + 0.2) for p in paths + bends], worn)
        for car in town.parked_cars:
            shadow = car.corners()
            middle = shadow.mean(axis=0)
            fill([self._to_pixels(middle + 1.12 * (shadow - middle))],
                 tuple(int(c * 0.45) for c in ap.road_bgr))
        paint = ap.marking_bgr
        half = 0.5 * EDGE_LINE_WIDTH_M
        fill([self._strip(p, side - half, side + half) for p in paths + bends
              for side in (-lane, lane)], paint)
        half = 0.5 * CENTRE_LINE_WIDTH_M
        dashes = []
        for p in paths + bends:
            s = p[:, 3]
            start = 1.0
            while start + DASH_LENGTH_M < s[-1]:
                mask = (s >= start) & (s <= start + DASH_LENGTH_M)
                if mask.sum() >= 2:
                    dashes.append(self._strip(p[mask], -half, half))
                start += DASH_LENGTH_M + DASH_GAP_M
        fill(dashes, paint)
        stripes = []
        for node in junctions:
            for road_index in node.roads:
                angle = town.arm_angle(node.index, road_index)
                c, s = math.cos(angle), math.sin(angle)
                # Zebra crossing: stripes along the road between box and stop line.
                inner, outer = cfg.junction_half_size_m + 0.3, cfg.arm_start_m - 0.4
                lateral = -lane + 0.3
                while lateral + ZEBRA_STRIPE_M <= lane - 0.3 + 1e-6:
                    quad = [(node.x + d * c - q * s, node.y + d * s + q * c)
                            for d, q in ((inner, lateral), (outer, lateral),
                                         (outer, lateral + ZEBRA_STRIPE_M),
                                         (inner, lateral + ZEBRA_STRIPE_M))]
                    stripes.append(self._to_pixels(np.array(quad)))
                    lateral += 2 * ZEBRA_STRIPE_M
        for lane_index in range(town.road_lane_count):
            item = town.lanes[lane_index]
            if not town.nodes[item.end_node].is_junction:
                continue
            x, y, yaw = item.points[-1, :3]
            c, s = math.cos(yaw), math.sin(yaw)
            quad = [(x + d * c - q * s, y + d * s + q * c)
                    for d, q in ((-STOP_LINE_WIDTH_M, -0.5 * lane), (0.0, -0.5 * lane),
                                 (0.0, 0.5 * lane), (-STOP_LINE_WIDTH_M, 0.5 * lane))]
            stripes.append(self._to_pixels(np.array(quad)))
        fill(stripes, paint)
