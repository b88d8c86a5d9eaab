"""Per-action regression metrics (MAE, RMSE, R^2) in plain numpy."""
import math

from llava_drive.learning import ACTION_NAMES
import numpy as np


def r2_score(prediction, target) -> float:
    """
    Return the coefficient of determination of ``prediction`` against ``target``.

    :param prediction: predicted values, shape [N].
    :param target: recorded values, shape [N].
    :returns: ``1 - SS_res / SS_tot``; NaN when the target is constant (R^2 undefined).
    """
    prediction = np.asarray(prediction, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    total = float(np.sum((target - target.mean()) ** 2)) if target.size else 0.0
    if total <= 1e-12:
        return math.nan
    return 1.0 - float(np.sum((target - prediction) ** 2)) / total


def action_metrics(prediction, target, names=ACTION_NAMES) -> dict:
    """
    Return ``{'<action>_mae', '<action>_rmse', '<action>_r2'}`` for every action column.

    :param prediction: predicted actions, shape [N, A].
    :param target: recorded actions, shape [N, A].
    :param names: one name per column, (steer, throttle, brake) by default.
    :returns: a flat dict of floats; R^2 is NaN for a constant target column.
    """
    prediction = np.asarray(prediction, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if prediction.shape != target.shape or prediction.ndim != 2:
        raise ValueError(
            f'prediction {prediction.shape} and target {target.shape} must both be [N, A]')
    if prediction.shape[1] != len(names):
        raise ValueError(f'{prediction.shape[1]} action columns but names {tuple(names)}')
    if prediction.shape[0] == 0:
        raise ValueError('no samples to compute metrics on')
    result = {}
    for column, name in enumerate(names):
        error = prediction[:, column] - target[:, column]
        result[f'{name}_mae'] = float(np.mean(np.abs(error)))
        result[f'{name}_rmse'] = float(np.sqrt(np.mean(error ** 2)))
        result[f'{name}_r2'] = r2_score(prediction[:, column], target[:, column])
    return result


def prefixed(metrics: dict, prefix: str) -> dict:
    """
    Return ``metrics`` with every key prefixed, e.g. ``steer_mae`` -> ``val_steer_mae``.

    :param metrics: a flat metrics dict.
    :param prefix: the prefix without underscore (``'train'``, ``'val'``, ``'test'``).
    """
    return {f'{prefix}_{key}': value for key, value in metrics.items()}


def json_safe(metrics: dict) -> dict:
    """
    Return ``metrics`` with NaN and infinite floats replaced by None (strict JSON).

    :param metrics: a flat dict of numbers.
    """
    return {key: (None if isinstance(value, float) and not math.isfinite(value) else value)
            for key, value in metrics.items()}


def format_table(columns: dict, names=ACTION_NAMES) -> str:
    """
    Return a text table with one row per action and MAE / RMSE / R^2 per column.

    :param columns: ordered ``{column title: action_metrics(...) result}``, e.g. train, val.
    :param names: the actions to list.
    """
    def cell(value):
        return '     n/a' if value is None or not math.isfinite(value) else f'{value:8.4f}'

    titles = '  '.join(f'{title:^26}' for title in columns)
    stats = '  '.join(f'{"MAE":>8} {"RMSE":>8} {"R^2":>8}' for _ in columns)
    lines = [f'{"":10}{titles}', f'{"action":10}{stats}']
    for name in names:
        cells = '  '.join(' '.join(cell(metrics.get(f'{name}_{stat}'))
                                   for stat in ('mae', 'rmse', 'r2'))
                          for metrics in columns.values())
        lines.append(f'{name:10}{cells}')
    return '\n'.join(lines)
