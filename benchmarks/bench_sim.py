"""
Benchmark the embedded simulator: step + render frames per second on one core.

Runs the expert on a route (so the camera sees curves, parked cars and trees) and times the
simulator step, the render and the expert separately, at 800x600 and 400x300. Wall-clock
figures suffer when other processes share the cores, so the CPU time of this process per
step + render (``time.process_time``) is printed too.

``--map town`` times the town instead: the town expert drives a benchmark route among traffic
and traffic lights, and the table adds how many other vehicles were in the camera's view (median
and minimum over the frames; ``--vehicles`` sets the traffic, and the ego starts behind a
queue of ``--queue`` cars so at least that many are always in view).

Usage: ``.venv/bin/python benchmarks/bench_sim.py [--frames 400] [--seed 3]``,
``.venv/bin/python benchmarks/bench_sim.py --map town [--seed 9004] [--vehicles 40]``;
``--sizes 64x48`` times other camera sizes (the town test's: ``--map town --seed 9002
--vehicles 4 --queue 0 --sizes 64x48``).
"""
import argparse
import os
import statistics
import time

import cv2
from llava_drive.expert.driver import ExpertDriver
from llava_drive.expert.town import TownExpert
from llava_drive.sim.world import SimConfig, Simulator
import numpy as np


def vehicles_in_view(sim) -> int:
    """Return how many other vehicles are within 80 m and inside the horizontal field of view."""
    st = sim.state
    half_fov = np.radians(sim.config.fov_deg) / 2.0
    count = 0
    for v in sim.other_vehicles():
        dx, dy = v['x'] - st.x, v['y'] - st.y
        ahead = dx * np.cos(st.yaw) + dy * np.sin(st.yaw)
        left = -dx * np.sin(st.yaw) + dy * np.cos(st.yaw)
        if 1.0 < ahead < 80.0 and abs(np.arctan2(left, ahead)) < half_fov:
            count += 1
    return count


def add_queue(sim, count: int):
    """Put ``count`` cars in the ego's lane ahead of it, 9 m apart (they drive off in turn)."""
    for i in range(count):
        k, lane, local = sim.lane_at(12.0 + 9.0 * i)
        sim.traffic.add(lane, local, 0.0, lanes=sim._route_lanes[k:k + 1])


def bench(width: int, height: int, frames: int, seed: int, town: bool = False,
          vehicles: int = 40, queue: int = 0) -> dict:
    """Time ``frames`` steps with rendering at one resolution; return the figures."""
    config = SimConfig(width=width, height=height, route_seed=seed,
                       map_kind='town' if town else 'road', traffic_vehicles=vehicles)
    sim = Simulator(config)
    if town:
        add_queue(sim, queue)
    start = time.perf_counter()
    sim.render()  # the first render paints the top-down raster and precomputes the camera
    setup = time.perf_counter() - start
    expert = TownExpert() if town else ExpertDriver()
    step_times, render_times, expert_times, cpu_times, in_view = [], [], [], [], []
    for _ in range(frames):
        if sim.done:
            sim.reset(seed)
            if town:
                add_queue(sim, queue)
            sim.render()
            expert.reset()
        st = sim.state
        c0 = time.process_time()
        t0 = time.perf_counter()
        if town:
            control = expert.control(sim)
            in_view.append(vehicles_in_view(sim))
        else:
            control = expert.control(st.x, st.y, st.yaw, st.speed, sim.waypoints_ahead(40))
        t1 = time.perf_counter()
        sim.step(control)
        t2 = time.perf_counter()
        sim.render()
        t3 = time.perf_counter()
        cpu_times.append(time.process_time() - c0 - (t1 - t0))
        expert_times.append(t1 - t0)
        step_times.append(t2 - t1)
        render_times.append(t3 - t2)
    both = [a + b for a, b in zip(step_times, render_times)]
    return {
        'resolution': f'{width}x{height}',
        'setup_s': setup,
        'raster_px': f'{sim._raster.width}x{sim._raster.height}',
        'step_ms': 1e3 * statistics.median(step_times),
        'render_ms': 1e3 * statistics.median(render_times),
        'render_p95_ms': 1e3 * sorted(render_times)[int(0.95 * len(render_times))],
        'expert_ms': 1e3 * statistics.median(expert_times),
        'fps_median': 1.0 / statistics.median(both),
        'fps_mean': len(both) / sum(both),
        'cpu_ms': 1e3 * statistics.fmean(cpu_times),
        'fps_cpu': len(cpu_times) / sum(cpu_times),
        'in_view': (f'{statistics.median(in_view):.0f}/{min(in_view)}' if in_view else '-'),
    }


def sizes(text: str):
    """Parse ``WxH[,WxH...]`` into ``((W, H), ...)``."""
    try:
        return tuple(tuple(int(v) for v in size.split('x', 1)) for size in text.split(','))
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected WxH[,WxH...], got {text!r}') from None


def main():
    """Run the benchmark and print one line per resolution."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument('--frames', type=int, default=400)
    parser.add_argument('--seed', type=int, default=None,
                        help='route seed (default 3, or 9004 with --map town)')
    parser.add_argument('--map', choices=('road', 'town'), default='road')
    parser.add_argument('--vehicles', type=int, default=40, help='town traffic vehicles')
    parser.add_argument('--queue', type=int, default=10,
                        help='town: cars queued ahead of the ego at the start')
    parser.add_argument('--sizes', type=sizes, default=((800, 600), (400, 300)),
                        help='camera sizes, e.g. 800x600,64x48 (default: 800x600,400x300)')
    args = parser.parse_args()
    town = args.map == 'town'
    if args.seed is None:
        args.seed = 9004 if town else 3
    cv2.setNumThreads(1)
    print(f'cv2 {cv2.__version__}, threads {cv2.getNumThreads()}, cpus {os.cpu_count()}, '
          f'{args.frames} frames, route seed {args.seed}')
    print(f'{"resolution":>10} {"setup s":>8} {"raster":>11} {"step ms":>8} {"render ms":>9} '
          f'{"p95 ms":>7} {"expert ms":>9} {"fps med":>8} {"fps mean":>8} {"cpu ms":>7} '
          f'{"fps cpu":>8} {"in view":>8}')
    for width, height in args.sizes:
        r = bench(width, height, args.frames, args.seed, town, args.vehicles, args.queue)
        print(f'{r["resolution"]:>10} {r["setup_s"]:8.2f} {r["raster_px"]:>11} '
              f'{r["step_ms"]:8.3f} {r["render_ms"]:9.2f} {r["render_p95_ms"]:7.2f} '
              f'{r["expert_ms"]:9.3f} {r["fps_median"]:8.1f} {r["fps_mean"]:8.1f} '
              f'{r["cpu_ms"]:7.2f} {r["fps_cpu"]:8.1f} {r["in_view"]:>8}')


if __name__ == '__main__':
    main()
