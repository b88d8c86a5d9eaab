"""
Heads: small torch modules mapping LLaVA features to control or to waypoints.

Every head takes a window of the last K frames' features, shape [B, K, D] (a [B, D] input
is one frame), and optionally per frame the vehicle speed [B, K] (or [B]), the route command
[B, K] (RoadOption values, fed one-hot as conditional imitation learning does) and the next
target point [B, K, 2] (metres ahead and to the left; NaN = unknown, fed as 0). Inputs are
normalized inside the module with the training data's statistics, kept as buffers, so a
checkpoint is self-contained. The prediction is for the newest frame of the window.

Outputs (``output``):

- ``control``: (steer, throttle, brake) bounded to the CARLA ranges: steer = tanh(raw) in
  [-1, 1], throttle = sigmoid(raw) and brake = sigmoid(raw) in [0, 1];
- ``waypoints``: K future positions in the vehicle frame (forward, left, in m) and a target
  speed (m/s, >= 0), :mod:`llava_drive.learning.waypoints`; raw outputs are in units of the
  training labels' standard deviation, de-normalized inside the module. A controller
  (:mod:`llava_drive.policy.controller`) turns them into control.

Heads are built by name from a :class:`HeadConfig` (or its dict form):

- ``mlp``: Linear(K*D, hidden)-ReLU-Linear(hidden, 3); with K = 1, hidden = 512 and no
  dropout it is the original seed head.
- ``gru``: a GRU over the K frames, a linear layer on its last output.
- ``transformer``: a small transformer encoder over the K frames with a learned positional
  embedding, a linear layer on the newest frame's output.
"""
from dataclasses import asdict, dataclass, fields

from llava_drive.features.route_prompt import COMMAND_ORDER
from llava_drive.learning import ACTION_NAMES
from llava_drive.learning.waypoints import WaypointSpec
import numpy as np
import torch
from torch import nn

# Smallest standard deviation used for normalization: constant features stay finite.
MIN_STD = 1e-6
OUTPUT_KINDS = ('control', 'waypoints')
# Target points are fed in units of this distance, clipped: the planner looks 50 m ahead.
TARGET_SCALE_M = 50.0
TARGET_CLIP = 2.0


@dataclass
class HeadConfig:
    """
    Architecture of an action head; ``to_dict()`` is what checkpoints store.

    :param kind: registered head name (``mlp``, ``gru``, ``transformer``).
    :param feature_dim: feature size D per frame.
    :param window: number of consecutive frames K the head sees (newest last).
    :param use_speed: concatenate the normalized vehicle speed to every frame's features.
    :param hidden_size: hidden width (MLP hidden layer, GRU state, transformer model width).
    :param num_layers: GRU or transformer layers (ignored by ``mlp``).
    :param num_heads: attention heads of the transformer (must divide ``hidden_size``).
    :param dropout: dropout probability inside the head.
    :param output: ``'control'`` (steer, throttle, brake) or ``'waypoints'``.
    :param num_waypoints: K future positions of a waypoint head.
    :param waypoint_spacing_s: time between waypoints (s), as labelled.
    :param speed_horizon_s: the target speed label is the speed this far ahead (s).
    :param use_command: append the route command (one-hot) to every frame's input.
    :param use_target: append the next target point (vehicle frame) to every frame's input.
    """

    kind: str = 'mlp'
    feature_dim: int = 4096
    window: int = 1
    use_speed: bool = False
    hidden_size: int = 512
    num_layers: int = 1
    num_heads: int = 4
    dropout: float = 0.0
    output: str = 'control'
    num_waypoints: int = WaypointSpec.num_waypoints
    waypoint_spacing_s: float = WaypointSpec.spacing_s
    speed_horizon_s: float = WaypointSpec.speed_horizon_s
    use_command: bool = False
    use_target: bool = False

    def __post_init__(self):
        """Check every field; errors name the bad value."""
        if self.output not in OUTPUT_KINDS:
            raise ValueError(f'output must be one of {OUTPUT_KINDS}, got {self.output!r}')
        self.waypoint_spec()  # checks the waypoint fields
        for name in ('use_speed', 'use_command', 'use_target'):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f'{name} must be true or false, got {getattr(self, name)!r}')
        if self.kind not in HEAD_TYPES:
            raise ValueError(
                f'unknown head type {self.kind!r}; choose one of {sorted(HEAD_TYPES)}')
        for name in ('feature_dim', 'window', 'hidden_size', 'num_layers', 'num_heads'):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f'{name} must be a positive integer, got {value!r}')
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f'dropout must be in [0, 1), got {self.dropout!r}')
        if self.kind == 'transformer' and self.hidden_size % self.num_heads:
            raise ValueError(
                f'hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}')

    def to_dict(self) -> dict:
        """Return the configuration as a JSON-ready dict."""
        return asdict(self)

    def waypoint_spec(self) -> WaypointSpec:
        """Return how the waypoint labels of this head are defined."""
        return WaypointSpec(self.num_waypoints, self.waypoint_spacing_s, self.speed_horizon_s)

    @property
    def output_size(self) -> int:
        """Return the width of the output: 3 controls, or 2 per waypoint plus the speed."""
        if self.output == 'control':
            return len(ACTION_NAMES)
        return self.waypoint_spec().label_size

    def output_names(self) -> list:
        """Return the name of every output column."""
        if self.output == 'control':
            return list(ACTION_NAMES)
        return self.waypoint_spec().names()

    @classmethod
    def from_dict(cls, data: dict) -> 'HeadConfig':
        """
        Build a config from ``to_dict()`` output, refusing unknown keys.

        :param data: the dict form of a head configuration.
        """
        known = {field.name for field in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f'unknown head configuration keys {unknown}')
        return cls(**data)


def bound_actions(raw: torch.Tensor) -> torch.Tensor:
    """
    Map raw outputs [..., 3] to steer in [-1, 1] (tanh), throttle, brake in [0, 1] (sigmoid).

    :param raw: unbounded head outputs, last dimension (steer, throttle, brake).
    """
    return torch.cat([torch.tanh(raw[..., :1]), torch.sigmoid(raw[..., 1:])], dim=-1)


class ActionHead(nn.Module):
    """
    Base of all heads: input normalization, speed handling and bounded outputs.

    :param config: the head architecture.
    """

    def __init__(self, config: HeadConfig):
        """Create the normalization buffers (identity until :meth:`set_normalization`)."""
        super().__init__()
        self.config = config
        dim = config.feature_dim
        self.register_buffer('feature_mean', torch.zeros(dim))
        self.register_buffer('feature_std', torch.ones(dim))
        self.register_buffer('speed_mean', torch.zeros(1))
        self.register_buffer('speed_std', torch.ones(1))
        if config.output == 'waypoints':
            # Label statistics: outputs are predicted in standard units and de-normalized.
            self.register_buffer('output_mean', torch.zeros(config.output_size))
            self.register_buffer('output_std', torch.ones(config.output_size))
        self.register_buffer('command_order', torch.tensor([int(o) for o in COMMAND_ORDER]),
                             persistent=False)

    @property
    def window(self) -> int:
        """Return K, the number of frames the head expects (newest last)."""
        return self.config.window

    @property
    def uses_speed(self) -> bool:
        """Whether ``forward`` needs the vehicle speed."""
        return self.config.use_speed

    @property
    def input_dim(self) -> int:
        """Per-frame input size after the optional speed, command and target are appended."""
        config = self.config
        return (config.feature_dim + (1 if config.use_speed else 0)
                + (len(COMMAND_ORDER) if config.use_command else 0)
                + (2 if config.use_target else 0))

    @property
    def output_kind(self) -> str:
        """Return ``'control'`` or ``'waypoints'``."""
        return self.config.output

    def set_output_normalization(self, mean, std):
        """
        Store the waypoint labels' mean and standard deviation (waypoint heads only).

        :param mean: [2K + 1] label means.
        :param std: [2K + 1] label standard deviations (floored at 1e-6).
        """
        if self.config.output != 'waypoints':
            raise ValueError('only waypoint heads normalize their outputs')
        mean = torch.as_tensor(np.asarray(mean, dtype=np.float32)).reshape(-1)
        std = torch.as_tensor(np.asarray(std, dtype=np.float32)).reshape(-1)
        if mean.numel() != self.config.output_size or std.numel() != self.config.output_size:
            raise ValueError(f'output statistics of size {mean.numel()}/{std.numel()} do not '
                             f'match the {self.config.output_size} outputs')
        with torch.no_grad():
            self.output_mean.copy_(mean)
            self.output_std.copy_(std.clamp_min(MIN_STD))

    def normalize_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """
        Return labels in the units of :meth:`raw_actions` (waypoint heads; identity else).

        :param labels: [B, outputs] labels.
        """
        if self.config.output != 'waypoints':
            return labels
        return (labels - self.output_mean) / self.output_std

    def bound(self, raw: torch.Tensor) -> torch.Tensor:
        """
        Map raw outputs to predictions: bounded controls, or de-normalized waypoints.

        :param raw: [B, outputs] raw outputs.
        """
        if self.config.output == 'control':
            return bound_actions(raw)
        values = raw * self.output_std + self.output_mean
        return torch.cat([values[..., :-1], values[..., -1:].clamp_min(0.0)], dim=-1)

    def set_normalization(self, feature_mean, feature_std, speed_mean=0.0, speed_std=1.0):
        """
        Store the training data statistics used to normalize inputs.

        :param feature_mean: per-dimension mean, shape [D].
        :param feature_std: per-dimension standard deviation, shape [D] (floored at 1e-6).
        :param speed_mean: mean vehicle speed (m/s).
        :param speed_std: standard deviation of the speed (floored at 1e-6).
        """
        mean = torch.as_tensor(np.asarray(feature_mean, dtype=np.float32)).reshape(-1)
        std = torch.as_tensor(np.asarray(feature_std, dtype=np.float32)).reshape(-1)
        if mean.numel() != self.config.feature_dim or std.numel() != self.config.feature_dim:
            raise ValueError(f'normalization statistics of size {mean.numel()}/{std.numel()} '
                             f'do not match feature_dim {self.config.feature_dim}')
        with torch.no_grad():
            self.feature_mean.copy_(mean)
            self.feature_std.copy_(std.clamp_min(MIN_STD))
            self.speed_mean.fill_(float(speed_mean))
            self.speed_std.fill_(max(float(speed_std), MIN_STD))

    def normalization(self) -> dict:
        """Return the normalization statistics as plain lists and floats (for config.json)."""
        result = {
            'feature_mean': self.feature_mean.tolist(),
            'feature_std': self.feature_std.tolist(),
            'speed_mean': float(self.speed_mean.item()),
            'speed_std': float(self.speed_std.item()),
        }
        if self.config.output == 'waypoints':
            result.update(output_mean=self.output_mean.tolist(),
                          output_std=self.output_std.tolist())
        return result

    def forward(self, features: torch.Tensor, speed: torch.Tensor = None,
                command: torch.Tensor = None, target: torch.Tensor = None) -> torch.Tensor:
        """
        Predict the outputs for the newest frame of each window.

        :param features: [B, K, D] (or [B, D] when K = 1) raw features, newest frame last.
        :param speed: [B, K] or [B] speed in m/s; required when the head uses speed.
        :param command: [B, K] or [B] RoadOption values; required when it uses the command.
        :param target: [B, K, 2] or [B, 2] target points (m); required when it uses them.
        :returns: [B, 3] actions within their control ranges, or [B, 2K + 1] waypoints
            (forward, left per waypoint) and target speed.
        """
        return self.bound(self.raw_actions(features, speed, command, target))

    @torch.no_grad()
    def predict(self, features, speed=None, command=None, target=None) -> np.ndarray:
        """
        Predict for numpy inputs without gradients (the policy node's call).

        :param features: a batch [B, K, D], one window [K, D], or one frame [D] when K = 1.
        :param speed: m/s; [B, K] or [B] for a batch, [K] or a float for one window/frame.
        :param command: RoadOption values shaped like ``speed``.
        :param target: target points, ``speed``'s shape plus a last axis of 2.
        :returns: [B, outputs] for a batch, [outputs] otherwise, float32.
        """
        features = np.asarray(features, dtype=np.float32)
        single = features.ndim < 3
        features = features.reshape((1, -1, features.shape[-1])) if single else features
        device = self.feature_mean.device

        def tensor(value, dtype, tail=()):
            if value is None:
                return None
            array = np.asarray(value, dtype=dtype)
            array = array.reshape((1, -1) + tail) if single else array
            return torch.from_numpy(array).to(device)

        result = self(torch.from_numpy(features).to(device), tensor(speed, np.float32),
                      tensor(command, np.int64), tensor(target, np.float32, (2,)))
        result = result.cpu().numpy()
        return result[0] if single else result

    def raw_actions(self, features: torch.Tensor, speed: torch.Tensor = None,
                    command: torch.Tensor = None, target: torch.Tensor = None) -> torch.Tensor:
        """
        Return the raw outputs [B, outputs] (before bounding or de-normalization).

        :param features: as for :meth:`forward`.
        :param speed: as for :meth:`forward`.
        :param command: as for :meth:`forward`.
        :param target: as for :meth:`forward`.
        """
        return self.encode(self._inputs(features, speed, command, target))

    def encode(self, inputs: torch.Tensor) -> torch.Tensor:
        """
        Map normalized inputs [B, K, input_dim] to raw outputs [B, outputs].

        :param inputs: normalized features (and speed) per frame.
        """
        raise NotImplementedError

    def _per_frame(self, name, value, batch_shape, tail=()):
        """Check an extra input and broadcast a per-window value over the frames."""
        if value is None:
            raise ValueError(f'this head was trained with {name} input: pass {name}')
        if value.dim() == 1 + len(tail) and tuple(value.shape[1:]) == tail:
            value = value.unsqueeze(1).expand(-1, self.window, *tail)
        if tuple(value.shape) != tuple(batch_shape) + tail:
            raise ValueError(f'expected {name} {list(batch_shape) + list(tail)}, '
                             f'got {list(value.shape)}')
        return value

    def _inputs(self, features, speed=None, command=None, target=None):
        if features.dim() == 2:
            features = features.unsqueeze(1)
        if features.dim() != 3 or features.shape[1:] != (self.window, self.config.feature_dim):
            raise ValueError(f'expected features [B, {self.window}, {self.config.feature_dim}]'
                             f', got {list(features.shape)}')
        inputs = [(features.float() - self.feature_mean) / self.feature_std]
        shape = features.shape[:2]
        if self.uses_speed:
            speed = self._per_frame('speed', speed, shape).float()
            inputs.append(((speed - self.speed_mean) / self.speed_std).unsqueeze(-1))
        if self.config.use_command:
            command = self._per_frame('command', command, shape).long()
            one_hot = command.unsqueeze(-1) == self.command_order
            if not one_hot.any(-1).all():
                raise ValueError('command holds values that are no RoadOption')
            inputs.append(one_hot.float())
        if self.config.use_target:
            target = self._per_frame('target', target, shape, (2,)).float()
            target = torch.nan_to_num(target, nan=0.0) / TARGET_SCALE_M
            inputs.append(target.clamp(-TARGET_CLIP, TARGET_CLIP))
        return torch.cat(inputs, dim=-1) if len(inputs) > 1 else inputs[0]


class MLPHead(ActionHead):
    """
    The seed head: Linear(K*D, hidden)-ReLU(-Dropout)-Linear(hidden, 3).

    :param config: the head architecture.
    """

    def __init__(self, config: HeadConfig):
        """Build the two linear layers."""
        super().__init__(config)
        self.layers = nn.Sequential(
            nn.Linear(config.window * self.input_dim, config.hidden_size),
            nn.ReLU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.hidden_size, config.output_size),
        )

    def encode(self, inputs: torch.Tensor) -> torch.Tensor:
        """
        Flatten the window and apply the MLP.

        :param inputs: normalized inputs [B, K, input_dim].
        """
        return self.layers(inputs.flatten(1))


class GRUHead(ActionHead):
    """
    A GRU over the K frames; a linear layer on the newest frame's state.

    :param config: the head architecture.
    """

    def __init__(self, config: HeadConfig):
        """Build the GRU and the output layer."""
        super().__init__(config)
        self.gru = nn.GRU(
            self.input_dim, config.hidden_size, num_layers=config.num_layers,
            batch_first=True, dropout=config.dropout if config.num_layers > 1 else 0.0)
        self.dropout = nn.Dropout(config.dropout)
        self.output = nn.Linear(config.hidden_size, config.output_size)

    def encode(self, inputs: torch.Tensor) -> torch.Tensor:
        """
        Run the GRU over the window and read out the last step.

        :param inputs: normalized inputs [B, K, input_dim].
        """
        states, _ = self.gru(inputs)
        return self.output(self.dropout(states[:, -1]))


class TransformerHead(ActionHead):
    """
    A small transformer encoder over the K frames with a learned positional embedding.

    :param config: the head architecture.
    """

    def __init__(self, config: HeadConfig):
        """Build the input projection, positional embedding, encoder and output layer."""
        super().__init__(config)
        width = config.hidden_size
        self.project = nn.Linear(self.input_dim, width)
        self.position = nn.Parameter(torch.zeros(config.window, width))
        nn.init.normal_(self.position, std=0.02)
        layer = nn.TransformerEncoderLayer(
            width, config.num_heads, dim_feedforward=2 * width, dropout=config.dropout,
            batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(
            layer, config.num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.output = nn.Linear(width, config.output_size)

    def encode(self, inputs: torch.Tensor) -> torch.Tensor:
        """
        Encode the window and read out the newest frame.

        :param inputs: normalized inputs [B, K, input_dim].
        """
        tokens = self.encoder(self.project(inputs) + self.position)
        return self.output(self.norm(tokens[:, -1]))


# Registry of head types by name (the ``kind`` field of HeadConfig).
HEAD_TYPES = {
    'mlp': MLPHead,
    'gru': GRUHead,
    'transformer': TransformerHead,
}


def build_head(config) -> ActionHead:
    """
    Build an (untrained, identity-normalized) head from a HeadConfig or its dict form.

    :param config: a :class:`HeadConfig` or a dict accepted by ``HeadConfig.from_dict``.
    """
    if isinstance(config, dict):
        config = HeadConfig.from_dict(config)
    return HEAD_TYPES[config.kind](config)
