"""
Bag format v1 (architecture: Bag format v1): write, read, recover, inspect, trim and review.

No ROS imports: bags are written and read with the ``mcap`` and ``rosbags`` libraries, so
everything here works in a plain virtualenv as well as in a sourced ROS 2 install.

Public API: :class:`~.writer.BagWriter` (+ ``BagWriterConfig``), :func:`~.reader.read_pairs`
and :func:`~.reader.count_pairs`, :func:`~.info.bag_info`, :func:`~.recover.recover_bag`,
:func:`~.trim.load_exclusions` / ``add_exclusions``, :func:`~.review.review_bag`,
:func:`~.route.read_plans`; the ``bag`` command in :mod:`.cli`.
"""
