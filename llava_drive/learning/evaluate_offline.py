"""
Offline evaluation: per-action metrics of a checkpoint on held-out feature files, and plots.

Offline error is a sanity check, not a quality gate: only closed-loop driving tells whether
a head drives (architecture: Evaluation and scoring).
"""
import json
from pathlib import Path

from llava_drive.learning import ACTION_NAMES
from llava_drive.learning.checkpoint import check_feature_spec, load_checkpoint
from llava_drive.learning.dataset import (build_windows, load_feature_files,
                                          resolve_feature_paths, WindowSet)
from llava_drive.learning.metrics import (format_table, format_waypoint_table, json_safe,
                                          output_metrics)
import matplotlib
import numpy as np
import torch

matplotlib.use('Agg')
from matplotlib import pyplot  # noqa: E402, I100, I202 (after selecting the headless backend)

PLOT_SUFFIX = '_controls.png'


def predict_windows(head, windows: WindowSet, batch_size=512) -> np.ndarray:
    """
    Return the head's predictions for every window, [M, outputs] float32.

    :param head: an ``ActionHead``.
    :param windows: the windows to predict.
    :param batch_size: windows per forward pass.
    """
    was_training = head.training
    head.eval()
    device = head.feature_mean.device
    outputs = []
    with torch.no_grad():
        for start in range(0, len(windows), batch_size):
            rows = np.arange(start, min(start + batch_size, len(windows)))
            features, speed, _ = windows.batch(rows)
            command, target = windows.route(rows)
            inputs = (torch.from_numpy(np.ascontiguousarray(a)).to(device)
                      for a in (features, speed, command, target))
            outputs.append(head(*inputs).cpu().numpy())
    head.train(was_training)
    return np.concatenate(outputs) if outputs else \
        np.zeros((0, head.config.output_size), np.float32)


def plot_controls(path, stamps, recorded, predicted, title=''):
    """
    Save a PNG of predicted against recorded controls over time, one subplot per action.

    :param path: the PNG file.
    :param stamps: [M] int64 stamps in nanoseconds of the predicted frames.
    :param recorded: [M, 3] recorded actions.
    :param predicted: [M, 3] predicted actions.
    :param title: figure title (e.g. the bag name and metrics).
    """
    seconds = (np.asarray(stamps, dtype=np.int64) - int(np.min(stamps))) / 1e9
    figure, axes = pyplot.subplots(len(ACTION_NAMES), 1, sharex=True,
                                   figsize=(10, 2.2 * len(ACTION_NAMES)))
    for column, (axis, name) in enumerate(zip(axes, ACTION_NAMES)):
        axis.plot(seconds, recorded[:, column], label='recorded', linewidth=1.0)
        axis.plot(seconds, predicted[:, column], label='predicted', linewidth=1.0)
        axis.set_ylabel(name)
        axis.set_ylim(-1.05 if name == 'steer' else -0.05, 1.05)
        axis.grid(True, alpha=0.3)
    axes[0].legend(loc='upper right')
    axes[-1].set_xlabel('time [s]')
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)


def evaluate_offline(checkpoint_dir, feature_paths, out_dir=None, batch_size=512) -> dict:
    """
    Evaluate a checkpoint on feature files; optionally write metrics.json and plots.

    Only frames with a full window of K earlier frames in their episode are scored (and, for
    a waypoint head, a waypoint label). Control plots are drawn for control heads only.

    :param checkpoint_dir: the checkpoint directory.
    :param feature_paths: feature files or directories (held out from training).
    :param out_dir: where to write ``metrics.json`` and one ``<bag>_controls.png`` per bag;
        nothing is written when None.
    :param batch_size: windows per forward pass.
    :returns: ``{'metrics': {...}, 'per_bag': {bag: {...}}, 'windows': M, 'plots': [...]}``.
    :raises FeatureSpecMismatch: when the features differ from the checkpoint's training data.
    """
    head, config = load_checkpoint(checkpoint_dir)
    files = load_feature_files(resolve_feature_paths(feature_paths))
    check_feature_spec(config, files[0].spec, other='feature files')
    kind = head.output_kind
    windows = build_windows(files, head.window, waypoints=head.config.waypoint_spec()
                            if kind == 'waypoints' else None)
    predicted = predict_windows(head, windows, batch_size)
    recorded = windows.targets()
    report = {'checkpoint': str(checkpoint_dir), 'windows': len(windows), 'output': kind,
              'metrics': output_metrics(kind, predicted, recorded), 'per_bag': {},
              'plots': []}
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
    for bag in sorted(set(windows.bags)):
        rows = windows.bags == bag
        metrics = output_metrics(kind, predicted[rows], recorded[rows])
        report['per_bag'][bag] = metrics
        if out_dir is not None and kind == 'control':
            path = out_dir / f'{bag}{PLOT_SUFFIX}'
            r2 = metrics['steer_r2']
            plot_controls(path, windows.stamps[windows.windows[rows, -1]], recorded[rows],
                          predicted[rows], title=f'{bag}: steer MAE {metrics["steer_mae"]:.3f}'
                          + (f', R^2 {r2:.3f}' if np.isfinite(r2) else ''))
            report['plots'].append(str(path))
    if out_dir is not None:
        document = dict(report, metrics=json_safe(report['metrics']),
                        per_bag={bag: json_safe(m) for bag, m in report['per_bag'].items()})
        (out_dir / 'metrics.json').write_text(json.dumps(document, indent=2) + '\n')
    return report


def summary(report: dict) -> str:
    """
    Return a text table of an :func:`evaluate_offline` report, then one line per bag.

    :param report: the report.
    """
    lines = [f'{report["windows"]} windows, {len(report["per_bag"])} bag(s)']
    if report.get('output') == 'waypoints':
        lines.append(format_waypoint_table({'all bags': report['metrics'], **report['per_bag']}))
        return '\n'.join(lines)
    lines.append(format_table({'all bags': report['metrics']}))
    if len(report['per_bag']) > 1:
        lines.append('per bag:')
        for bag, metrics in report['per_bag'].items():
            cells = ', '.join(
                f'{name} MAE {metrics[f"{name}_mae"]:.4f}' for name in ACTION_NAMES)
            lines.append(f'  {bag}: {cells}, steer R^2 {_number(metrics["steer_r2"])}')
    return '\n'.join(lines)


def _number(value) -> str:
    """Format a metric that may be NaN (R^2 of a constant signal)."""
    return f'{value:.4f}' if np.isfinite(value) else 'n/a'
