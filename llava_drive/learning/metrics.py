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


def waypoint_metrics(prediction, target) -> dict:
    """
    Return displacement and speed errors of waypoint predictions.

    ``ade`` is the mean distance between predicted and recorded waypoints (m), ``fde`` the
    same for the last waypoint, ``speed_mae`` the target speed's mean absolute error (m/s),
    ``lateral_r2`` the R^2 of the last waypoint's lateral offset (the steering content,
    comparable to a control head's steer R^2) and ``speed_r2`` that of the target speed.

    :param prediction: [N, 2K + 1] (forward, left per waypoint, then target speed).
    :param target: [N, 2K + 1] labels.
    """
    prediction = np.asarray(prediction, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if prediction.shape != target.shape or prediction.ndim != 2 or prediction.shape[1] % 2 != 1 \
            or prediction.shape[1] < 3:
        raise ValueError(f'prediction {prediction.shape} and target {target.shape} must both '
                         f'be [N, 2K + 1]')
    if prediction.shape[0] == 0:
        raise ValueError('no samples to compute metrics on')
    points = prediction[:, :-1].reshape(len(prediction), -1, 2)
    recorded = target[:, :-1].reshape(len(target), -1, 2)
    distance = np.linalg.norm(points - recorded, axis=-1)
    return {'ade': float(distance.mean()), 'fde': float(distance[:, -1].mean()),
            'speed_mae': float(np.mean(np.abs(prediction[:, -1] - target[:, -1]))),
            'lateral_r2': r2_score(points[:, -1, 1], recorded[:, -1, 1]),
            'speed_r2': r2_score(prediction[:, -1], target[:, -1])}


def output_metrics(kind: str, prediction, target) -> dict:
    """
    Return :func:`action_metrics` for control outputs, :func:`waypoint_metrics` otherwise.

    :param kind: ``'control'`` or ``'waypoints'``.
    :param prediction: predictions [N, outputs].
    :param target: labels [N, outputs].
    """
    if kind == 'control':
        return action_metrics(prediction, target)
    return waypoint_metrics(prediction, target)


def format_waypoint_table(columns: dict) -> str:
    """
    Return a text table of :func:`waypoint_metrics` results, one column per set.

    :param columns: ordered ``{column title: waypoint_metrics(...) result}``.
    """
    names = ('ade', 'fde', 'lateral_r2', 'speed_mae', 'speed_r2')
    lines = [f'{"metric":12}' + ''.join(f'{title:>14}' for title in columns)]
    for name in names:
        cells = ''.join(f'{value:14.4f}' if value is not None and math.isfinite(value)
                        else f'{"n/a":>14}' for value in (m.get(name) for m in columns.values()))
        lines.append(f'{name:12}{cells}')
    return '\n'.join(lines)
