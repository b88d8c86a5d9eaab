"""
The named town benchmarks: route seeds of the development and the held-out set.

Each seed is one route in its own town (the seed generates both), 150-400 m long with 1-3
junctions and one scenario (``seed % 4`` picks it: lead vehicle braking, crossing traffic, red
light, stopped vehicle). Held-out routes are never recorded for training.
"""
from typing import Dict, Tuple

TOWN_BENCHMARKS: Dict[str, Tuple[int, ...]] = {
    'town-dev': tuple(range(9001, 9011)),
    'town-heldout': tuple(range(9101, 9111)),
}


def benchmark_seeds(name: str) -> Tuple[int, ...]:
    """
    Return the route seeds of a benchmark set.

    :param name: ``'town-dev'`` or ``'town-heldout'``
    :raises ValueError: for an unknown name
    """
    if name not in TOWN_BENCHMARKS:
        raise ValueError(f'unknown benchmark {name!r}; choose one of {sorted(TOWN_BENCHMARKS)}')
    return TOWN_BENCHMARKS[name]
