"""
How to train a head (:class:`TrainConfig`), apart from the training itself.

Importable without torch, so ``llava-drive train`` reads its option defaults from here: the
head classes (torch) load only when a configuration is checked or built into a head.
"""
from dataclasses import asdict, dataclass, field
import math

from llava_drive.features.choices import resolve_device
from llava_drive.learning import ACTION_NAMES
from llava_drive.learning.dataset import DEFAULT_MAX_GAP_FACTOR, SPLIT_KEYS
from llava_drive.learning.waypoints import WaypointSpec


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
        from llava_drive.learning.heads import HEAD_TYPES, OUTPUT_KINDS
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

    def head_config(self, feature_dim: int):
        """
        Return the head architecture for features of size ``feature_dim``.

        :param feature_dim: D of the training features.
        """
        from llava_drive.learning.heads import HeadConfig
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
