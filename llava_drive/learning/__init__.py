"""
Action heads on LLaVA features: datasets, training, checkpoints and offline evaluation.

Nothing here imports ROS. Modules that need torch import it at module level, so import them
only where torch is wanted (the CLI imports them lazily).

Public API: :func:`~.heads.build_head` (+ ``HeadConfig``), :func:`~.dataset.build_windows`,
:func:`~.train.train` (+ :class:`~.config.TrainConfig`), :func:`~.checkpoint.save_checkpoint` /
``load_checkpoint``, :func:`~.evaluate_offline.evaluate_offline`,
:class:`~.waypoints.WaypointSpec`, ``ACTION_NAMES``; the ``train`` command in :mod:`.cli`.
"""

# Order of the action vector everywhere (feature store, heads, metrics, control messages).
ACTION_NAMES = ('steer', 'throttle', 'brake')
