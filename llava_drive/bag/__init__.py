"""
Bag format v1 (architecture: Bag format v1): write, read, recover, inspect and trim recordings.

No ROS imports: bags are written and read with the ``mcap`` and ``rosbags`` libraries, so
everything here works in a plain virtualenv as well as in a sourced ROS 2 install.
"""
