"""
Train an action head on feature files: seeded, early-stopped, logged, checkpointed.

``train(feature_paths, out_dir, config)`` writes into ``out_dir``:

- the checkpoint (``model.safetensors``, ``config.json``, ``train_config.json``) holding the
  weights of the epoch with the lowest validation loss,
- ``loss_curves.png`` and ``history.json`` (loss per epoch),
- ``logs/``: TensorBoard event files (``tensorboard --logdir out_dir/logs``).

All of it is written into a hidden staging directory beside ``out_dir``
(``.NAME.partial-PID``, where TensorBoard can follow a running training) and renamed onto
``out_dir`` when everything is written: a failed or interrupted training leaves no half
checkpoint (see :func:`~llava_drive.learning.checkpoint.staged_directory`).
"""
import json
import math
from pathlib import Path
import time

from llava_drive.learning.checkpoint import staged_directory, write_checkpoint_files
from llava_drive.learning.config import TrainConfig
from llava_drive.learning.dataset import (build_windows, load_feature_files,
                                          resolve_feature_paths, split_windows)
from llava_drive.learning.evaluate_offline import predict_windows
from llava_drive.learning.heads import build_head
from llava_drive.learning.metrics import (format_table, format_waypoint_table, output_metrics,
                                          prefixed)
import matplotlib
import numpy as np
import torch
from tqdm import tqdm

matplotlib.use('Agg')
from matplotlib import pyplot  # noqa: E402, I100, I202 (after selecting the headless backend)


def _normalization(train_windows):
    """Return feature mean/std and speed mean/std over the frames the training windows use."""
    frames = train_windows.frame_indices()
    features = train_windows.features[frames].astype(np.float64)
    speed = train_windows.speed[frames].astype(np.float64)
    return features.mean(0), features.std(0), float(speed.mean()), float(speed.std())


def action_loss_weights(config: TrainConfig, targets) -> np.ndarray:
    """
    Return the per-output weights of the squared errors, summing to 1.

    Waypoint heads learn labels in standard units, every column weighted alike.

    :param config: ``loss_weights``, ``scale_loss`` and ``min_label_variance`` are used.
    :param targets: [M, 3] training labels ([M, 2K + 1] for waypoint heads).
    """
    if config.output == 'waypoints':
        width = np.asarray(targets).shape[1]
        return np.full(width, 1.0 / width)
    weights = np.asarray(config.loss_weights, dtype=np.float64)
    if config.scale_loss:
        variance = np.asarray(targets, dtype=np.float64).var(0)
        weights = weights / np.maximum(variance, config.min_label_variance)
    return weights / weights.sum()


def _weighted_loss(predicted, target, weights):
    """Return the mean squared error per action, weighted (weights sum to 1)."""
    return (((predicted - target) ** 2).mean(0) * weights).sum()


def _tensors(windows, rows, device):
    """Return one batch as ``(inputs, labels)``: the head's input tensors and the labels."""
    features, speed, labels = windows.batch(rows)
    command, target = windows.route(rows)
    inputs = tuple(torch.from_numpy(np.ascontiguousarray(a)).to(device)
                   for a in (features, speed, command, target))
    return inputs, torch.from_numpy(labels).to(device)


def _batch_loss(head, inputs, labels, weights):
    """Return the weighted loss of one batch (waypoints compared in standard units)."""
    if head.output_kind == 'control':
        return _weighted_loss(head(*inputs), labels, weights)
    return _weighted_loss(head.raw_actions(*inputs), head.normalize_labels(labels), weights)


def _evaluate_loss(head, windows, weights, batch_size, device) -> float:
    """Return the weighted loss of ``head`` over all ``windows`` (eval mode, no gradients)."""
    head.eval()
    total = 0.0
    with torch.no_grad():
        for start in range(0, len(windows), batch_size):
            rows = np.arange(start, min(start + batch_size, len(windows)))
            inputs, labels = _tensors(windows, rows, device)
            total += float(_batch_loss(head, inputs, labels, weights)) * len(rows)
    return total / len(windows)


def plot_loss_curves(path, history: dict, best_epoch: int):
    """
    Save a PNG of the train and validation loss per epoch, marking the best epoch.

    :param path: the PNG file.
    :param history: ``{'epoch': [...], 'train_loss': [...], 'val_loss': [...]}``.
    :param best_epoch: the epoch whose weights were kept.
    """
    figure, axis = pyplot.subplots(figsize=(7, 4))
    axis.plot(history['epoch'], history['train_loss'], label='train')
    axis.plot(history['epoch'], history['val_loss'], label='validation')
    if history.get('val_loss_smoothed'):
        axis.plot(history['epoch'], history['val_loss_smoothed'], label='validation, smoothed')
    axis.axvline(best_epoch, color='grey', linestyle='--', label=f'best (epoch {best_epoch})')
    axis.set_xlabel('epoch')
    axis.set_ylabel('weighted MSE')
    axis.set_yscale('log')
    axis.grid(True, alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)


def train(feature_paths, out_dir, config: TrainConfig = None, progress=True,
          log=print) -> dict:
    """
    Train a head on feature files and write the checkpoint directory; return its metrics.

    :param feature_paths: feature files or directories; their feature specs must be equal.
    :param out_dir: the checkpoint directory (created).
    :param config: the training configuration (defaults when None).
    :param progress: show a tqdm progress bar over epochs.
    :param log: where the summary lines go (``print`` by default; None for silence).
    :returns: flat metrics: ``train_*`` / ``val_*`` MAE, RMSE and R^2 per action,
        ``best_epoch``, ``epochs_run``, ``stopped_early``, ``train_loss``, ``val_loss``,
        ``train_windows``, ``val_windows``, ``train_seconds``.
    :raises DatasetError: mixed feature specs, too few bags/episodes to split, no windows.
    """
    config = config or TrainConfig()
    log = log or (lambda *_: None)
    out_dir = Path(out_dir)
    started = time.monotonic()
    paths = resolve_feature_paths(feature_paths)
    files = load_feature_files(paths)
    spec = files[0].spec
    train_set, val_set = split_windows(
        build_windows(files, config.window, config.max_gap_factor, config.waypoint_spec()),
        config.split_by, config.val_fraction, config.seed)

    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    device = torch.device(config.device)
    head = build_head(config.head_config(spec.feature_dim))
    head.set_normalization(*_normalization(train_set))
    if config.output == 'waypoints':
        labels = train_set.targets().astype(np.float64)
        head.set_output_normalization(labels.mean(0), labels.std(0))
    head.to(device)
    weights = torch.tensor(action_loss_weights(config, train_set.targets()),
                           dtype=torch.float32, device=device)
    optimizer = torch.optim.AdamW(head.parameters(), lr=config.lr,
                                  weight_decay=config.weight_decay)
    warmup = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / config.warmup_steps)
        if config.warmup_steps else 1.0)

    with staged_directory(out_dir) as stage:  # the checkpoint appears whole or not at all
        from torch.utils.tensorboard import SummaryWriter  # slow import: only when training
        writer = SummaryWriter(log_dir=str(stage / 'logs'))
        history = {'epoch': [], 'train_loss': [], 'val_loss': [], 'val_loss_smoothed': []}
        best = {'loss': math.inf, 'smoothed': math.inf, 'epoch': 0, 'state': None}
        smoothed = None
        epochs = tqdm(range(1, config.epochs + 1), desc='training', unit='epoch',
                      disable=not progress, leave=False)
        for epoch in epochs:
            head.train()
            order = rng.permutation(len(train_set))
            total = 0.0
            for start in range(0, len(order), config.batch_size):
                rows = order[start:start + config.batch_size]
                inputs, labels = _tensors(train_set, rows, device)
                loss = _batch_loss(head, inputs, labels, weights)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                warmup.step()
                total += float(loss.detach()) * len(rows)
            train_loss = total / len(order)
            val_loss = _evaluate_loss(head, val_set, weights, config.batch_size, device)
            history['epoch'].append(epoch)
            history['train_loss'].append(train_loss)
            history['val_loss'].append(val_loss)
            smoothed = val_loss if smoothed is None else \
                config.val_smoothing * smoothed + (1.0 - config.val_smoothing) * val_loss
            history['val_loss_smoothed'].append(smoothed)
            writer.add_scalar('loss/train', train_loss, epoch)
            writer.add_scalar('loss/val', val_loss, epoch)
            writer.add_scalar('loss/val_smoothed', smoothed, epoch)
            epochs.set_postfix(train=f'{train_loss:.4g}', val=f'{val_loss:.4g}')
            if smoothed < best['smoothed']:
                best = {'loss': val_loss, 'smoothed': smoothed, 'epoch': epoch,
                        'state': {k: v.detach().clone() for k, v in head.state_dict().items()}}
            elif config.patience and epoch >= config.min_epochs \
                    and epoch - best['epoch'] >= config.patience:
                break
        epochs.close()
        if best['state'] is None:
            raise ValueError('training diverged: the validation loss was never finite '
                             '(try a lower --lr)')
        head.load_state_dict(best['state'])

        train_metrics = output_metrics(config.output, predict_windows(head, train_set),
                                       train_set.targets())
        val_metrics = output_metrics(config.output, predict_windows(head, val_set),
                                     val_set.targets())
        metrics = {**prefixed(train_metrics, 'train'), **prefixed(val_metrics, 'val')}
        metrics.update(
            train_loss=history['train_loss'][best['epoch'] - 1], val_loss=best['loss'],
            val_loss_smoothed=best['smoothed'],
            best_epoch=best['epoch'], epochs_run=len(history['epoch']),
            stopped_early=len(history['epoch']) < config.epochs,
            train_windows=len(train_set), val_windows=len(val_set),
            train_seconds=round(time.monotonic() - started, 2))
        for name, value in metrics.items():
            if name.startswith('val_') and isinstance(value, float) and math.isfinite(value):
                writer.add_scalar(f'best/{name}', value, best['epoch'])
        writer.close()

        split = {'split_by': config.split_by, 'train_bags': sorted(set(train_set.bags)),
                 'val_bags': sorted(set(val_set.bags)),
                 'val_episodes': sorted({f'{b}#{e}' for b, e in zip(val_set.bags,
                                                                    val_set.episodes)})}
        write_checkpoint_files(stage, head.cpu(), spec, metrics, dict(
            config.to_dict(), feature_files=[str(p) for p in paths], split=split))
        (stage / 'history.json').write_text(json.dumps(history, indent=2) + '\n')
        plot_loss_curves(stage / 'loss_curves.png', history, best['epoch'])

    log(f'{config.head} head on {len(paths)} feature file(s), {spec.mode} features '
        f'(D={spec.feature_dim}): {len(train_set)} train / {len(val_set)} validation windows, '
        f'validation bags {split["val_bags"]}')
    log(f'best epoch {best["epoch"]} of {len(history["epoch"])} '
        f'(validation loss {best["loss"]:.4g}); checkpoint in {out_dir}')
    table = format_table if config.output == 'control' else format_waypoint_table
    log(table({'train': train_metrics, 'validation': val_metrics}))
    return metrics
