"""CARLA: preparing a running CARLA server (town, step, weather, traffic) and its command."""
