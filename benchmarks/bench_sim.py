"""
Benchmark the embedded simulator: step + render frames per second on one core.

Runs the expert on a route (so the camera sees curves, parked cars and trees) and times the
simulator step, the render and the expert separately, at 800x600 and 400x300. Wall-clock
figures suffer when other processes share the cores, so the CPU time of this process per
step + render (``time.process_time``) is printed too.

Usage: ``.venv/bin/python benchmarks/bench_sim.py [--frames 400] [--seed 3]``
"""
import argparse
import os
import statistics
import time

import cv2
from llava_drive.expert.driver import ExpertDriver
from llava_drive.sim.world import SimConfig, Simulator


def bench(width: int, height: int, frames: int, seed: int) -> dict:
    """Time ``frames`` steps with rendering at one resolution; return the figures."""
    sim = Simulator(SimConfig(width=width, height=height, route_seed=seed))
    start = time.perf_counter()
    sim.render()  # the first render paints the top-down raster and precomputes the camera
    setup = time.perf_counter() - start
    expert = ExpertDriver()
    step_times, render_times, expert_times, cpu_times = [], [], [], []
    for _ in range(frames):
        if sim.done:
            sim.reset(seed)
            sim.render()
            expert.reset()
        st = sim.state
        c0 = time.process_time()
        t0 = time.perf_counter()
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
    }


def main():
    """Run the benchmark and print one line per resolution."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument('--frames', type=int, default=400)
    parser.add_argument('--seed', type=int, default=3)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    print(f'cv2 {cv2.__version__}, threads {cv2.getNumThreads()}, cpus {os.cpu_count()}, '
          f'{args.frames} frames, route seed {args.seed}')
    print(f'{"resolution":>10} {"setup s":>8} {"raster":>11} {"step ms":>8} {"render ms":>9} '
          f'{"p95 ms":>7} {"expert ms":>9} {"fps med":>8} {"fps mean":>8} {"cpu ms":>7} '
          f'{"fps cpu":>8}')
    for width, height in ((800, 600), (400, 300)):
        r = bench(width, height, args.frames, args.seed)
        print(f'{r["resolution"]:>10} {r["setup_s"]:8.2f} {r["raster_px"]:>11} '
              f'{r["step_ms"]:8.3f} {r["render_ms"]:9.2f} {r["render_p95_ms"]:7.2f} '
              f'{r["expert_ms"]:9.3f} {r["fps_median"]:8.1f} {r["fps_mean"]:8.1f} '
              f'{r["cpu_ms"]:7.2f} {r["fps_cpu"]:8.1f}')


if __name__ == '__main__':
    main()
