"""
Action heads on LLaVA features: datasets, training, checkpoints and offline evaluation.

Nothing here imports ROS. Modules that need torch import it at module level, so import them
only where torch is wanted (the CLI imports them lazily).
"""

# Order of the action vector everywhere (feature store, heads, metrics, control messages).
ACTION_NAMES = ('steer', 'throttle', 'brake')
