"""
Draw the maps of the town benchmarks: one top-down picture per set, one tile per route.

Each tile shows the town's roads (grey), buildings (beige), signalised junctions (orange
dots), the route (blue, from the green start dot to the red goal dot), the scenario's place
(magenta ring) and a caption: seed, length, junction moves, scenario.

Usage: ``.venv/bin/python benchmarks/town_maps.py [--out docs]`` (writes
``town-dev.png`` and ``town-heldout.png``)
"""
import argparse
import os

import cv2
from llava_drive.sim.town.benchmark import TOWN_BENCHMARKS
from llava_drive.sim.town.world import town_and_route
import numpy as np

TILE = (320, 250)
CAPTION_PX = 30


def draw_tile(seed: int) -> np.ndarray:
    """Return the tile of one benchmark route."""
    town, route = town_and_route(seed)
    x_min, y_min, x_max, y_max = town.bounds(5.0)
    width, height = TILE[0], TILE[1] - CAPTION_PX
    scale = min(width / (x_max - x_min), height / (y_max - y_min))
    image = np.full((TILE[1], TILE[0], 3), (90, 150, 110), np.uint8)

    def px(xy):
        xy = np.atleast_2d(xy)
        col = (xy[:, 0] - x_min) * scale + 0.5 * (width - (x_max - x_min) * scale)
        row = CAPTION_PX + (y_max - xy[:, 1]) * scale
        return np.round(np.stack((col, row), axis=1) * 4).astype(np.int32)

    road_px = max(1, int(2 * town.config.asphalt_half_width_m * scale))
    for building in town.buildings:
        cv2.fillConvexPoly(image, px(building.corners()), (150, 190, 215), cv2.LINE_AA, 2)
    for road in town.roads:
        cv2.polylines(image, [px(road.centre[:, :2])], False, (95, 95, 95), road_px,
                      cv2.LINE_AA, 2)
    for lane in town.lanes[town.road_lane_count:]:
        cv2.polylines(image, [px(lane.points[:, :2])], False, (95, 95, 95), road_px // 2 + 1,
                      cv2.LINE_AA, 2)
    for node in town.nodes:
        if node.is_junction and node.signalised:
            cv2.circle(image, tuple(px((node.x, node.y))[0]), 4 * 4, (0, 140, 255), -1,
                       cv2.LINE_AA, 2)
    dense, _ = route.dense()
    cv2.polylines(image, [px(dense[:, :2])], False, (220, 90, 20), 3, cv2.LINE_AA, 2)
    cv2.circle(image, tuple(px(dense[0, :2])[0]), 5 * 4, (40, 200, 40), -1, cv2.LINE_AA, 2)
    cv2.circle(image, tuple(px(dense[-1, :2])[0]), 5 * 4, (40, 40, 220), -1, cv2.LINE_AA, 2)
    spot = route.ego_route().pose_at(route.scenario_s)[:2]
    cv2.circle(image, tuple(px(spot)[0]), 8 * 4, (200, 40, 200), 2, cv2.LINE_AA, 2)
    info = route.describe()
    moves = '-'.join(m[0] for m in info['junctions'])  # L, R, S per junction
    cv2.rectangle(image, (0, 0), (TILE[0], CAPTION_PX - 2), (250, 250, 250), -1)
    cv2.putText(image, f'{seed}  {info["length_m"]:.0f} m  {moves}  {info["scenario"]}',
                (5, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (20, 20, 20), 1, cv2.LINE_AA)
    return image


def main():
    """Write one PNG per benchmark set."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument('--out', default='docs', help='output folder')
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for name, seeds in TOWN_BENCHMARKS.items():
        tiles = [draw_tile(seed) for seed in seeds]
        rows = [np.hstack(tiles[i:i + 5]) for i in range(0, len(tiles), 5)]
        path = os.path.join(args.out, f'{name}.png')
        cv2.imwrite(path, np.vstack(rows), [cv2.IMWRITE_PNG_COMPRESSION, 9])
        print(f'{path}: {len(seeds)} routes, {os.path.getsize(path) // 1024} KiB')


if __name__ == '__main__':
    main()
