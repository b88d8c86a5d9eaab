"""
Action heads: small torch modules mapping LLaVA features to (steer, throttle, brake).

Every head takes a window of the last K frames' features, shape [B, K, D] (a [B, D] input
is one frame), and optionally the vehicle speed per frame, shape [B, K] (or [B]). Inputs
are normalized inside the module with the training data's mean and standard deviation,
kept as buffers, so a checkpoint is self-contained. Outputs are bounded to the CARLA
control ranges: steer = tanh(raw) in [-1, 1], throttle = sigmoid(raw) and
brake = sigmoid(raw) in [0, 1]. The prediction is for the newest frame of the window.

Heads are built by name from a :class:`HeadConfig` (or its dict form):

- ``mlp``: Linear(K*D, hidden)-ReLU-Linear(hidden, 3); with K = 1, hidden = 512 and no
  dropout it is the original seed head.
- ``gru``: a GRU over the K frames, a linear layer on its last output.
- ``transformer``: a small transformer encoder over the K frames with a learned positional
  embedding, a linear layer on the newest frame's output.
"""
from dataclasses import asdict, dataclass, fields

from llava_drive.learning import ACTION_NAMES
import numpy as np
import torch
from torch import nn

# Smallest standard deviation used for normalization: constant features stay finite.
MIN_STD = 1e-6


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
    """

    kind: str = 'mlp'
    feature_dim: int = 4096
    window: int = 1
    use_speed: bool = False
    hidden_size: int = 512
    num_layers: int = 1
    num_heads: int = 4
    dropout: float = 0.0

    def __post_init__(self):
        """Check every field; errors name the bad value."""
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
        """Per-frame input size after the optional speed is appended."""
        return self.config.feature_dim + (1 if self.config.use_speed else 0)

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
        return {
            'feature_mean': self.feature_mean.tolist(),
            'feature_std': self.feature_std.tolist(),
            'speed_mean': float(self.speed_mean.item()),
            'speed_std': float(self.speed_std.item()),
        }

    def forward(self, features: torch.Tensor, speed: torch.Tensor = None) -> torch.Tensor:
        """
        Predict bounded (steer, throttle, brake) for the newest frame of each window.

        :param features: [B, K, D] (or [B, D] when K = 1) raw features, newest frame last.
        :param speed: [B, K] or [B] speed in m/s; required when the head uses speed.
        :returns: [B, 3] actions within their control ranges.
        """
        return bound_actions(self.raw_actions(features, speed))

    @torch.no_grad()
    def predict(self, features, speed=None) -> np.ndarray:
        """
        Predict actions for numpy inputs without gradients (the policy node's call).

        :param features: a batch [B, K, D], one window [K, D], or one frame [D] when K = 1.
        :param speed: m/s; [B, K] or [B] for a batch, [K] or a float for one window/frame.
        :returns: [B, 3] for a batch, [3] otherwise; bounded actions as float32.
        """
        features = np.asarray(features, dtype=np.float32)
        single = features.ndim < 3
        features = features.reshape((1, -1, features.shape[-1])) if single else features
        device = self.feature_mean.device
        speed_tensor = None
        if speed is not None:
            speed = np.asarray(speed, dtype=np.float32)
            speed = speed.reshape(1, -1) if single else speed
            speed_tensor = torch.from_numpy(speed).to(device)
        result = self(torch.from_numpy(features).to(device), speed_tensor).cpu().numpy()
        return result[0] if single else result

    def raw_actions(self, features: torch.Tensor, speed: torch.Tensor = None) -> torch.Tensor:
        """
        Return the unbounded outputs [B, 3] (before tanh / sigmoid).

        :param features: as for :meth:`forward`.
        :param speed: as for :meth:`forward`.
        """
        return self.encode(self._inputs(features, speed))

    def encode(self, inputs: torch.Tensor) -> torch.Tensor:
        """
        Map normalized inputs [B, K, input_dim] to raw outputs [B, 3].

        :param inputs: normalized features (and speed) per frame.
        """
        raise NotImplementedError

    def _inputs(self, features, speed):
        if features.dim() == 2:
            features = features.unsqueeze(1)
        if features.dim() != 3 or features.shape[1:] != (self.window, self.config.feature_dim):
            raise ValueError(f'expected features [B, {self.window}, {self.config.feature_dim}]'
                             f', got {list(features.shape)}')
        inputs = (features.float() - self.feature_mean) / self.feature_std
        if not self.uses_speed:
            return inputs
        if speed is None:
            raise ValueError('this head was trained with speed input: pass speed')
        speed = speed.float()
        if speed.dim() == 1:
            speed = speed.unsqueeze(1).expand(-1, self.window)
        if speed.shape != inputs.shape[:2]:
            raise ValueError(f'expected speed [B, {self.window}] or [B], '
                             f'got {list(speed.shape)}')
        speed = (speed - self.speed_mean) / self.speed_std
        return torch.cat([inputs, speed.unsqueeze(-1)], dim=-1)


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
            nn.Linear(config.hidden_size, len(ACTION_NAMES)),
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
        self.output = nn.Linear(config.hidden_size, len(ACTION_NAMES))

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
        self.output = nn.Linear(width, len(ACTION_NAMES))

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
