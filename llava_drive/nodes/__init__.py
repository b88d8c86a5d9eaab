"""ROS 2 nodes: thin wiring over the pure modules of llava_drive."""
