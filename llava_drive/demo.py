"""
``llava-drive demo``: the whole loop on the embedded defaults, with nothing but this package.

Records training routes in the embedded simulator (every other one with recovery noise) and
one route for an offline check, reviews a bag, creates the tiny random LLaVA if it is
missing, extracts features (the policy's mode, and token0 as a baseline), trains both action
heads, checks the policy offline, and finally drives held-out routes closed loop with the
policy, the token0 baseline and the expert, printing the score table. Every step is the same
``llava-drive`` command a user would type, so the demo doubles as a worked example.
"""
import json
from pathlib import Path
import shlex
import time

from llava_drive.config_checks import default_of
from llava_drive.evaluation.evaluate import EvaluationOptions
from llava_drive.nodes.interfaces import FIRST_EVALUATION_SEED
from llava_drive.recording.cli import seed_list

# The tiny random LLaVA under appearance randomization: the vision tower's 4 x 4 patch grid
# predicts held-out steering as well as image_grid (R^2 0.833 vs 0.831,
# benchmarks/feature_modes.py --randomize) and needs no decoder layers.
DEMO_FEATURE_MODE = 'vision_grid'
DEMO_GRID = 4
# Every route has its own appearance, and unseen appearances are what the policy fails on:
# 36 routes x 20 s gave a closed-loop driving score of 92.4, 12 routes x 30 s 71.9.
DEMO_TRAIN_ROUTES = '1-36'


def register(subparsers):
    """Add the ``demo`` subcommand."""
    parser = subparsers.add_parser(
        'demo', help='record, review, extract, train and evaluate closed loop (embedded sim)',
        description=__doc__.split('\n\n')[1])
    parser.add_argument('--workdir', type=Path, default=Path('.'),
                        help='where bags/, models/, features/, trained_models/, review/ and '
                             'reports/ go (default: %(default)s)')
    parser.add_argument('--train-routes', type=seed_list, default=DEMO_TRAIN_ROUTES,
                        help='route seeds to record for training (below '
                             f'{FIRST_EVALUATION_SEED}) (default: %(default)s)')
    parser.add_argument('--check-route', type=int, default=37,
                        help='recorded route, not trained on, for the offline check '
                             '(default: %(default)s)')
    parser.add_argument('--heldout-routes', type=seed_list,
                        default=default_of(EvaluationOptions, 'routes'),
                        help='route seeds never recorded: closed-loop evaluation '
                             '(default: %(default)s)')
    parser.add_argument('--duration', type=float, default=20.0,
                        help='simulated seconds recorded per route (default: %(default)s)')
    parser.add_argument('--width', type=int, default=200,
                        help='camera width, the tiny LLaVA sees 112 x 112 anyway '
                             '(default: %(default)s)')
    parser.add_argument('--height', type=int, default=150,
                        help='camera height (default: %(default)s)')
    parser.add_argument('--mode', default=DEMO_FEATURE_MODE,
                        help='feature mode of the policy, token0 is the baseline '
                             '(default: %(default)s)')
    parser.add_argument('--grid', type=int, default=DEMO_GRID,
                        help='k of the k x k pooling of grid modes (default: %(default)s)')
    parser.add_argument('--repetitions', type=int,
                        default=default_of(EvaluationOptions, 'repetitions'),
                        help='closed-loop episodes per held-out route and driver '
                             '(default: %(default)s)')
    parser.add_argument('--route-length', type=float, default=150.0,
                        help='held-out route length in metres (default: %(default)s)')
    parser.add_argument('--max-route-time', type=float, default=40.0,
                        help='simulated seconds per held-out route before a timeout, the '
                             'expert needs about 20 s for 150 m (default: %(default)s)')
    parser.add_argument('--model', type=Path, default=None,
                        help='LLaVA directory (default: WORKDIR/models/llava-tiny, created '
                             'when missing)')
    parser.add_argument('--name', default='demo',
                        help='run name for bags and checkpoints (default: %(default)s)')
    parser.set_defaults(func=run)


def step(title: str, argv) -> None:
    """Print and run one ``llava-drive`` command; raise on failure."""
    from llava_drive.bringup.supervisor import Supervisor
    from llava_drive.cli import main
    argv = [str(a) for a in argv]
    print(f'\n=== {title}\n$ llava-drive {shlex.join(argv)}', flush=True)
    code = main(argv)
    if Supervisor.signalled:  # Ctrl-C stopped this step's stack: stop the demo too
        raise KeyboardInterrupt
    if code:
        raise RuntimeError(f'step "{title}" failed with exit code {code}')


def run(args) -> int:
    """Run every step and print the score table and where the results are."""
    start = time.monotonic()
    work = args.workdir
    stamp = time.strftime('%Y%m%d_%H%M%S')
    run_name = f'{args.name}_{stamp}'
    bag_dir = work / 'bags' / run_name
    model = args.model or work / 'models' / 'llava-tiny'
    features = work / 'features' / run_name
    features_token0 = work / 'features' / f'{run_name}_token0'
    checkpoint = work / 'trained_models' / run_name
    checkpoint_token0 = work / 'trained_models' / f'{run_name}_token0'
    report = work / 'reports' / run_name
    camera = ['--width', args.width, '--height', args.height]
    timings = {}
    try:
        if set(args.heldout_routes) & set(args.train_routes + [args.check_route]):
            raise RuntimeError('held-out routes must not be recorded')
        train_bags = []
        for index, seed in enumerate(args.train_routes):
            bag = bag_dir / f'train_route{seed:03d}'
            noise = ['--noise'] if index % 2 else []
            step(f'record route {seed}' + (' with recovery noise' if noise else ''),
                 ['record', '--seed', seed, '--duration', args.duration, '--out', bag,
                  *camera, *noise])
            train_bags.append(bag)
        check_bag = bag_dir / f'check_route{args.check_route:03d}'
        step(f'record route {args.check_route} (offline check, not trained on)',
             ['record', '--seed', args.check_route, '--duration', args.duration,
              '--out', check_bag, *camera])
        timings['record'] = time.monotonic() - start
        step('review the first bag', ['bag', 'info', train_bags[0]])
        step('review plots, contact sheet and video',
             ['bag', 'review', train_bags[0], '--out', work / 'review' / train_bags[0].name])
        if not (model / 'config.json').is_file():
            step('create the tiny random LLaVA', ['model', 'init-tiny', '--out', model])
        mark = time.monotonic()
        step(f'extract LLaVA features ({args.mode})',
             ['extract', *train_bags, check_bag, '--model', model, '--mode', args.mode,
              '--grid', args.grid, '--out', features, '--no-progress'])
        step('extract token0 features (the baseline: the same for every frame)',
             ['extract', *train_bags, '--model', model, '--mode', 'token0',
              '--out', features_token0, '--no-progress'])
        timings['extract'] = time.monotonic() - mark
        mark = time.monotonic()
        # Speed as an input: one camera frame cannot tell standing from cruising.
        step('train the action head', [
            'train', *[features / f'{bag.name}.safetensors' for bag in train_bags],
            '--use-speed', '--out', checkpoint, '--no-progress'])
        step('train the token0 baseline head', ['train', features_token0, '--use-speed',
                                                '--out', checkpoint_token0, '--no-progress'])
        step('offline check on a route it was not trained on',
             ['evaluate-offline', checkpoint, features / f'{check_bag.name}.safetensors',
              '--out', checkpoint / 'offline_check'])
        timings['train'] = time.monotonic() - mark
        mark = time.monotonic()
        step('closed-loop evaluation on held-out routes (policy, token0 baseline, expert)', [
            'evaluate', '--checkpoint', checkpoint, '--baseline',
            f'token0={checkpoint_token0}', '--model', model,
            '--routes', ','.join(str(s) for s in args.heldout_routes),
            '--repetitions', args.repetitions, '--route-length', args.route_length,
            '--max-route-time', args.max_route_time, *camera, '--out', report])
        timings['evaluate'] = time.monotonic() - mark
    except RuntimeError as error:
        print(f'\ndemo stopped: {error}')
        return 1
    minutes = (time.monotonic() - start) / 60
    summary = json.loads((report / 'summary.json').read_text())
    print(f'\ndemo finished in {minutes:.1f} min ('
          + ', '.join(f'{k} {v / 60:.1f}' for k, v in timings.items()) + ' min)\n'
          f'  bags:        {bag_dir}\n'
          f'  review:      {work / "review" / train_bags[0].name}\n'
          f'  features:    {features} (token0: {features_token0})\n'
          f'  checkpoint:  {checkpoint} (token0: {checkpoint_token0})\n'
          f'  report:      {report / "report.md"}\n'
          f'closed loop, held-out routes {args.heldout_routes}, {args.repetitions} '
          f'repetitions: policy driving score {summary["driving_score"]:.1f} '
          f'(route completion {summary["route_completion"]:.1f} %), expert '
          f'{summary["expert"]["driving_score"]:.1f}, token0 '
          f'{summary["baselines"]["token0"]["driving_score"]:.1f}')
    return 0
