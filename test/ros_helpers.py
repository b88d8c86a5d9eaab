"""Helpers for tests on a real rclpy graph."""
import threading
import time

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor


class RosGraph:
    """A private rclpy context with an executor spinning in a background thread."""

    def __init__(self):
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.executor = MultiThreadedExecutor(num_threads=3, context=self.context)
        self.nodes = []
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self):
        try:
            self.executor.spin()
        except ExternalShutdownException:
            pass

    def add(self, node):
        """Spin ``node`` in this graph and return it."""
        self.nodes.append(node)
        self.executor.add_node(node)
        return node

    def node(self, name):
        """Create a plain helper node in this graph."""
        return self.add(rclpy.create_node(name, context=self.context))

    def remove(self, node):
        """Stop spinning ``node`` and destroy it (runs its clean-up)."""
        self.executor.remove_node(node)
        self.nodes.remove(node)
        node.destroy_node()

    def close(self):
        """Destroy every node and shut the context down."""
        for node in list(self.nodes):
            self.remove(node)
        self.executor.shutdown()
        rclpy.try_shutdown(context=self.context)
        self._thread.join(timeout=5)


def wait_for(predicate, timeout=10.0, interval=0.02):
    """Poll ``predicate`` until true or ``timeout`` seconds pass; return its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()
