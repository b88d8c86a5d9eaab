"""
``llava-drive demo``: the whole loop on the embedded defaults, with nothing but this package.

Records training routes in the embedded simulator (half of them with recovery noise), reviews
one bag, creates the tiny random LLaVA if it is missing, extracts features, trains the action
head and evaluates it on held-out routes. Every step is the same ``llava-drive`` command a
user would type, so the demo doubles as a worked example (printed as it goes).
"""
import argparse
from pathlib import Path
import shlex
import time

from llava_drive.cli_record import seed_list


def register(subparsers):
    """Add the ``demo`` subcommand."""
    parser = subparsers.add_parser(
        'demo', help='record, review, extract, train and evaluate on the embedded defaults',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description=__doc__.split('\n\n')[1])
    parser.add_argument('--workdir', type=Path, default=Path('.'),
                        help='where bags/, models/, features/, trained_models/ and review/ go')
    parser.add_argument('--train-routes', type=seed_list, default=list(range(1, 9)),
                        help='route seeds to record for training')
    parser.add_argument('--heldout-routes', type=seed_list, default=[101, 102],
                        help='route seeds never used for training (evaluation)')
    parser.add_argument('--duration', type=float, default=40.0,
                        help='simulated seconds recorded per route')
    parser.add_argument('--model', type=Path, default=None,
                        help='LLaVA directory (default: WORKDIR/models/llava-tiny, created '
                             'when missing)')
    parser.add_argument('--name', default='demo', help='run name for bags and checkpoint')
    parser.set_defaults(func=run)


def step(title: str, argv) -> None:
    """Print and run one ``llava-drive`` command; raise on failure."""
    from llava_drive.cli import main
    argv = [str(a) for a in argv]
    print(f'\n=== {title}\n$ llava-drive {shlex.join(argv)}', flush=True)
    code = main(argv)
    if code:
        raise RuntimeError(f'step "{title}" failed with exit code {code}')


def run(args) -> int:
    """Run every step and print where the results are."""
    start = time.monotonic()
    work = args.workdir
    stamp = time.strftime('%Y%m%d_%H%M%S')
    bag_dir = work / 'bags' / f'{args.name}_{stamp}'
    model = args.model or work / 'models' / 'llava-tiny'
    features = work / 'features' / f'{args.name}_{stamp}'
    checkpoint = work / 'trained_models' / f'{args.name}_{stamp}'
    train_bags, heldout_bags = [], []
    try:
        for index, seed in enumerate(args.train_routes + args.heldout_routes):
            heldout = seed in args.heldout_routes
            bag = bag_dir / f'{"heldout" if heldout else "train"}_route{seed:03d}'
            noise = ['--noise'] if not heldout and index % 2 else []
            step(f'record route {seed}' + (' (held out)' if heldout else '')
                 + (' with recovery noise' if noise else ''),
                 ['record', '--seed', seed, '--duration', args.duration, '--out', bag] + noise)
            (heldout_bags if heldout else train_bags).append(bag)
        step('review the first bag', ['bag', 'info', train_bags[0]])
        step('review plots, contact sheet and video',
             ['bag', 'review', train_bags[0], '--out', work / 'review' / train_bags[0].name])
        if not (model / 'config.json').is_file():
            step('create the tiny random LLaVA', ['model', 'init-tiny', '--out', model])
        step('extract LLaVA features', ['extract', *train_bags, *heldout_bags,
                                        '--model', model, '--out', features])
        train_features = [features / f'{bag.name}.safetensors' for bag in train_bags]
        heldout_features = [features / f'{bag.name}.safetensors' for bag in heldout_bags]
        step('train the action head', ['train', *train_features, '--out', checkpoint])
        step('evaluate on held-out routes', ['evaluate-offline', checkpoint, *heldout_features,
                                             '--out', checkpoint / 'heldout'])
    except RuntimeError as error:
        print(f'\ndemo stopped: {error}')
        return 1
    minutes = (time.monotonic() - start) / 60
    print(f'\ndemo finished in {minutes:.1f} min\n'
          f'  bags:        {bag_dir}\n'
          f'  review:      {work / "review" / train_bags[0].name}\n'
          f'  features:    {features}\n'
          f'  checkpoint:  {checkpoint}\n'
          f'  held-out:    {checkpoint / "heldout"}')
    return 0
