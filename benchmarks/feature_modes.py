"""
Compare LLaVA feature modes by how well an MLP head predicts held-out steering.

Pipeline, without ROS: the embedded simulator (``llava_drive.sim``) is driven by the pure
expert (``llava_drive.expert.driver``) on separate routes, one bag per route written with
``BagWriter`` (20 Hz, JPEG). The executed steering gets seeded Ornstein-Uhlenbeck noise, as
the expert node's ``noise_steer_std`` does, while the bag records the expert's clean command,
so the data contains recoveries. Then, for each feature mode, the real extractor (the tiny
random-weight LLaVA from ``llava_drive.features.tiny_model``) turns every bag into a feature
file, the default MLP head is trained on the training routes (validation = whole held-out
training routes) and evaluated on routes it never saw. Prints one row per mode.

Run: ``.venv/bin/python benchmarks/feature_modes.py [--routes 10 --heldout 3 ...]``.
The tiny model's weights are random: absolute numbers say nothing about a real LLaVA, only
whether a mode carries frame-dependent image information at all (token0 cannot).
"""
import argparse
import json
import math
from pathlib import Path
import shutil
import sys
import tempfile
import time

# Run from a checkout without installing.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llava_drive.bag.writer import BagWriter, BagWriterConfig  # noqa: E402
from llava_drive.control import Control  # noqa: E402
from llava_drive.expert.driver import ExpertDriver  # noqa: E402
from llava_drive.features.spec import DEFAULT_GRID, FeatureMode  # noqa: E402
from llava_drive.sim.world import SimConfig, Simulator  # noqa: E402
import numpy as np  # noqa: E402

MODES = ('image_grid', 'image_mean', 'last_token', 'vision_grid', 'vision_cls', 'token0')
START_NS = 1_000_000_000


def record_route(bag_dir: Path, route_seed: int, args) -> dict:
    """Drive one route with the noisy expert and write it as one bag; return its stats."""
    sim = Simulator(SimConfig(width=args.width, height=args.height, route_seed=route_seed,
                              route_length_m=args.route_length, dt=0.05,
                              randomize=args.randomize))
    sim.reset(route_seed)
    expert = ExpertDriver()
    path = sim.route_waypoints()
    rng = np.random.default_rng([args.seed, route_seed])
    noise, tau = 0.0, 1.0
    steps = int(args.max_route_s / sim.config.dt)
    labels = []
    writer = BagWriter(BagWriterConfig(path=str(bag_dir), backend='mcap'))
    try:
        writer.set_recording_info({'simulator': 'llava_drive.sim', 'route_seed': route_seed,
                                   'noise_steer_std': args.noise_steer_std,
                                   'randomize': args.randomize,
                                   'width': args.width, 'height': args.height})
        for step in range(steps):
            stamp_ns = START_NS + step * 50_000_000
            state = sim.state
            label = expert.control(state.x, state.y, state.yaw, state.speed, path,
                                   dt=sim.config.dt)
            if step == 0:
                writer.write_episode_marker(stamp_ns, {'event': 'start', 'episode': 0,
                                                       'route_seed': route_seed})
            writer.write_pair(stamp_ns, sim.render(), 'bgra8', label, float(state.speed))
            labels.append(label.as_array())
            # Ornstein-Uhlenbeck steering noise with time constant tau on the executed command.
            noise += (-noise * sim.config.dt / tau + args.noise_steer_std
                      * math.sqrt(2 * sim.config.dt / tau) * rng.normal())
            executed = Control(steer=label.steer + noise, throttle=label.throttle,
                               brake=label.brake).clamped()
            if sim.step(executed).done:
                break
        writer.write_episode_marker(stamp_ns, {'event': 'end', 'episode': 0,
                                               'route_seed': route_seed})
    finally:
        writer.close()
    summary = sim.summary()
    labels = np.asarray(labels)
    return {'route_seed': route_seed, 'frames': len(labels),
            'seconds': round(len(labels) * sim.config.dt, 1),
            'done_reason': summary.done_reason,
            'route_completion': round(summary.route_completion, 1),
            'steer_std': float(labels[:, 0].std())}


def run_mode(mode: str, model_dir: Path, bags, train_names, test_names, work: Path, args):
    """Extract, train and evaluate one feature mode; return its result row."""
    from llava_drive.features.extract_bags import extract_bags
    from llava_drive.features.extractor import LlavaFeatureExtractor
    from llava_drive.learning.evaluate_offline import evaluate_offline
    from llava_drive.learning.train import train, TrainConfig

    started = time.monotonic()
    extractor = LlavaFeatureExtractor(model_dir, mode=mode, grid=args.grid)
    feature_dir = work / 'features' / mode
    results = extract_bags(extractor, bags, feature_dir, batch_size=args.batch_size,
                           progress=False)
    failed = [r for r in results if r.status == 'failed']
    if failed:
        raise RuntimeError(f'{mode}: extraction failed for {[str(r.bag) for r in failed]}')
    extract_s = time.monotonic() - started
    frames = sum(r.frames for r in results)
    del extractor
    files = {r.output.stem: r.output for r in results}
    started = time.monotonic()
    metrics = train([files[name] for name in train_names], work / 'models' / mode,
                    TrainConfig(head='mlp', epochs=args.epochs, seed=args.seed, lr=args.lr,
                                val_fraction=args.val_fraction, split_by='bag'),
                    progress=False, log=None)
    train_s = time.monotonic() - started
    report = evaluate_offline(work / 'models' / mode, [files[name] for name in test_names],
                              work / 'reports' / mode)
    held_out = report['metrics']
    spec = json.loads((work / 'models' / mode / 'config.json').read_text())['feature_spec']
    return {'mode': mode, 'layer': spec['layer'], 'dim': spec['feature_dim'],
            'val_steer_r2': metrics['val_steer_r2'], 'test_steer_r2': held_out['steer_r2'],
            'test_steer_mae': held_out['steer_mae'],
            'test_throttle_r2': held_out['throttle_r2'],
            'best_epoch': metrics['best_epoch'],
            # None when every feature file was up to date (reused, not extracted).
            'extract_ms_per_frame': 1000.0 * extract_s / frames if frames else None,
            'train_s': train_s}


def _ms(value) -> str:
    """Format milliseconds per frame, or say the features were reused."""
    return 'reused' if value is None else f'{value:.1f}'


def main(argv=None) -> int:
    """Record, extract, train and print the per-mode table; return the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--routes', type=int, default=10, help='routes (bags) recorded')
    parser.add_argument('--heldout', type=int, default=3, help='routes kept for the test')
    parser.add_argument('--route-length', type=float, default=500.0, help='metres per route')
    parser.add_argument('--max-route-s', type=float, default=120.0,
                        help='stop recording a route after this simulated time')
    parser.add_argument('--width', type=int, default=160, help='camera width in pixels')
    parser.add_argument('--height', type=int, default=120, help='camera height in pixels')
    parser.add_argument('--noise-steer-std', type=float, default=0.05,
                        help='std of the OU steering noise on the executed command')
    parser.add_argument('--randomize', action='store_true',
                        help='randomize colours, lighting and camera mount per route')
    parser.add_argument('--modes', nargs='+', default=list(MODES),
                        choices=[m.value for m in FeatureMode])
    parser.add_argument('--batch-size', type=int, default=32, help='extraction batch size')
    parser.add_argument('--epochs', type=int, default=100, help='maximum training epochs')
    parser.add_argument('--lr', type=float, default=1e-3, help='AdamW learning rate')
    parser.add_argument('--grid', type=int, default=DEFAULT_GRID,
                        help='k of the k x k pooling of the grid modes')
    parser.add_argument('--val-fraction', type=float, default=0.2,
                        help='share of training routes used for validation')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--work', type=Path, help='work directory (default: a temporary one)')
    parser.add_argument('--reuse', action='store_true',
                        help='reuse the bags and up-to-date feature files already in --work')
    args = parser.parse_args(argv)
    if not 1 <= args.heldout <= args.routes - 2:
        parser.error('need 1 <= --heldout <= --routes - 2 (training needs 2 routes)')

    from llava_drive.features.tiny_model import create_tiny_llava

    work = args.work or Path(tempfile.mkdtemp(prefix='feature_modes_'))
    work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    model_dir = create_tiny_llava(work / 'tiny_llava', seed=args.seed)

    bags = [work / 'bags' / f'route_{index + 1:02d}' for index in range(args.routes)]
    routes_file = work / 'routes.json'
    if args.reuse and routes_file.is_file() and all(b.is_dir() for b in bags):
        routes = json.loads(routes_file.read_text())[:args.routes]  # extraction is resumable
    else:
        routes = []
        for index, bag in enumerate(bags):
            if bag.exists():
                shutil.rmtree(bag)
            routes.append(record_route(bag, index + 1, args))
        routes_file.write_text(json.dumps(routes, indent=2))
    record_s = time.monotonic() - started
    frames = sum(r['frames'] for r in routes)
    print(f'recorded {len(bags)} routes, {frames} frames = {frames / 20 / 60:.1f} min at 20 Hz, '
          f'{args.width}x{args.height} in {record_s:.0f} s')
    for route in routes:
        print(f'  route {route["route_seed"]:2d}: {route["seconds"]:5.1f} s, '
              f'{route["done_reason"]}, completion {route["route_completion"]:.0f}%, '
              f'steer std {route["steer_std"]:.3f}')
    names = [bag.name for bag in bags]
    test_names, train_names = names[-args.heldout:], names[:-args.heldout]
    print(f'train routes {train_names}; held-out routes {test_names}\n')

    rows = []
    for mode in args.modes:
        rows.append(run_mode(mode, model_dir, bags, train_names, test_names, work, args))
        print(f'  {mode}: done', flush=True)
    print()
    header = (f'{"mode":12} {"layer":>5} {"D":>5} {"val steer R2":>13} '
              f'{"held-out steer R2":>18} {"steer MAE":>10} {"throttle R2":>12} '
              f'{"best ep":>8} {"extract ms/fr":>14} {"train s":>8}')
    print(header)
    print('-' * len(header))
    for row in rows:
        print(f'{row["mode"]:12} {str(row["layer"]):>5} {row["dim"]:5d} '
              f'{row["val_steer_r2"]:13.3f} {row["test_steer_r2"]:18.3f} '
              f'{row["test_steer_mae"]:10.4f} {row["test_throttle_r2"]:12.3f} '
              f'{row["best_epoch"]:8d} {_ms(row["extract_ms_per_frame"]):>14} '
              f'{row["train_s"]:8.1f}')
    print(f'\ntotal {time.monotonic() - started:.0f} s; work directory {work}')
    (work / 'feature_modes.json').write_text(json.dumps({'routes': routes, 'rows': rows},
                                                        indent=2))
    return 0


if __name__ == '__main__':
    sys.exit(main())
