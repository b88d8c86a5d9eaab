"""``llava-drive train`` and ``llava-drive evaluate-offline`` (torch is imported lazily)."""
import argparse
import json
import sys

from llava_drive.config_checks import default_of
from llava_drive.learning.config import TrainConfig
from llava_drive.learning.dataset import SPLIT_KEYS

TRAIN_EPILOG = """\
examples:
  llava-drive train features/ --out trained_models/mlp_grid
  llava-drive train features/ --out trained_models/gru4 --head gru --window 4 --use-speed
  llava-drive train a.safetensors b.safetensors --out trained_models/t --head transformer \\
      --window 8 --hidden-size 256 --num-layers 2

Validation holds out whole bags (or whole episodes with --split-by episode), never random
frames. The output directory gets model.safetensors, config.json, train_config.json,
loss_curves.png, history.json and TensorBoard logs in logs/, all at once when training ends
(until then they grow in .NAME.partial-PID beside it); only an absent or empty directory, or
an earlier checkpoint, is replaced. Feature files with non-finite features, speeds or
actions, or actions outside steer [-1, 1], throttle and brake [0, 1], are refused (exit 2,
naming the file and the first bad frame): extract drops such frames.
"""

EVALUATE_EPILOG = """\
example:
  llava-drive evaluate-offline trained_models/mlp_grid heldout_features/ --out reports/mlp

Prints MAE, RMSE and R^2 per action; with --out writes metrics.json and one
<bag>_controls.png per bag (predicted vs recorded steer, throttle, brake over time).
Offline error is a sanity check; closed-loop driving (llava-drive evaluate) is the test.
"""


def _loss_weights(text: str):
    """Parse ``'1,0.5,0.5'`` into three floats (steer, throttle, brake)."""
    try:
        values = tuple(float(v) for v in text.split(','))
    except ValueError:
        raise argparse.ArgumentTypeError(f'not three comma-separated numbers: {text!r}')
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f'need 3 weights (steer,throttle,brake): {text!r}')
    return values


def register(subparsers):
    """
    Add the ``train`` and ``evaluate-offline`` subcommands.

    :param subparsers: the ``add_subparsers()`` object of the main parser.
    """
    formatter = argparse.RawDescriptionHelpFormatter
    parser = subparsers.add_parser(
        'train', help='train an action head on feature files',
        description='Train an action head (mlp, gru or transformer) on LLaVA feature files '
                    'made by "llava-drive extract"; keeps the weights of the epoch with the '
                    'lowest validation loss.',
        epilog=TRAIN_EPILOG, formatter_class=formatter)
    parser.add_argument('features', nargs='+', metavar='FEATURES',
                        help='feature files (*.safetensors) or directories of them; all must '
                             'share one feature specification')
    parser.add_argument('--out', required=True, metavar='DIR',
                        help='checkpoint directory to create, e.g. trained_models/NAME')
    model = parser.add_argument_group('head architecture')
    model.add_argument('--head', default=default_of(TrainConfig, 'head'),
                       choices=('mlp', 'gru', 'transformer'),
                       help='head type (default: %(default)s, the original 2-layer MLP)')
    model.add_argument('--window', type=int, default=default_of(TrainConfig, 'window'),
                       metavar='K',
                       help='consecutive frames per sample, newest last (default: %(default)s)')
    model.add_argument('--hidden-size', type=int, default=default_of(TrainConfig, 'hidden_size'),
                       help='hidden width (default: %(default)s)')
    model.add_argument('--num-layers', type=int, default=default_of(TrainConfig, 'num_layers'),
                       help='gru/transformer layers (default: %(default)s)')
    model.add_argument('--num-heads', type=int, default=default_of(TrainConfig, 'num_heads'),
                       help='transformer attention heads (default: %(default)s)')
    model.add_argument('--dropout', type=float, default=default_of(TrainConfig, 'dropout'),
                       help='dropout probability (default: %(default)s)')
    model.add_argument('--use-speed', action='store_true',
                       help='give the head the vehicle speed as an extra input')
    model.add_argument('--use-command', action='store_true',
                       help='give the head the route command (one-hot) as an extra input '
                            '(conditional imitation; for vision modes)')
    model.add_argument('--use-target', action='store_true',
                       help='give the head the next route target point (vehicle frame) as an '
                            'extra input')
    model.add_argument('--output', default=default_of(TrainConfig, 'output'),
                       choices=('control', 'waypoints'),
                       help='control: steer, throttle, brake; waypoints: future positions from '
                            'the recorded odometry and a target speed, followed by the '
                            "policy's controller (default: %(default)s)")
    model.add_argument('--num-waypoints', type=int, metavar='K',
                       default=default_of(TrainConfig, 'num_waypoints'),
                       help='waypoints per prediction (default: %(default)s)')
    model.add_argument('--waypoint-spacing', type=float, metavar='S',
                       default=default_of(TrainConfig, 'waypoint_spacing_s'),
                       help='seconds between waypoints (default: %(default)s)')
    model.add_argument('--speed-horizon', type=float, metavar='S',
                       default=default_of(TrainConfig, 'speed_horizon_s'),
                       help='the target speed label is the recorded speed this many seconds '
                            'ahead (default: %(default)s)')
    opt = parser.add_argument_group('optimization')
    opt.add_argument('--epochs', type=int, default=default_of(TrainConfig, 'epochs'),
                     help='maximum epochs (default: %(default)s)')
    opt.add_argument('--batch-size', type=int, default=default_of(TrainConfig, 'batch_size'),
                     help='windows per optimizer step (default: %(default)s)')
    opt.add_argument('--lr', type=float, default=default_of(TrainConfig, 'lr'),
                     help='AdamW learning rate (default: %(default)s)')
    opt.add_argument('--weight-decay', type=float, default=default_of(TrainConfig, 'weight_decay'),
                     help='AdamW weight decay (default: %(default)s)')
    opt.add_argument('--warmup-steps', type=int, default=default_of(TrainConfig, 'warmup_steps'),
                     help='optimizer steps over which the learning rate rises linearly to --lr '
                          '(keeps wide, correlated features from saturating the outputs early; '
                          '0 = off) (default: %(default)s)')
    opt.add_argument('--patience', type=int, default=default_of(TrainConfig, 'patience'),
                     help='stop after this many epochs without a better validation loss; '
                          '0 = run all epochs (default: %(default)s)')
    opt.add_argument('--min-epochs', type=int, default=default_of(TrainConfig, 'min_epochs'),
                     help='never stop early before this epoch (default: %(default)s)')
    opt.add_argument('--val-smoothing', type=float,
                     default=default_of(TrainConfig, 'val_smoothing'),
                     help='weight of the past in the moving average of the validation loss '
                          'that early stopping and the best epoch follow; 0 = raw loss '
                          '(default: %(default)s)')
    opt.add_argument('--loss-weights', type=_loss_weights, metavar='S,T,B',
                     default=default_of(TrainConfig, 'loss_weights'),
                     help='weights of the steer, throttle, brake errors (default: %s)'
                          % ','.join(f'{w:g}' for w in default_of(TrainConfig, 'loss_weights')))
    opt.add_argument('--no-scale-loss', action='store_true',
                     help='do not divide the error of each action by its label variance (by '
                          'default steering, with its small spread, counts as much as the '
                          'pedals)')
    opt.add_argument('--seed', type=int, default=default_of(TrainConfig, 'seed'),
                     help='seed of split, initialization and batch order (default: %(default)s)')
    opt.add_argument('--device', default=default_of(TrainConfig, 'device'),
                     help='torch device, e.g. cpu, cuda, cuda:1 (default: %(default)s)')
    split = parser.add_argument_group('validation split')
    split.add_argument('--split-by', default=default_of(TrainConfig, 'split_by'),
                       choices=SPLIT_KEYS,
                       help='hold out whole bags or whole episodes; auto = bag when there '
                            'are at least 2 bags (default: %(default)s)')
    split.add_argument('--val-fraction', type=float,
                       default=default_of(TrainConfig, 'val_fraction'),
                       help='share of bags/episodes held out (default: %(default)s)')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')
    parser.set_defaults(func=run_train, make_options=train_config)

    parser = subparsers.add_parser(
        'evaluate-offline', help='per-action error of a checkpoint on held-out features',
        description="Compare a checkpoint's predictions with the recorded controls of "
                    'feature files it was not trained on.',
        epilog=EVALUATE_EPILOG, formatter_class=formatter)
    parser.add_argument('checkpoint', metavar='CHECKPOINT', help='checkpoint directory')
    parser.add_argument('features', nargs='+', metavar='FEATURES',
                        help='held-out feature files or directories')
    parser.add_argument('--out', metavar='DIR',
                        help='write metrics.json and <bag>_controls.png plots here')
    parser.add_argument('--json', action='store_true',
                        help='print the metrics as JSON instead of a table')
    parser.set_defaults(func=run_evaluate_offline)


def train_config(args) -> TrainConfig:
    """
    Return the validated :class:`~llava_drive.learning.config.TrainConfig` of ``train``.

    :param args: parsed arguments.
    """
    return TrainConfig(
        head=args.head, window=args.window, hidden_size=args.hidden_size,
        num_layers=args.num_layers, num_heads=args.num_heads, dropout=args.dropout,
        use_speed=args.use_speed, use_command=args.use_command,
        use_target=args.use_target, output=args.output,
        num_waypoints=args.num_waypoints, waypoint_spacing_s=args.waypoint_spacing,
        speed_horizon_s=args.speed_horizon, epochs=args.epochs, batch_size=args.batch_size,
        lr=args.lr, weight_decay=args.weight_decay, warmup_steps=args.warmup_steps,
        seed=args.seed, val_fraction=args.val_fraction, split_by=args.split_by,
        patience=args.patience, min_epochs=args.min_epochs, val_smoothing=args.val_smoothing,
        loss_weights=args.loss_weights, scale_loss=not args.no_scale_loss, device=args.device)


def run_train(args) -> int:
    """
    Run ``llava-drive train``; return the exit code.

    :param args: parsed arguments.
    """
    from llava_drive.features.store import FeatureStoreError
    from llava_drive.learning.checkpoint import CheckpointError
    from llava_drive.learning.dataset import DatasetError
    from llava_drive.learning.train import train
    try:
        train(args.features, args.out, train_config(args), progress=not args.no_progress)
    except (ValueError, DatasetError, FeatureStoreError, CheckpointError, OSError) as error:
        print(f'llava-drive train: error: {error}', file=sys.stderr)
        return 2
    return 0


def run_evaluate_offline(args) -> int:
    """
    Run ``llava-drive evaluate-offline``; return the exit code.

    :param args: parsed arguments.
    """
    from llava_drive.features.store import FeatureStoreError
    from llava_drive.learning.checkpoint import CheckpointError
    from llava_drive.learning.evaluate_offline import evaluate_offline, summary
    from llava_drive.learning.metrics import json_safe
    try:
        report = evaluate_offline(args.checkpoint, args.features, args.out)
    except (ValueError, CheckpointError, FeatureStoreError) as error:
        print(f'llava-drive evaluate-offline: error: {error}', file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(json_safe(report['metrics']), indent=2))
    else:
        print(summary(report))
        if args.out:
            print(f'metrics and plots in {args.out}')
    return 0
