"""``llava-drive evaluate`` (closed-loop driving score) and ``llava-drive drive`` (live)."""
import argparse
import json
from pathlib import Path
import sys
import time

from llava_drive.carla.cli import add_bridge_arguments, bridge_parameters
from llava_drive.config_checks import default_of
from llava_drive.evaluation.drive import DriveOptions, DRIVERS
from llava_drive.evaluation.evaluate import EvaluationOptions
from llava_drive.nodes.interfaces import BACKENDS, EVALUATION_BACKENDS, FIRST_EVALUATION_SEED
from llava_drive.recording.cli import add_log_dir_argument, add_policy_model_arguments, seed_list
from llava_drive.sim.scoring import ScoringConfig
from llava_drive.sim.town.benchmark import benchmark_seeds, TOWN_BENCHMARKS
from llava_drive.sim.world import MAP_KINDS, SimConfig

EVALUATE_EPILOG = f"""\
examples:
  llava-drive evaluate --checkpoint trained_models/run --routes 101,102,103 \\
      --repetitions 3 --out reports/run
  llava-drive evaluate --checkpoint trained_models/run --baseline token0=trained_models/t0 \\
      --model models/llava-tiny --width 320 --height 240 --route-length 150 --out reports/cmp
  llava-drive evaluate --backend carla --carla-town Town02 --checkpoint trained_models/run \\
      --routes 101,102 --repetitions 2 --out reports/carla      (CARLA server running)

Every driver (the checkpoint, the expert, each --baseline) drives every route REPETITIONS
times in synchronous mode, as ROS 2 nodes (the bridge + policy or expert): in the embedded
simulator (sim_bridge), or on a CARLA server through carla_bridge (--backend carla: each route
seed draws a start and a goal spawn point on the town's map; no carla_ros_bridge). Per
route: driving score DS = RC x P (route completion x infraction penalty); the global driving
score is the mean of the per-route DS (CARLA Leaderboard 2.0), from the bridge's status. The
report directory gets report.md, summary.json, episodes.json, trajectories_route<N>.png
and an MP4 of the first episode. Routes below {FIRST_EVALUATION_SEED} are recording routes and
are refused unless --allow-training-routes.
"""

DRIVE_EPILOG = """\
examples:
  llava-drive drive --checkpoint trained_models/run --seed 101
  llava-drive drive --checkpoint trained_models/run --realtime --loop      (Ctrl-C to stop)
  llava-drive drive --checkpoint trained_models/run --backend carla --carla-town Town02
  llava-drive drive --checkpoint trained_models/run --backend carla_ros_bridge (bridge running)

The status line shows speed, the control on the wire, route completion, infractions and the
driving score (simulator), and the policy's median inference latency (/diagnostics).
"""


def baseline_arg(text: str):
    """Parse ``NAME=DIR`` into ``(name, Path)``."""
    name, sep, path = text.partition('=')
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f'expected NAME=DIR, got {text!r}')
    return name, Path(path)


def _leaderboard_time_limit() -> str:
    """Describe the simulator's route time limit (``sim.scoring.time_limit_for``)."""
    scoring = ScoringConfig()
    per_metre = 1.0 / (scoring.timeout_speed_fraction * SimConfig.speed_limit_mps)
    return (f'{scoring.min_timeout_s:g} s + {per_metre:.1f} s per metre completed at '
            f'{SimConfig.speed_limit_mps * 3.6:.0f} km/h, the leaderboard limit')


def register(subparsers):
    """
    Add the ``evaluate`` and ``drive`` subcommands.

    :param subparsers: the ``add_subparsers()`` object of the main parser
    """
    formatter = argparse.RawDescriptionHelpFormatter
    evaluate = subparsers.add_parser(
        'evaluate', help='closed-loop driving score on held-out routes (simulator or CARLA)',
        description='Drive held-out routes with a trained checkpoint, the expert and optional '
                    'baselines; write a report with driving scores, plots and a video.',
        epilog=EVALUATE_EPILOG, formatter_class=formatter)
    evaluate.add_argument('--checkpoint', type=Path, default=None, metavar='DIR',
                          help='trained checkpoint (llava-drive train --out); omit to score '
                               'only the expert and baselines')
    evaluate.add_argument('--backend', choices=EVALUATION_BACKENDS,
                          default=default_of(EvaluationOptions, 'backend'),
                          help='sim: embedded simulator; carla: a CARLA server through our '
                               'carla_bridge node (default: %(default)s)')
    routes = default_of(EvaluationOptions, 'routes')
    evaluate.add_argument('--routes', type=seed_list, default=routes, metavar='SEEDS',
                          help='route seeds, e.g. 101,102,103 (default: %s)'
                               % ','.join(map(str, routes)))
    evaluate.add_argument('--map', choices=MAP_KINDS,
                          default=default_of(EvaluationOptions, 'map_kind'),
                          help='road: single-road routes; town: town routes by seed '
                               '(default: %(default)s)')
    evaluate.add_argument('--benchmark', choices=sorted(TOWN_BENCHMARKS), default=None,
                          help='drive a named town route set (sets --map town and --routes)')
    evaluate.add_argument('--driver', choices=('all', 'expert'), default='all',
                          help='expert: evaluate the expert alone, no checkpoint needed '
                               '(default: every driver given)')
    evaluate.add_argument('--repetitions', type=int,
                          default=default_of(EvaluationOptions, 'repetitions'),
                          help='episodes per route and driver (default: %(default)s)')
    evaluate.add_argument('--out', type=Path, default=None, metavar='DIR',
                          help='report directory (default: reports/eval_<time>)')
    add_policy_model_arguments(evaluate, EvaluationOptions,
                               'LLaVA directory for every checkpoint (default: the one each '
                               'checkpoint names)')
    evaluate.add_argument('--baseline', type=baseline_arg, action='append', default=[],
                          metavar='NAME=DIR', help='also evaluate this checkpoint as NAME '
                                                   '(repeatable), e.g. token0=trained_models/t0')
    evaluate.add_argument('--no-expert', dest='expert', action='store_false',
                          help="skip the expert (its score is reported beside the policy's "
                               'by default)')
    evaluate.add_argument('--width', type=int, default=default_of(EvaluationOptions, 'width'),
                          help='camera width (default: %(default)s)')
    evaluate.add_argument('--height', type=int, default=default_of(EvaluationOptions, 'height'),
                          help='camera height (default: %(default)s)')
    evaluate.add_argument('--route-length', type=float, metavar='M',
                          default=default_of(EvaluationOptions, 'route_length'),
                          help='route length in metres, map road (a town route comes with '
                               'its seed; CARLA: the wanted length when the goal is drawn) '
                               '(default: %(default)s)')
    evaluate.add_argument('--max-route-time', type=float, metavar='S',
                          default=default_of(EvaluationOptions, 'max_route_time'),
                          help='simulated seconds per route before the evaluator ends it as a '
                               "route timeout, no penalty (default: the simulator's, "
                               f'{_leaderboard_time_limit()})')
    evaluate.add_argument('--allow-training-routes', action='store_true',
                          help=f'accept route seeds below {FIRST_EVALUATION_SEED} '
                               '(recording routes)')
    evaluate.add_argument('--no-video', dest='video', action='store_false',
                          help='skip the episode video')
    evaluate.add_argument('--control-timeout', type=float, metavar='S',
                          default=default_of(EvaluationOptions, 'control_timeout'),
                          help='wall seconds the simulator waits for each control '
                               '(default: %(default)s)')
    add_log_dir_argument(evaluate)
    evaluate.add_argument('--json', action='store_true', help='print summary.json too')
    evaluate.add_argument('--no-progress', action='store_true', help='no progress bar')
    add_bridge_arguments(evaluate)
    evaluate.set_defaults(func=run_evaluate, make_options=evaluation_options)

    drive = subparsers.add_parser(
        'drive', help='drive with a checkpoint live (embedded simulator or CARLA)',
        description='Run the policy node with sim_bridge, with carla_bridge on a CARLA server '
                    '(--backend carla) or against a running carla_ros_bridge, and show a live '
                    'status line until Ctrl-C, --duration or the end of the route.',
        epilog=DRIVE_EPILOG, formatter_class=formatter)
    drive.add_argument('--checkpoint', type=Path, default=None, metavar='DIR',
                       help='trained checkpoint (required unless --driver expert)')
    drive.add_argument('--backend', choices=BACKENDS, default=default_of(DriveOptions, 'backend'),
                       help='sim: embedded simulator; carla: a CARLA server through our '
                            'carla_bridge node; carla_ros_bridge: only the policy node, for a '
                            'running carla_ros_bridge (default: %(default)s)')
    drive.add_argument('--role-name', default=default_of(DriveOptions, 'role_name'),
                       metavar='NAME',
                       help='CARLA role name of the ego vehicle, whose /carla/NAME/... topics '
                            'are driven (default: %(default)s)')
    drive.add_argument('--driver', choices=DRIVERS, default=default_of(DriveOptions, 'driver'),
                       help='who drives (sim, carla) (default: %(default)s)')
    drive.add_argument('--seed', type=int, default=default_of(DriveOptions, 'seed'),
                       help='route seed (default: %(default)s)')
    drive.add_argument('--duration', type=float, default=default_of(DriveOptions, 'duration'),
                       metavar='S',
                       help='stop after S wall seconds (default: route end or Ctrl-C)')
    drive.add_argument('--realtime', action='store_true',
                       help='sim: step in real time (default: synchronous, waits for the '
                            'policy each frame)')
    drive.add_argument('--loop', action='store_true',
                       help='sim: start the route again at its end')
    drive.add_argument('--width', type=int, default=default_of(DriveOptions, 'width'),
                       help='camera width (sim, carla) (default: %(default)s)')
    drive.add_argument('--height', type=int, default=default_of(DriveOptions, 'height'),
                       help='camera height (sim, carla) (default: %(default)s)')
    drive.add_argument('--route-length', type=float, metavar='M',
                       default=default_of(DriveOptions, 'route_length'),
                       help='route length in metres (sim) (default: %(default)s)')
    add_policy_model_arguments(drive, DriveOptions)
    add_log_dir_argument(drive)
    add_bridge_arguments(drive)
    drive.set_defaults(func=run_drive, make_options=drive_options)


def evaluation_options(args) -> EvaluationOptions:
    """
    Return the validated options of ``llava-drive evaluate``.

    :param args: parsed arguments
    """
    map_kind, routes = args.map, args.routes
    if args.benchmark:
        map_kind, routes = 'town', list(benchmark_seeds(args.benchmark))
    if args.driver == 'expert' and (args.checkpoint or args.baseline):
        raise ValueError('--driver expert evaluates the expert alone: drop --checkpoint '
                         'and --baseline')
    return EvaluationOptions(
        checkpoint=args.checkpoint, routes=routes, repetitions=args.repetitions,
        out=args.out or Path('reports') / time.strftime('eval_%Y%m%d_%H%M%S'),
        width=args.width, height=args.height, route_length=args.route_length,
        max_route_time=args.max_route_time, model=args.model, device=args.device,
        dtype=args.dtype, baselines=dict(args.baseline), expert=args.expert,
        allow_training_routes=args.allow_training_routes, video=args.video,
        control_timeout=args.control_timeout, log_dir=args.log_dir, map_kind=map_kind,
        backend=args.backend, carla=bridge_parameters(args))


def drive_options(args) -> DriveOptions:
    """
    Return the validated options of ``llava-drive drive``.

    :param args: parsed arguments
    """
    return DriveOptions(
        checkpoint=args.checkpoint, backend=args.backend, driver=args.driver,
        seed=args.seed, duration=args.duration, synchronous=not args.realtime,
        loop=args.loop, width=args.width, height=args.height,
        route_length=args.route_length, model=args.model, device=args.device,
        dtype=args.dtype, log_dir=args.log_dir, carla=bridge_parameters(args),
        role_name=args.role_name)


def run_evaluate(args) -> int:
    """
    Run ``llava-drive evaluate``; return 0, 1 when it could not finish, 2 when busy.

    :param args: parsed arguments
    """
    from llava_drive.bringup.supervisor import DomainBusy
    from llava_drive.evaluation.evaluate import evaluate

    try:
        document = evaluate(evaluation_options(args), progress=not args.no_progress)
    except DomainBusy as error:
        print(f'llava-drive evaluate: {error}', file=sys.stderr)
        return 2
    except (RuntimeError, ValueError, FileExistsError) as error:
        print(f'llava-drive evaluate: {error}', file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({k: v for k, v in document.items() if k != 'table'}, indent=2))
    print(document['table'])
    print(f'report: {document["report"]}')
    return 0


def run_drive(args) -> int:
    """
    Run ``llava-drive drive``; return 0 (a signal too), 1 when a node failed, 2 when busy.

    :param args: parsed arguments
    """
    from llava_drive.bringup.supervisor import DomainBusy
    from llava_drive.evaluation.drive import drive

    try:
        drive(drive_options(args))
    except DomainBusy as error:
        print(f'llava-drive drive: {error}', file=sys.stderr)
        return 2
    except (RuntimeError, ValueError) as error:
        print(f'llava-drive drive: {error}', file=sys.stderr)
        return 1
    return 0
