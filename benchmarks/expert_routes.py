"""
Run the expert on seeded routes (no rendering) and print a table of how it drove.

``--map town`` drives the town expert on the town benchmarks instead (``--benchmark
town-dev``, ``town-heldout`` or ``all``, ``--repetitions`` draws of traffic and lights each)
and prints per route: scenario, junction moves, driving score, route completion, infractions,
end reason, simulated and wall time.

Columns: route completion, driving score, off-road / collision / lane-crossing counts, lateral
error to the lane centre (RMSE and max), mean speed, wall time. ``--noise`` executes the
perturbed command (as when recording recovery data) while the expert computes clean ones.

Usage: ``.venv/bin/python benchmarks/expert_routes.py [--seeds 101-110] [--noise]``,
``.venv/bin/python benchmarks/expert_routes.py --map town [--benchmark all] [--repetitions 3]``
"""
import argparse
import math
import statistics
import time

from llava_drive.expert.driver import ExpertDriver
from llava_drive.expert.noise import ExpertNoise
from llava_drive.sim.scoring import mean_driving_score
from llava_drive.sim.world import SimConfig, Simulator


def parse_seeds(text: str):
    """Parse ``'1-10'`` or ``'1,5,9'`` into a list of seeds."""
    if '-' in text:
        first, last = text.split('-')
        return list(range(int(first), int(last) + 1))
    return [int(part) for part in text.split(',')]


def run(seed: int, noise: bool, length: float):
    """Drive one route; return the summary, lateral errors, mean speed and wall time."""
    start = time.perf_counter()
    sim = Simulator(SimConfig(route_seed=seed, route_length_m=length))
    expert = ExpertDriver()
    perturb = ExpertNoise(seed=seed) if noise else None
    lateral, speeds = [], []
    while not sim.done:
        st = sim.state
        control = expert.control(st.x, st.y, st.yaw, st.speed, sim.waypoints_ahead(40),
                                 sim.config.dt)
        if perturb:
            control = perturb.perturb(control, sim.config.dt)
        result = sim.step(control)
        lateral.append(result.lateral_error)
        speeds.append(result.state.speed)
    return sim.summary(), lateral, statistics.fmean(speeds), time.perf_counter() - start


def town_table(benchmarks, repetitions: int):
    """Drive the town expert on benchmark sets; print one row per route and repetition."""
    from llava_drive.expert.town import drive_route
    from llava_drive.sim.town.benchmark import benchmark_seeds
    print(f'{"set":>12} {"seed":>5} {"rep":>3} {"scenario":>16} {"junctions":>24} {"DS":>6} '
          f'{"RC %":>6} {"infractions":>12} {"end":>15} {"sim s":>6} {"wall s":>6}')
    summaries = []
    for name in benchmarks:
        for seed in benchmark_seeds(name):
            for rep in range(repetitions):
                start = time.perf_counter()
                sim = drive_route(seed, rep)
                summary = sim.summary()
                summaries.append(summary)
                info = sim.scenario()
                bad = {k: v for k, v in summary.counts.items()
                       if k not in ('route_finished', 'lane_crossing')}
                infractions = ','.join(f'{k}:{v}' for k, v in sorted(bad.items())) or 'none'
                print(f'{name:>12} {seed:>5} {rep:>3} {info["scenario"]:>16} '
                      f'{"-".join(info["junctions"]):>24} {summary.driving_score:6.1f} '
                      f'{summary.route_completion:6.1f} {infractions:>12} '
                      f'{summary.done_reason:>15} {summary.time:6.1f} '
                      f'{time.perf_counter() - start:6.1f}', flush=True)
    perfect = sum(1 for s in summaries if s.driving_score >= 100.0 - 1e-9)
    print(f'mean driving score {mean_driving_score(summaries):.2f} over {len(summaries)} '
          f'drives; {perfect} with DS 100')


def main():
    """Drive the routes and print the table and the mean driving score."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument('--map', choices=('road', 'town'), default='road',
                        help='road: lane keeping on --seeds; town: the town benchmarks')
    parser.add_argument('--seeds', default='1-10', help="'1-10' or '1,4,7' (road)")
    parser.add_argument('--length', type=float, default=500.0, help='route length (m) (road)')
    parser.add_argument('--noise', action='store_true', help='execute noisy commands (road)')
    parser.add_argument('--benchmark', choices=('town-dev', 'town-heldout', 'all'),
                        default='all', help='town benchmark set (town)')
    parser.add_argument('--repetitions', type=int, default=3,
                        help='draws of traffic and lights per route (town)')
    args = parser.parse_args()
    if args.map == 'town':
        if args.repetitions < 1:
            parser.error('--repetitions must be >= 1')
        names = ('town-dev', 'town-heldout') if args.benchmark == 'all' else (args.benchmark,)
        town_table(names, args.repetitions)
        return
    print(f'{"seed":>5} {"RC %":>6} {"DS":>6} {"end":>15} {"out %":>8} {"collide":>7} '
          f'{"lane x":>6} {"lat RMSE":>8} {"lat max":>7} {"v mean":>6} {"wall s":>6}')
    summaries = []
    for seed in parse_seeds(args.seeds):
        summary, lateral, speed, wall = run(seed, args.noise, args.length)
        summaries.append(summary)
        rmse = math.sqrt(statistics.fmean(v * v for v in lateral))
        counts = summary.counts
        print(f'{seed:>5} {summary.route_completion:6.1f} {summary.driving_score:6.1f} '
              f'{summary.done_reason:>15} {summary.outside_lane_percentage:8.2f} '
              f'{counts.get("collision_static", 0):>7} {counts.get("lane_crossing", 0):>6} '
              f'{rmse:8.3f} {max(abs(v) for v in lateral):7.3f} {speed:6.2f} {wall:6.2f}')
    scores = [s.driving_score for s in summaries]
    spread = statistics.pstdev(scores) if len(scores) > 1 else 0.0
    print(f'mean driving score {mean_driving_score(summaries):.1f} (std {spread:.1f}) over '
          f'{len(summaries)} routes, noise {"on" if args.noise else "off"}')


if __name__ == '__main__':
    main()
