"""
The README's step-by-step path with every default, as a new user runs it, scored held out.

Records ``--routes`` training routes (seeds 1..N) and ``--heldout`` held-out routes (seeds
101..) of ``--duration`` s each with ``llava-drive record`` (defaults: 800x600, JPEG), makes the
tiny LLaVA, extracts features with ``llava-drive extract`` (default mode and prompt), trains
with ``llava-drive train`` and no flags but ``--seed`` for each training seed, and prints the
held-out steer R^2 of each checkpoint (``llava-drive evaluate-offline``). Steps whose output
already exists in ``--workdir`` are reused, so a second run with other seeds only trains.

Usage: ``python benchmarks/new_user_path.py --workdir /tmp/newuser [--routes 5]
[--duration 120] [--heldout 3] [--seeds 0-4]``. Prints figures; asserts nothing.
"""
import argparse
import json
from pathlib import Path
import subprocess
import sys
import time

TRAIN_SEED_START = 1
HELDOUT_SEED_START = 101


def llava_drive(*args, log=None):
    """Run one ``llava-drive`` command (this interpreter); raise with its output on failure."""
    command = [sys.executable, '-m', 'llava_drive.cli', *[str(a) for a in args]]
    result = subprocess.run(command, capture_output=True, text=True)
    if log is not None:
        Path(log).write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        output = (result.stdout + result.stderr)[-3000:]
        raise RuntimeError('%s failed (rc %d):\n%s'
                           % (' '.join(command[2:5]), result.returncode, output))
    return result.stdout


def record(workdir: Path, seeds, duration: float, camera=()) -> list:
    """Record one bag per route seed (skipping bags that exist); return their paths."""
    bags = []
    for seed in seeds:
        bag = workdir / 'bags' / ('route_%d' % seed)
        if not (bag / 'metadata.yaml').is_file():
            llava_drive('record', '--duration', duration, '--seed', seed, '--out', bag, *camera,
                        log=workdir / ('record_%d.log' % seed))
        bags.append(bag)
    return bags


def steer_r2(workdir: Path, checkpoint: Path, heldout: Path) -> float:
    """Return the held-out steer R^2 of a checkpoint."""
    text = llava_drive('evaluate-offline', checkpoint, heldout, '--json')
    return json.loads(text)['steer_r2']


def main(argv=None) -> int:
    """Run the path and print one line per training seed."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--workdir', required=True, type=Path)
    parser.add_argument('--routes', type=int, default=5, help='training routes (seeds 1..N)')
    parser.add_argument('--heldout', type=int, default=3, help='held-out routes (seeds 101..)')
    parser.add_argument('--duration', type=float, default=120.0, help='seconds per route')
    parser.add_argument('--seeds', default='0-4', help='training seeds, e.g. 0-4 or 0,3')
    parser.add_argument('--camera', default=None, metavar='WxH',
                        help="camera size (default: record's, 800x600); smaller only to keep "
                             'a test within minutes')
    args = parser.parse_args(argv)
    from llava_drive.recording.cli import seed_list

    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    camera = ()
    if args.camera:
        width, height = args.camera.lower().split('x')
        camera = ('--width', int(width), '--height', int(height))
    train_bags = record(workdir, range(TRAIN_SEED_START, TRAIN_SEED_START + args.routes),
                        args.duration, camera)
    heldout_bags = record(workdir, range(HELDOUT_SEED_START, HELDOUT_SEED_START + args.heldout),
                          args.duration, camera)
    print('recorded %d + %d routes x %.0f s (%.0f s so far)'
          % (len(train_bags), len(heldout_bags), args.duration, time.monotonic() - started))
    model = workdir / 'models' / 'llava-tiny'
    if not (model / 'config.json').is_file():
        llava_drive('model', 'init-tiny', '--out', model)
    llava_drive('extract', *train_bags, '--model', model, '--out', workdir / 'features',
                '--no-progress')
    llava_drive('extract', *heldout_bags, '--model', model, '--out',
                workdir / 'heldout_features', '--no-progress')
    print('extracted (%.0f s so far)' % (time.monotonic() - started))
    results = []
    for seed in seed_list(args.seeds):
        checkpoint = workdir / 'trained_models' / ('seed_%d' % seed)
        llava_drive('train', workdir / 'features', '--out', checkpoint, '--seed', seed,
                    '--no-progress', log=workdir / ('train_%d.log' % seed))
        metrics = json.loads((checkpoint / 'config.json').read_text())['metrics']
        r2 = steer_r2(workdir, checkpoint, workdir / 'heldout_features')
        results.append(r2)
        print('seed %d: held-out steer R^2 %.3f (validation %.3f, train %.3f, best epoch %d '
              'of %d)' % (seed, r2, metrics['val_steer_r2'], metrics['train_steer_r2'],
                          metrics['best_epoch'], metrics['epochs_run']))
    print('held-out steer R^2 over %d seeds: min %.3f, mean %.3f (%d training routes x %.0f s, '
          '%d held-out routes; %.0f s in all)'
          % (len(results), min(results), sum(results) / len(results), args.routes,
             args.duration, args.heldout, time.monotonic() - started))
    return 0


if __name__ == '__main__':
    sys.exit(main())
