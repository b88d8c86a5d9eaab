"""Helpers for tests on a real rclpy graph."""
import threading
import time

import rclpy
from rclpy.executors import (ExternalShutdownException, MultiThreadedExecutor,
                             SingleThreadedExecutor)


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

    def close(self):
        """Stop the executor, then destroy every node and shut the context down."""
        # Executor first: destroying a node while another executor thread runs its timer makes
        # that callback use a destroyed handle (InvalidHandle); shutdown waits for callbacks.
        self.executor.shutdown(timeout_sec=30)
        self._thread.join(timeout=30)
        for node in self.nodes:
            node.destroy_node()
        self.nodes.clear()
        rclpy.try_shutdown(context=self.context)


class Spinners:
    """
    Spin nodes each in its own single-threaded executor, as ``rclpy.spin`` does in a process.

    :class:`RosGraph`'s multi-threaded executor busy-loops, holding the GIL, while a ready
    entity's callback group is busy (e.g. during a simulator render), which starves a node's
    own threads (the policy's inference): nodes under test must not share it.

    :param context: the rclpy context of the nodes
    """

    def __init__(self, context):
        self.context = context
        self.running = {}

    def start(self, node):
        """Spin ``node`` in a thread of its own until :meth:`stop`; return it."""
        executor = SingleThreadedExecutor(context=self.context)
        executor.add_node(node)
        thread = threading.Thread(target=executor.spin, daemon=True)
        thread.start()
        self.running[node] = (executor, thread)
        return node

    def node(self, name):
        """Create and spin a plain helper node."""
        return self.start(rclpy.create_node(name, context=self.context))

    def alive(self, node) -> bool:
        """Return True while ``node``'s executor thread still spins."""
        return self.running[node][1].is_alive()

    def stop(self, node):
        """Stop spinning ``node`` and destroy it (runs its clean-up)."""
        executor, thread = self.running.pop(node)
        executor.shutdown()
        thread.join(5)
        node.destroy_node()

    def stop_all(self):
        """Stop and destroy every node still spinning."""
        for node in list(self.running):
            self.stop(node)


def wait_while_progressing(predicate, progress, stall_timeout=120.0, limit=1800.0,
                           interval=0.05):
    """
    Poll ``predicate`` until true, giving up only when ``progress()`` stops changing.

    It gives up after ``progress()`` stayed the same for ``stall_timeout`` seconds, or after
    ``limit``, and returns the predicate's last value. For long simulations on a loaded
    machine: a fixed deadline fails a run that is slow but moving, while a stalled one still
    fails after ``stall_timeout``.
    """
    start = last_change = time.monotonic()
    seen = progress()
    while True:
        value = predicate()
        now = time.monotonic()
        if value or now - last_change > stall_timeout or now - start > limit:
            return value
        current = progress()
        if current != seen:
            seen, last_change = current, now
        time.sleep(interval)


def wait_for(predicate, timeout=10.0, interval=0.02):
    """Poll ``predicate`` until true or ``timeout`` seconds pass; return its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()
