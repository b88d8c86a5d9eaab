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
from dataclasses import asdict, dataclass, field
import json
import math
from pathlib import Path
import time

from llava_drive.features.choices import resolve_device
from llava_drive.learning import ACTION_NAMES
from llava_drive.learning.checkpoint import staged_directory, write_checkpoint_files
from llava_drive.learning.dataset import (build_windows, DEFAULT_MAX_GAP_FACTOR,
                                          load_feature_files, resolve_feature_paths,
                                          SPLIT_KEYS, split_windows)
from llava_drive.learning.evaluate_offline import predict_windows
from llava_drive.learning.heads import build_head, HEAD_TYPES, HeadConfig, OUTPUT_KINDS
from llava_drive.learning.metrics import (format_table, format_waypoint_table, output_metrics,
                                          prefixed)
from llava_drive.learning.waypoints import WaypointSpec
import matplotlib
import numpy as np
import torch
from tqdm import tqdm

matplotlib.use('Agg')
from matplotlib import pyplot  # noqa: E402, I100, I202 (after selecting the headless backend)


@dataclass
class TrainConfig:
    """
    How to train a head; stored as ``train_config.json`` in the checkpoint.

    :param head: head type (``mlp``, ``gru``, ``transformer``).
    :param window: K, consecutive frames per sample (1 for the original MLP).
    :param hidden_size: hidden width of the head.
    :param num_layers: GRU / transformer layers.
    :param num_heads: transformer attention heads.
    :param dropout: dropout inside the head.
    :param use_speed: feed the vehicle speed to the head as an extra input.
    :param use_command: feed the route command (one-hot) to the head as an extra input.
    :param use_target: feed the next target point (vehicle frame) to the head.
    :param output: ``'control'`` (steer, throttle, brake) or ``'waypoints'`` (K future
        positions from the recorded poses and a target speed, for the waypoint controller).
    :param num_waypoints: K of a waypoint head.
    :param waypoint_spacing_s: time between waypoints (s).
    :param speed_horizon_s: the target speed label is the recorded speed this far ahead (s).
    :param epochs: maximum number of epochs.
    :param batch_size: windows per optimizer step.
    :param lr: AdamW learning rate.
    :param weight_decay: AdamW weight decay.
    :param warmup_steps: the learning rate rises linearly to ``lr`` over this many optimizer
        steps (0 = off). Adam's first steps move every weight by about ``lr`` at once; with
        thousands of correlated feature dimensions that drives tanh/sigmoid into saturation,
        where the gradient vanishes and training stalls (seen with 2048-D image_grid features).
    :param seed: seed of the split, the initialization and the batch order.
    :param val_fraction: share of bags (or episodes) held out for validation.
    :param split_by: ``'bag'``, ``'episode'`` or ``'auto'`` (bag when >= 2 bags).
    :param patience: stop after this many epochs without a better (smoothed) validation
        loss (0 = never stop early); the best epoch's weights are kept either way.
    :param min_epochs: never stop before this epoch. Validation loss over a few held-out bags
        is noisy, and its minimum in the first epochs is often luck: stopping there kept heads
        that had not even fit their training data (held-out steer R^2 from -0.2 to 0.67 by
        seed on the same features).
    :param val_smoothing: early stopping and the choice of the best epoch follow an
        exponential moving average of the validation loss with this weight on the past
        (0 = the raw loss), so one lucky epoch is not taken for the best.
    :param loss_weights: weights of the steer, throttle and brake squared errors.
    :param scale_loss: divide each action's squared error by that action's variance in the
        training labels (floored at ``min_label_variance``), so an action with a small
        spread, typically steering, is not drowned by throttle and brake.
    :param min_label_variance: floor of the variance used by ``scale_loss`` (0.01: std 0.1,
        a tenth of a control's range), so a nearly constant action, such as a brake the
        expert hardly uses, cannot dominate the loss and with it the early stopping.
    :param device: torch device (``'cpu'``, ``'cuda'``, ``'cuda:1'``...).
    :param max_gap_factor: a stamp step above this many median steps breaks a window.
    """

    head: str = 'mlp'
    window: int = 1
    hidden_size: int = 512
    num_layers: int = 1
    num_heads: int = 4
    # Regularized by default: frames of one route are highly correlated and a head without
    # dropout and weight decay memorises routes (benchmarks/feature_modes.py measured this).
    dropout: float = 0.2
    use_speed: bool = False
    use_command: bool = False
    use_target: bool = False
    output: str = 'control'
    num_waypoints: int = WaypointSpec.num_waypoints
    waypoint_spacing_s: float = WaypointSpec.spacing_s
    speed_horizon_s: float = WaypointSpec.speed_horizon_s
    epochs: int = 100
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 100
    seed: int = 0
    val_fraction: float = 0.2
    split_by: str = 'auto'
    patience: int = 10
    min_epochs: int = 20
    val_smoothing: float = 0.5
    loss_weights: tuple = field(default=(1.0, 1.0, 1.0))
    scale_loss: bool = True
    min_label_variance: float = 1e-2
    device: str = 'cpu'
    max_gap_factor: float = DEFAULT_MAX_GAP_FACTOR

    def __post_init__(self):
        """Check every field; errors name the bad value."""
        if self.head not in HEAD_TYPES:
            raise ValueError(f'head must be one of {sorted(HEAD_TYPES)}, got {self.head!r}')
        if self.output not in OUTPUT_KINDS:
            raise ValueError(f'output must be one of {OUTPUT_KINDS}, got {self.output!r}')
        for name in ('window', 'hidden_size', 'num_layers', 'num_heads', 'epochs',
                     'batch_size'):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f'{name} must be a positive integer, got {value!r}')
        for name in ('patience', 'warmup_steps', 'min_epochs'):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f'{name} must be an integer >= 0, got {value!r}')
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ValueError(f'seed must be an integer, got {self.seed!r}')
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f'lr must be a positive number, got {self.lr!r}')
        if not (isinstance(self.weight_decay, (int, float)) and self.weight_decay >= 0):
            raise ValueError(f'weight_decay must be >= 0, got {self.weight_decay!r}')
        if not (isinstance(self.val_smoothing, (int, float))
                and 0.0 <= self.val_smoothing < 1.0):
            raise ValueError(f'val_smoothing must be in [0, 1), got {self.val_smoothing!r}')
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f'val_fraction must be in (0, 1), got {self.val_fraction!r}')
        if self.split_by not in SPLIT_KEYS:
            raise ValueError(f'split_by must be one of {SPLIT_KEYS}, got {self.split_by!r}')
        weights = tuple(float(w) for w in self.loss_weights)
        if len(weights) != len(ACTION_NAMES) or any(not w >= 0 for w in weights) \
                or sum(weights) <= 0:
            raise ValueError(f'loss_weights must be {len(ACTION_NAMES)} numbers >= 0 '
                             f'({", ".join(ACTION_NAMES)}), not all 0, got {self.loss_weights!r}')
        self.loss_weights = weights
        if not (isinstance(self.min_label_variance, (int, float))
                and self.min_label_variance > 0):
            raise ValueError(
                f'min_label_variance must be > 0, got {self.min_label_variance!r}')
        if not self.max_gap_factor > 1.0:
            raise ValueError(f'max_gap_factor must be > 1, got {self.max_gap_factor!r}')
        resolve_device(self.device)  # a ValueError naming the device: exit status 2
        # Architecture checks (e.g. num_heads dividing hidden_size) live in HeadConfig.
        self.head_config(feature_dim=1)

    def head_config(self, feature_dim: int) -> HeadConfig:
        """
        Return the head architecture for features of size ``feature_dim``.

        :param feature_dim: D of the training features.
        """
        return HeadConfig(kind=self.head, feature_dim=feature_dim, window=self.window,
                          use_speed=self.use_speed, hidden_size=self.hidden_size,
                          num_layers=self.num_layers, num_heads=self.num_heads,
                          dropout=self.dropout, output=self.output,
                          num_waypoints=self.num_waypoints,
                          waypoint_spacing_s=self.waypoint_spacing_s,
                          speed_horizon_s=self.speed_horizon_s, use_command=self.use_command,
                          use_target=self.use_target)

    def waypoint_spec(self):
        """Return the waypoint label definition, or None for control heads."""
        if self.output != 'waypoints':
            return None
        return WaypointSpec(self.num_waypoints, self.waypoint_spacing_s, self.speed_horizon_s)

    def to_dict(self) -> dict:
        """Return the configuration as a JSON-ready dict."""
        result = asdict(self)
        result['loss_weights'] = list(self.loss_weights)
        return result


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
