"""The driving policy without ROS: inference worker, safety gate, annotated image."""
