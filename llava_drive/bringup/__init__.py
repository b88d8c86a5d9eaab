"""Process bring-up: node specs, ROS environment, the process stack, launch support."""
