"""Training windows: never across episodes or gaps; validation split by whole bags/episodes."""
from learning_data import PERIOD_NS, synthetic_spec, write_synthetic_bag, write_synthetic_bags
from llava_drive.learning.dataset import (build_windows, DatasetError, load_feature_files,
                                          resolve_feature_paths, split_windows, window_indices)
import numpy as np
import pytest


def test_window_count_and_no_window_crosses_an_episode(tmp_path):
    path = tmp_path / 'run.safetensors'
    write_synthetic_bag(path, frames=60, episodes=3)  # three episodes of 20 frames
    windows = build_windows(load_feature_files([path]), window=4)
    assert len(windows) == 3 * (20 - 4 + 1)
    episode_of_frame = np.arange(60) * 3 // 60
    for frames in windows.windows:
        assert np.all(np.diff(frames) == 1)
        assert len(set(episode_of_frame[frames])) == 1
    np.testing.assert_array_equal(windows.episodes, episode_of_frame[windows.windows[:, -1]])
    np.testing.assert_array_equal(windows.targets(), windows.actions[windows.windows[:, -1]])


def test_windows_skip_gaps_in_the_stamps(tmp_path):
    path = tmp_path / 'gappy.safetensors'
    write_synthetic_bag(path, frames=30, episodes=1, drop=[10, 11, 12])
    windows = build_windows(load_feature_files([path]), window=3)
    steps = np.diff(windows.stamps[windows.windows], axis=1)
    assert np.all(steps == PERIOD_NS)
    # 10 frames before the gap (8 windows), 17 after it (15 windows).
    assert len(windows) == 8 + 15


def test_window_indices_treat_non_increasing_stamps_as_a_break():
    stamps = np.array([0, 1, 2, 2, 3, 4], dtype=np.int64) * PERIOD_NS
    indices = window_indices(stamps, np.zeros(6), window=2)
    assert indices.tolist() == [[0, 1], [1, 2], [3, 4], [4, 5]]


def test_split_by_bag_holds_out_whole_bags_and_is_seeded(tmp_path):
    write_synthetic_bags(tmp_path, 6, frames=40)
    windows = build_windows(load_feature_files(resolve_feature_paths([tmp_path])), 2)
    train, val = split_windows(windows, 'bag', val_fraction=0.34, seed=3)
    train_bags, val_bags = set(train.bags), set(val.bags)
    assert len(val_bags) == 2 and len(train_bags) == 4
    assert not train_bags & val_bags
    assert len(train) + len(val) == len(windows)
    again = split_windows(windows, 'bag', val_fraction=0.34, seed=3)[1]
    assert set(again.bags) == val_bags
    other_seeds = {frozenset(split_windows(windows, 'bag', 0.34, seed)[1].bags)
                   for seed in range(10)}
    assert len(other_seeds) > 1


def test_split_by_episode_holds_out_whole_episodes(tmp_path):
    write_synthetic_bag(tmp_path / 'only.safetensors', frames=100, episodes=5)
    windows = build_windows(load_feature_files([tmp_path / 'only.safetensors']), 1)
    train, val = split_windows(windows, 'auto', val_fraction=0.4, seed=0)  # one bag: episodes
    train_episodes, val_episodes = set(train.episodes), set(val.episodes)
    assert len(val_episodes) == 2 and not train_episodes & val_episodes
    with pytest.raises(DatasetError, match='only 1 bag'):
        split_windows(windows, 'bag')


def test_mixed_feature_specs_are_refused_naming_the_difference(tmp_path):
    write_synthetic_bag(tmp_path / 'a.safetensors')
    write_synthetic_bag(tmp_path / 'b.safetensors', spec=synthetic_spec(layer=5))
    with pytest.raises(DatasetError, match=r'layer: a\.safetensors 2, b\.safetensors 5'):
        load_feature_files(resolve_feature_paths([tmp_path]))


def test_resolve_feature_paths_expands_directories_and_reports_missing(tmp_path):
    paths = write_synthetic_bags(tmp_path, 2, frames=20)
    assert resolve_feature_paths([tmp_path, paths[0]]) == [p.resolve() for p in paths]
    with pytest.raises(DatasetError, match='nowhere'):
        resolve_feature_paths([tmp_path / 'nowhere'])
    (tmp_path / 'empty').mkdir()
    with pytest.raises(DatasetError, match='no .*feature files in directory'):
        resolve_feature_paths([tmp_path / 'empty'])
