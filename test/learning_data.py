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
