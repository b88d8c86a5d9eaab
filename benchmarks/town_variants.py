"""
Route-conditioned policy variants on the held-out town benchmark: one table.

Records town training routes with the expert (every other one with recovery noise; each seed
is its own town), makes the tiny LLaVA when missing, extracts three feature sets (the vision
tower's grid, the decoder's last token under the route prompt, token0) and trains every
variant of {direct control, waypoints} x {command in the prompt, command as head input, no
command}, plus the token0 baseline. Then each driver, and the expert, drives the held-out
routes closed loop (``llava-drive evaluate``, one report per driver) and the table prints:
DS, RC, success, junction success (the route command followed), red-light infractions and
collisions per driven km. Every step is a ``llava-drive`` command; steps whose output exists in
``--workdir`` are reused, so an interrupted run resumes and a second run only evaluates what
is missing.

Usage: ``python benchmarks/town_variants.py --workdir /tmp/variants [--train-routes 9011-9034]
[--duration 60] [--heldout 9101-9110] [--repetitions 3] [--variants NAME,...]``. Prints the
table (and writes it to WORKDIR/table.md); asserts nothing.
"""
import argparse
import json
from pathlib import Path
import subprocess
import sys
import time

# name: (feature set, train flags). Vision modes see the command as head input; the decoder
# reads it in its prompt; "none" is the same vision features without any route input.
FEATURE_SETS = {
    'vision': ['--mode', 'vision_grid', '--grid', '4'],
    'prompt': ['--mode', 'last_token', '--prompt', '{command} Speed {speed} m/s.'],
    'token0': ['--mode', 'token0'],
}
CONDITIONING = {
    'prompt': ('prompt', []),
    'head': ('vision', ['--use-command', '--use-target']),
    'none': ('vision', []),
}
OUTPUTS = {'control': ['--output', 'control'], 'waypoints': ['--output', 'waypoints']}
VARIANTS = {f'{output}/{conditioning}': (features, [*OUTPUTS[output], *flags])
            for output in OUTPUTS for conditioning, (features, flags) in CONDITIONING.items()}
VARIANTS['token0'] = ('token0', ['--output', 'control'])
EXPERT = 'expert'


def llava_drive(*args, log=None):
    """Run one ``llava-drive`` command (this interpreter); raise with its output on failure."""
    command = [sys.executable, '-m', 'llava_drive.cli', *[str(a) for a in args]]
    result = subprocess.run(command, capture_output=True, text=True)
    if log is not None:
        Path(log).write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        raise RuntimeError('llava-drive %s failed (rc %d):\n%s' % (
            ' '.join(command[3:5]), result.returncode, (result.stdout + result.stderr)[-3000:]))
    return result.stdout


def record(workdir: Path, seeds, duration: float, camera) -> list:
    """Record one bag per town route (odd positions with recovery noise); reuse existing."""
    bags = []
    for index, seed in enumerate(seeds):
        bag = workdir / 'bags' / f'town_{seed}'
        if not (bag / 'metadata.yaml').is_file():
            noise = ['--noise'] if index % 2 else []
            llava_drive('record', '--map', 'town', '--seed', seed, '--duration', duration,
                        '--out', bag, *camera, *noise, log=workdir / 'logs' / f'record_{seed}.log')
        bags.append(bag)
    return bags


def driven_rates(report: Path) -> dict:
    """Return red-light infractions and collisions per driven km from a report's episodes."""
    episodes = json.loads((report / 'episodes.json').read_text())
    km = sum(e['summary']['completed_m'] for e in episodes) / 1000.0
    counts = {}
    for episode in episodes:
        for kind, count in episode['summary']['counts'].items():
            counts[kind] = counts.get(kind, 0) + count
    collisions = sum(count for kind, count in counts.items() if kind.startswith('collision'))
    per_km = (lambda n: n / km) if km > 0 else (lambda n: None)  # nothing driven: no rate
    return {'km': km, 'red_light_per_km': per_km(counts.get('red_light', 0)),
            'collisions_per_km': per_km(collisions)}


def table(rows) -> str:
    """Return the Markdown table of ``(driver, summary, rates)`` rows."""
    from llava_drive.evaluation.report import number_cell
    lines = ['| driver | DS | RC % | success % | junction success % | red lights / km | '
             'collisions / km | episodes |', '|---|---|---|---|---|---|---|---|']
    for name, summary, rates in rows:
        lines.append('| %s | %.1f ± %.1f | %.1f | %.0f | %s | %s | %s | %d |' % (
            name, summary['driving_score'], summary.get('driving_score_std', 0.0),
            summary['route_completion'], summary['success_rate'],
            number_cell(summary.get('junction_success'), 0),
            number_cell(rates['red_light_per_km'], 2), number_cell(rates['collisions_per_km'], 2),
            summary['episodes']))
    return '\n'.join(lines)


def main(argv=None) -> int:
    """Run every step that has no output yet and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--workdir', required=True, type=Path)
    parser.add_argument('--train-routes', default='9011-9034',
                        help='town route seeds to record for training (default: %(default)s)')
    parser.add_argument('--duration', type=float, default=60.0,
                        help='simulated seconds recorded per training route (a town route '
                             'takes the expert 25-60 s; finished routes restart) '
                             '(default: %(default)s)')
    parser.add_argument('--heldout', default='9101-9110',
                        help='held-out town routes driven closed loop (default: the '
                             'town-heldout benchmark)')
    parser.add_argument('--repetitions', type=int, default=3)
    parser.add_argument('--camera', default='200x150', metavar='WxH',
                        help='camera size, recorded and driven (default: %(default)s)')
    parser.add_argument('--variants', default=','.join([*VARIANTS, EXPERT]),
                        help='drivers to evaluate (default: all: %(default)s)')
    parser.add_argument('--train-seed', type=int, default=0, help='training seed of the heads')
    args = parser.parse_args(argv)
    from llava_drive.recording.cli import seed_list

    drivers = [name.strip() for name in args.variants.split(',') if name.strip()]
    unknown = sorted(set(drivers) - set(VARIANTS) - {EXPERT})
    if unknown:
        parser.error(f'unknown variants {unknown}; choose from {[*VARIANTS, EXPERT]}')
    workdir = args.workdir.resolve()
    (workdir / 'logs').mkdir(parents=True, exist_ok=True)
    width, height = (int(v) for v in args.camera.lower().split('x'))
    camera = ('--width', width, '--height', height)
    heldout = ','.join(str(seed) for seed in seed_list(args.heldout))
    started = time.monotonic()

    def progress(what: str):
        print(f'[{(time.monotonic() - started) / 60:5.1f} min] {what}', flush=True)

    bags = record(workdir, seed_list(args.train_routes), args.duration, camera)
    progress(f'recorded {len(bags)} town routes x {args.duration:.0f} s')
    model = workdir / 'models' / 'llava-tiny'
    if not (model / 'config.json').is_file():
        llava_drive('model', 'init-tiny', '--out', model)
    needed = {VARIANTS[name][0] for name in drivers if name in VARIANTS}
    for feature_set in sorted(needed):
        # extract is resumable: bags whose features match the spec are skipped.
        llava_drive('extract', *bags, '--model', model, *FEATURE_SETS[feature_set],
                    '--out', workdir / 'features' / feature_set, '--no-progress',
                    log=workdir / 'logs' / f'extract_{feature_set}.log')
        progress(f'features: {feature_set}')
    rows = []
    for name in drivers:
        report = workdir / 'reports' / name.replace('/', '_')
        if not (report / 'summary.json').is_file():
            if name == EXPERT:
                driver = ['--driver', 'expert']
            else:
                feature_set, flags = VARIANTS[name]
                checkpoint = workdir / 'trained_models' / name.replace('/', '_')
                if not (checkpoint / 'config.json').is_file():
                    llava_drive('train', workdir / 'features' / feature_set, '--use-speed',
                                *flags, '--seed', args.train_seed, '--out', checkpoint,
                                '--no-progress', log=workdir / 'logs' / f'train_{report.name}.log')
                    progress(f'trained {name}')
                driver = ['--checkpoint', checkpoint, '--no-expert']
            llava_drive('evaluate', *driver, '--map', 'town', '--routes', heldout,
                        '--repetitions', args.repetitions, *camera, '--no-video',
                        '--no-progress', '--out', report,
                        log=workdir / 'logs' / f'evaluate_{report.name}.log')
        summary = json.loads((report / 'summary.json').read_text())
        if name == EXPERT:  # an expert-only report keeps its figures under 'expert'
            summary = summary[EXPERT]
        rows.append((name, summary, driven_rates(report)))
        progress(f'{name}: DS {summary["driving_score"]:.1f}')
    text = table(rows)
    (workdir / 'table.md').write_text(text + '\n')
    print(f'\nheld-out town routes {heldout}, {args.repetitions} repetitions, camera '
          f'{width}x{height}, training routes {args.train_routes} x {args.duration:.0f} s\n')
    print(text)
    return 0


if __name__ == '__main__':
    sys.exit(main())
