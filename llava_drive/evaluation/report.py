"""
What ``llava-drive evaluate`` writes: summary.json, report.md, trajectory plots and a video.

Pure (no ROS imports): everything works from :class:`~llava_drive.evaluation.metrics`
results, so a report can be rebuilt from ``episodes.json`` without running anything.
"""
import json
import math
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from llava_drive.evaluation.metrics import aggregate, EpisodeResult
from llava_drive.planning import GlobalPlan
from llava_drive.sim.road import Route, RouteConfig
from llava_drive.sim.scoring import LEADERBOARD_VERSION, PENALTIES
import numpy as np

POLICY = 'policy'
EXPERT = 'expert'
# Plot colour per driver; baselines cycle through the rest.
DRIVER_COLOURS = {POLICY: 'tab:blue', EXPERT: 'tab:green'}
BASELINE_COLOURS = ('tab:orange', 'tab:purple', 'tab:brown', 'tab:pink', 'tab:olive')
EVENT_MARKERS = {'collision_static': ('X', 'red'), 'collision_vehicle': ('X', 'darkred'),
                 'collision_pedestrian': ('X', 'magenta'), 'red_light': ('^', 'red'),
                 'stop_sign': ('v', 'red'), 'scenario_timeout': ('s', 'purple'),
                 'yield_emergency_vehicle': ('P', 'red'), 'min_speed': ('<', 'brown'),
                 'outside_route_lanes': ('o', 'orange'), 'timeout': ('s', 'black'),
                 'blocked': ('s', 'grey'), 'off_route': ('D', 'red'),
                 'lane_crossing': ('|', 'gold'), 'route_finished': ('*', 'green')}


def score_sets(results: Sequence[EpisodeResult], baselines: Sequence[str] = ()) -> dict:
    """
    Return ``{driver: aggregate(...)}`` for every driver present, policy first.

    :param results: every episode of the evaluation
    :param baselines: baseline names, in the order they were given
    """
    order = [POLICY, EXPERT] + [name for name in baselines if name not in (POLICY, EXPERT)]
    present = {r.driver for r in results}
    order += sorted(present - set(order))
    return {driver: aggregate([r for r in results if r.driver == driver])
            for driver in order if driver in present}


def summary_document(scores: dict, baselines: Sequence[str], config: dict) -> dict:
    """
    Return summary.json: the policy's scores at the top level, the others under clear keys.

    Top level (when a policy was evaluated): ``driving_score``, ``route_completion``,
    ``success_rate`` and ``junction_success`` (0..100; None without junctions),
    ``infraction_penalty`` (0..1), spreads, ``lateral_error_rmse`` (m), ``steering_smoothness``
    (1/s), ``success_per_scenario`` and ``per_route``. ``expert`` and ``baselines[name]`` hold
    the same fields for those drivers; ``drivers`` lists which are present; ``scoring`` names
    the leaderboard version the scores follow.

    :param scores: :func:`score_sets` output
    :param baselines: baseline names
    :param config: the evaluation configuration, stored as ``config``
    """
    document = dict(scores.get(POLICY, {}))
    document['drivers'] = list(scores)
    if EXPERT in scores:
        document['expert'] = scores[EXPERT]
    document['baselines'] = {name: scores[name] for name in baselines if name in scores}
    document['scoring'] = LEADERBOARD_VERSION
    document['config'] = config
    return document


def number_cell(value: float, digits: int = 1) -> str:
    """Format a table cell: ``-`` for a figure that does not exist (None or NaN)."""
    return '-' if value is None or (isinstance(value, float) and math.isnan(value)) \
        else f'{value:.{digits}f}'


def _events(counts: Dict[str, int]) -> str:
    shown = {k: v for k, v in counts.items() if k != 'route_finished'}
    return ', '.join(f'{k} {v}' for k, v in sorted(shown.items())) or 'none'


def score_table(scores: dict) -> str:
    """
    Return the overall table (markdown, also readable in a terminal).

    :param scores: :func:`score_sets` output
    """
    lines = ['| driver | driving score | route completion % | infraction penalty | '
             'success % | junction success % | outside lanes % | lateral RMSE m | '
             'steer rate 1/s | events | ctrl timeouts |',
             '|---|---|---|---|---|---|---|---|---|---|---|']
    for driver, s in scores.items():
        lines.append(
            f'| {driver} | {number_cell(s["driving_score"])} '
            f'± {number_cell(s["driving_score_std"])} '
            f'| {number_cell(s["route_completion"])} | {number_cell(s["infraction_penalty"], 3)} '
            f'| {number_cell(s["success_rate"])} | {number_cell(s["junction_success"])} '
            f'| {number_cell(s["outside_lane_percentage"])} '
            f'| {number_cell(s["lateral_error_rmse"], 2)} '
            f'| {number_cell(s["steering_smoothness"], 2)} '
            f'| {_events(s["events"])} | {s["control_timeouts"]} |')
    return '\n'.join(lines)


def scenario_table(scores: dict) -> str:
    """
    Return Bench2Drive-style success per scenario type (markdown); empty without scenarios.

    :param scores: :func:`score_sets` output
    """
    names = sorted({name for s in scores.values() for name in s['success_per_scenario']})
    if not names:
        return ''
    lines = ['| scenario | ' + ' | '.join(f'{driver} success %' for driver in scores) + ' |',
             '|---|' + '---|' * len(scores)]
    for name in names:
        cells = []
        for s in scores.values():
            entry = s['success_per_scenario'].get(name)
            cells.append('-' if entry is None else
                         f'{number_cell(entry["success_rate"])} ({entry["episodes"]})')
        lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def route_table(scores: dict) -> str:
    """
    Return the per-route table (markdown): every route, every driver.

    :param scores: :func:`score_sets` output
    """
    lines = ['| route | driver | driving score | route completion % | infraction penalty '
             '| success % | lateral RMSE m | events | ended |',
             '|---|---|---|---|---|---|---|---|---|']
    routes = sorted({int(seed) for s in scores.values() for seed in s['per_route']})
    for seed in routes:
        for driver, s in scores.items():
            r = s['per_route'].get(str(seed))
            if r is None:
                continue
            lines.append(
                f'| {seed} | {driver} | {number_cell(r["driving_score"])} ± '
                f'{number_cell(r["driving_score_std"])} | {number_cell(r["route_completion"])} '
                f'| {number_cell(r["infraction_penalty"], 3)} | {number_cell(r["success_rate"])} '
                f'| {number_cell(r["lateral_error_rmse"], 2)} | {_events(r["events"])} '
                f'| {", ".join(r["done_reasons"])} |')
    return '\n'.join(lines)


def driver_colour(driver: str, drivers: Sequence[str]) -> str:
    """
    Return the plot colour of ``driver``.

    :param driver: driver name
    :param drivers: every driver in the report (fixes the baseline colours)
    """
    if driver in DRIVER_COLOURS:
        return DRIVER_COLOURS[driver]
    others = [d for d in drivers if d not in DRIVER_COLOURS]
    return BASELINE_COLOURS[others.index(driver) % len(BASELINE_COLOURS)]


def plot_route(route: Route, results: Sequence[EpisodeResult], out_path: Path,
               drivers: Sequence[str]) -> Path:
    """
    Plot the road, the driven paths of every driver and the infractions on one route.

    :param route: the route geometry (same seed and length as driven)
    :param results: the episodes on this route (any drivers, any repetitions)
    :param out_path: PNG to write
    :param drivers: every driver in the report, for stable colours
    """
    import matplotlib
    matplotlib.use('Agg')
    from matplotlib import pyplot as plt

    config = route.config
    figure, axes = plt.subplots(figsize=(9, 9), dpi=90)
    s_from, s_to = -min(config.lead_in_m, 10.0), route.length + min(config.lead_out_m, 10.0)
    edge = config.lane_width_m
    outer = edge + config.shoulder_width_m
    thin, solid = {'color': '0.6', 'lw': 0.8}, {'color': '0.2', 'lw': 1.2}
    for lateral, style in ((outer, thin), (-outer, thin), (edge, solid), (-edge, solid),
                           (0.0, {'color': '0.4', 'lw': 0.8, 'ls': (0, (4, 4))})):
        line = route.offset_path(lateral, s_from, s_to)
        axes.plot(line[:, 0], line[:, 1], **style)
    lane = route.offset_path(route.right_lane_offset, 0.0, route.length)
    axes.plot(lane[:, 0], lane[:, 1], color='0.75', lw=0.8, ls=':', label='lane centre')
    for car in route.parked_cars:
        if not s_from <= car.s <= s_to:
            continue
        corners = car.corners()
        axes.fill(corners[:, 0], corners[:, 1], color='0.3', alpha=0.6, lw=0)
    start, finish = route.pose_at(0.0), route.pose_at(route.length)
    axes.plot(*start[:2], marker='>', color='black', ms=9, ls='', label='start')
    axes.plot(*finish[:2], marker='s', color='black', ms=8, ls='', label='finish')
    return _finish_plot(figure, axes, results, drivers, out_path,
                        f'route {route.seed} ({route.length:.0f} m): driven paths and infractions')


def plot_town_route(seed: int, results: Sequence[EpisodeResult], out_path: Path,
                    drivers: Sequence[str]) -> Path:
    """
    Plot a town route, its junctions and lights, every driver's path and the infractions.

    The town around the route is drawn: roads, junction connectors, buildings and the stop
    lines of signalised approaches; each junction on the route is labelled with its move.

    :param seed: the town route seed
    :param results: the episodes on this route (any drivers, any repetitions)
    :param out_path: PNG to write
    :param drivers: every driver in the report, for stable colours
    """
    import matplotlib
    matplotlib.use('Agg')
    from matplotlib import pyplot as plt
    from llava_drive.sim.town.lights import TrafficLights
    from llava_drive.sim.town.world import town_and_route

    town, route = town_and_route(seed)
    figure, axes = plt.subplots(figsize=(9, 9), dpi=90)
    half = town.config.asphalt_half_width_m
    for road in town.roads:
        centre, yaw = road.centre[:, :2], road.centre[:, 2]
        side = half * np.stack((-np.sin(yaw), np.cos(yaw)), axis=1)
        outline = np.concatenate((centre + side, (centre - side)[::-1]))
        axes.fill(outline[:, 0], outline[:, 1], color='0.85', lw=0)
    for lane in town.lanes[town.road_lane_count:]:  # the connectors through junctions
        axes.plot(lane.points[:, 0], lane.points[:, 1], color='0.75', lw=0.6)
    for building in town.buildings:
        corners = building.corners()
        axes.fill(corners[:, 0], corners[:, 1], color='tan', alpha=0.5, lw=0)
    for light in TrafficLights(town).lights:
        across = 0.5 * half * np.array((-math.sin(light.stop_yaw), math.cos(light.stop_yaw)))
        ends = np.array((light.stop_x, light.stop_y)) + np.outer((-1.0, 1.0), across)
        axes.plot(ends[:, 0], ends[:, 1], color='orange', lw=2.5)
    axes.plot([], [], color='orange', lw=2.5, label='signal stop line')
    dense, _ = route.dense()
    axes.plot(dense[:, 0], dense[:, 1], color='0.4', lw=7, alpha=0.25, label='route',
              solid_capstyle='round')
    moves = iter(route.describe()['junctions'])
    for crossing in route.crossings:
        node = town.nodes[crossing.node]
        if node.is_junction:
            axes.annotate(f'{next(moves)}{" (signal)" if node.signalised else ""}',
                          (node.x, node.y), xytext=(8, 8), textcoords='offset points',
                          fontsize=8, color='0.2')
    spot = route.ego_route().pose_at(route.scenario_s)
    axes.plot(spot[0], spot[1], marker='o', ms=16, mfc='none', mec='magenta', ls='',
              label=route.scenario.replace('_', ' '))
    axes.plot(*dense[0, :2], marker='>', color='black', ms=9, ls='', label='start')
    axes.plot(*dense[-1, :2], marker='s', color='black', ms=8, ls='', label='finish')
    low, high = dense[:, :2].min(axis=0) - 40.0, dense[:, :2].max(axis=0) + 40.0
    axes.set_xlim(low[0], high[0])
    axes.set_ylim(low[1], high[1])
    return _finish_plot(figure, axes, results, drivers, out_path,
                        f'town route {seed} ({route.length:.0f} m): driven paths and infractions')


def plot_plan_route(seed: int, plan: GlobalPlan, results: Sequence[EpisodeResult],
                    out_path: Path, drivers: Sequence[str]) -> Path:
    """
    Plot a route known only by its plan (CARLA: no map drawn), every driver's path and events.

    :param seed: the route seed
    :param plan: the route the bridge planned for this seed
    :param results: the episodes on this route (any drivers, any repetitions)
    :param out_path: PNG to write
    :param drivers: every driver in the report, for stable colours
    """
    import matplotlib
    matplotlib.use('Agg')
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(figsize=(9, 9), dpi=90)
    poses = plan.dense_poses if plan.has_dense else plan.poses
    axes.plot(poses[:, 0], poses[:, 1], color='0.4', lw=7, alpha=0.25, label='route',
              solid_capstyle='round')
    axes.plot(*poses[0, :2], marker='>', color='black', ms=9, ls='', label='start')
    axes.plot(*poses[-1, :2], marker='s', color='black', ms=8, ls='', label='finish')
    return _finish_plot(figure, axes, results, drivers, out_path,
                        f'route {seed} ({plan.length:.0f} m): driven paths and infractions')


def _finish_plot(figure, axes, results: Sequence[EpisodeResult], drivers: Sequence[str],
                 out_path: Path, title: str) -> Path:
    """Draw the driven paths and infractions over a drawn map, then write the figure."""
    from matplotlib import pyplot as plt

    labelled = set()
    for result in sorted(results, key=lambda r: (drivers.index(r.driver)
                                                 if r.driver in drivers else 99, r.repetition)):
        colour = driver_colour(result.driver, drivers)
        label = None if result.driver in labelled else result.driver
        labelled.add(result.driver)
        axes.plot(result.trajectory.x, result.trajectory.y, color=colour, lw=1.4, alpha=0.8,
                  label=label)
        for event in result.summary.events:
            marker, event_colour = EVENT_MARKERS.get(event.kind, ('x', 'black'))
            if event.kind in ('route_finished', 'lane_crossing'):
                continue
            axes.plot(event.x, event.y, marker=marker, color=event_colour, ms=9, ls='',
                      markeredgecolor=colour)
    kinds = sorted({e.kind for r in results for e in r.summary.events
                    if e.kind not in ('route_finished', 'lane_crossing')})
    for kind in kinds:
        marker, colour = EVENT_MARKERS.get(kind, ('x', 'black'))
        axes.plot([], [], marker=marker, color=colour, ls='', label=kind)
    axes.set_aspect('equal')
    axes.set_xlabel('x (m)')
    axes.set_ylabel('y (m)')
    axes.set_title(title)
    axes.legend(loc='best', fontsize=8)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out_path)
    plt.close(figure)
    return out_path


def plot_routes(results: Sequence[EpisodeResult], out_dir: Path, route_length: float,
                drivers: Sequence[str], map_kind: str = 'road',
                plans: Optional[Dict[int, GlobalPlan]] = None) -> List[Path]:
    """
    Write one trajectory plot per route; return their paths.

    :param results: every episode
    :param out_dir: destination directory
    :param route_length: the driven route length (m), as given to the simulator (road maps)
    :param drivers: every driver, for stable colours
    :param map_kind: ``'road'`` or ``'town'``
    :param plans: ``{seed: plan}`` of routes not made by the embedded simulator (CARLA); a
        route missing from it gets no plot
    """
    paths = []
    for seed in sorted({r.route_seed for r in results}):
        episodes = [r for r in results if r.route_seed == seed]
        out_path = out_dir / f'trajectories_route{seed}.png'
        if plans is not None:
            if seed in plans:
                paths.append(plot_plan_route(seed, plans[seed], episodes, out_path, drivers))
        elif map_kind == 'town':
            paths.append(plot_town_route(seed, episodes, out_path, drivers))
        else:
            route = Route.generate(seed, RouteConfig(length_m=float(route_length)))
            paths.append(plot_route(route, episodes, out_path, drivers))
    return paths


def scoring_rules() -> str:
    """Return the paragraph that states the scoring rules a report follows."""
    factors = ', '.join(f'{kind.replace("_", " ")} {factor:.2f}'
                        for kind, factor in PENALTIES.items())
    return (f'Scoring follows {LEADERBOARD_VERSION}: per route DS = RC x P, the global score '
            'is the mean of the per-route DS; ± is the spread (standard deviation) of the '
            f'global score over repetitions. P multiplies {factors}, and 1 - (outside lanes %) '
            '/ 100, the share of the completed route driven outside the route lanes. Route '
            'deviation (> 30 m), blocked (< 0.1 m/s for 180 s) and the route timeout end a '
            "route without a penalty. Success is Bench2Drive's: the route finished with no "
            'infraction but minimum speed; junction success is the share of junctions crossed '
            'as the route commanded. Steer rate is the mean |d steer / dt| (lower is smoother).')


def write_markdown(path: Path, scores: dict, config: dict, plots: Sequence[Path],
                   video: Optional[Path], video_note: str = '') -> Path:
    """
    Write report.md: configuration, overall and per-route tables, plots and the video link.

    :param path: the report file
    :param scores: :func:`score_sets` output
    :param config: the evaluation configuration
    :param plots: trajectory plot files (linked relative to the report)
    :param video: the episode video, or None
    :param video_note: what the video shows
    """
    routes = ', '.join(str(r) for r in config.get('routes', []))
    world = 'synchronous simulator'
    if config.get('backend') == 'carla':
        town = (config.get('carla') or {}).get('town')  # unset: carla_bridge.yaml's
        world = f'CARLA{" " + town if town else ""} through carla_bridge (synchronous)'
    lengths = sorted(config.get('route_lengths', {}).values()) or [config.get('route_length')]
    length = f'{number_cell(lengths[0], 0)} m each' if lengths[0] == lengths[-1] else \
        f'{number_cell(lengths[0], 0)}-{number_cell(lengths[-1], 0)} m'
    lines = [
        '# Closed-loop evaluation', '',
        f'Checkpoint: `{config.get("checkpoint")}`  ',
        f'Routes: {routes} ({length}), '
        f'{config.get("repetitions")} repetition(s), camera '
        f'{config.get("width")}x{config.get("height")}, {world}, at most '
        f'{number_cell(config.get("route_time_limit"), 0)} s simulated per route (then a route '
        'timeout).  ',
        scoring_rules(), '',
        '## Overall', '', score_table(scores), '',
        '## Per route', '', route_table(scores), '']
    scenarios = scenario_table(scores)
    if scenarios:
        lines[-1:-1] = ['## Success per scenario type', '', scenarios, '']
    if config.get('notes'):
        lines += ['## Notes', ''] + [f'- {note}' for note in config['notes']] + ['']
    skipped = {driver: s['rejected_images'] for driver, s in scores.items()
               if s.get('rejected_images')}
    if skipped:  # published on the domain by something else: the video lacks those frames
        lines += ['## Malformed images skipped by the evaluator', ''] + [
            f'- {driver}: ' + ', '.join(f'{reason} {count}' for reason, count in
                                        sorted(counts.items())) for driver, counts in
            skipped.items()] + ['']
    if plots:
        lines += ['## Trajectories', '']
        lines += [f'![{plot.stem}]({plot.name})' for plot in plots] + ['']
    if video is not None:
        lines += ['## Video', '', f'[{video.name}]({video.name}) {video_note}'.rstrip(), '']
    path.write_text('\n'.join(lines))
    return path


def write_json(path: Path, document) -> Path:
    """
    Write ``document`` as indented JSON (NaN becomes null so any JSON reader takes it).

    :param path: destination file
    :param document: JSON-serialisable data
    """
    def clean(value):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value
    path.write_text(json.dumps(clean(document), indent=2))
    return path
