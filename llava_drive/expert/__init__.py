"""The expert driver (pure pursuit + PID) and its recovery noise, without ROS."""
