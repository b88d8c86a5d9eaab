"""Synthetic feature files for the learning tests: features are a linear map of the actions."""
from llava_drive.features.spec import FeatureSpec
from llava_drive.features.store import write_feature_file
import numpy as np

DIM = 16
PERIOD_NS = 50_000_000  # 20 Hz


def synthetic_spec(**changes) -> FeatureSpec:
    """Return a valid feature spec for D = 16 synthetic features, with optional changes."""
    fields = {'model_name': 'synthetic', 'model_hash': '0' * 64, 'mode': 'image_grid',
              'layer': 2, 'grid': 2, 'prompt': 'drive', 'preprocessing': 'pad',
              'image_size': 32, 'dtype': 'float32', 'feature_dim': DIM}
    fields.update(changes)
    return FeatureSpec(**fields)


def smooth_actions(rng, count) -> np.ndarray:
    """Return [count, 3] plausible controls: smooth steer, throttle, occasional braking."""
    time = np.arange(count) / 20.0
    phase, rate = rng.uniform(0, 2 * np.pi, 2), rng.uniform(0.2, 0.6, 2)
    steer = 0.6 * np.sin(rate[0] * time + phase[0])
    throttle = 0.5 + 0.4 * np.sin(rate[1] * time + phase[1])
    brake = (throttle < 0.25).astype(np.float64)
    return np.stack([steer, np.where(brake > 0, 0.0, throttle), brake], axis=1)


def write_synthetic_bag(path, frames=120, episodes=2, seed=0, noise=0.05, spec=None,
                        learnable=True, drop=()) -> None:
    """
    Write one synthetic feature file of ``episodes`` equal episodes.

    :param path: the ``*.safetensors`` file.
    :param frames: total frames before dropping.
    :param episodes: number of episodes (consecutive blocks of frames).
    :param seed: seed of the actions and the noise.
    :param noise: standard deviation of the feature noise.
    :param spec: feature spec (``synthetic_spec()`` by default).
    :param learnable: features = fixed linear map of actions + noise; else pure noise.
    :param drop: frame indices to leave out, making gaps in the stamps.
    """
    rng = np.random.default_rng(seed)
    actions = smooth_actions(rng, frames)
    # One projection shared by every bag, so the mapping generalises across bags.
    projection = np.random.default_rng(1234).normal(size=(3, DIM))
    if learnable:
        features = actions @ projection + noise * rng.normal(size=(frames, DIM))
    else:
        features = rng.normal(size=(frames, DIM))
    stamps = 1_000_000_000 + np.arange(frames, dtype=np.int64) * PERIOD_NS
    episode = np.arange(frames) * episodes // frames
    speed = 5.0 + rng.normal(size=frames)
    keep = np.setdiff1d(np.arange(frames), np.asarray(drop, dtype=np.int64))
    write_feature_file(path, features[keep], actions[keep], stamps[keep], speed[keep],
                       episode[keep], spec or synthetic_spec(),
                       {'source_bag': f'bags/{path.stem}'})


def write_synthetic_bags(directory, count, **kwargs) -> list:
    """
    Write ``count`` synthetic bags ``bag_0`` ... into ``directory``; return their paths.

    :param directory: destination directory.
    :param count: number of bags.
    :param kwargs: passed to :func:`write_synthetic_bag` (``seed`` is offset per bag).
    """
    seed = kwargs.pop('seed', 0)
    paths = []
    for index in range(count):
        path = directory / f'bag_{index}.safetensors'
        write_synthetic_bag(path, seed=seed + index, **kwargs)
        paths.append(path)
    return paths


def write_driving_bag(path, frames=400, seed=0, informative=True, command_switch_s=4.0,
                      noise=0.05) -> None:
    """
    Write a feature file of a car driving arcs, with poses, commands and targets.

    The route command alternates between LEFT and RIGHT every ``command_switch_s`` seconds
    (random order) and the car turns that way (curvature +-0.06 1/m) at a speed that varies
    between 3 and 7 m/s. ``informative`` features are a linear map of (curvature, speed)
    plus noise; otherwise they carry the speed only, so only the command tells the turn.

    :param path: the ``*.safetensors`` file.
    :param frames: frames at 20 Hz.
    :param seed: seed of the command order, speeds and noise.
    :param informative: whether the features show the curvature.
    :param command_switch_s: seconds between command changes.
    :param noise: standard deviation of the feature noise.
    """
    rng = np.random.default_rng(seed)
    dt = PERIOD_NS / 1e9
    time = np.arange(frames) * dt
    blocks = (time // command_switch_s).astype(int)
    order = rng.integers(0, 2, blocks.max() + 1)
    command = np.where(order[blocks] == 0, 1, 2)  # RoadOption LEFT 1, RIGHT 2
    curvature = np.where(command == 1, 0.06, -0.06)
    speed = 5.0 + 2.0 * np.sin(rng.uniform(0.3, 0.6) * time + rng.uniform(0, 6))
    yaw = np.concatenate([[rng.uniform(-3, 3)], np.cumsum(speed * curvature * dt)[:-1]])
    x = np.concatenate([[0.0], np.cumsum(speed * np.cos(yaw) * dt)[:-1]])
    y = np.concatenate([[0.0], np.cumsum(speed * np.sin(yaw) * dt)[:-1]])
    projection = np.random.default_rng(4321).normal(size=(2, DIM))
    signal = np.stack([curvature / 0.06 if informative else np.zeros(frames),
                       (speed - 5.0) / 2.0], axis=1)
    features = signal @ projection + noise * rng.normal(size=(frames, DIM))
    steer = -curvature * 5.0
    actions = np.stack([steer, np.full(frames, 0.4), np.zeros(frames)], axis=1)
    stamps = 1_000_000_000 + np.arange(frames, dtype=np.int64) * PERIOD_NS
    target = np.stack([np.full(frames, 20.0), 5.0 * np.sign(curvature)], axis=1)
    write_feature_file(path, features, actions, stamps, speed, np.zeros(frames), synthetic_spec(),
                       {'source_bag': f'bags/{path.stem}'}, command=command, target=target,
                       pose=np.stack([x, y, yaw], axis=1))
