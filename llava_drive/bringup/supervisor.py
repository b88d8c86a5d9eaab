"""
Start a stack of nodes and watch it: the one loop behind ``record``, ``drive`` and ``evaluate``.

A :class:`Supervisor` owns what the three commands share: the stack's environment, a lock on its
ROS domain, one rclpy context and executor for the command's monitor node, and the signals.
SIGINT and SIGTERM only ask the running stack to stop (the children are in a process group of
their own and are stopped by :class:`~llava_drive.bringup.stack.Stack` in the caller's order);
a second signal during that shutdown changes nothing, so a bag is always closed.
"""
from dataclasses import dataclass
import os
import signal
import threading
import time
from typing import Callable, Dict, Optional, Sequence

from llava_drive.bringup.environment import DomainBusy, lock_domain, stack_environment
from llava_drive.bringup.stack import Stack

__all__ = ['DomainBusy', 'Outcome', 'Supervisor']

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass
class Outcome:
    """
    How one stack ended.

    :param reason: what ``done`` returned, or ``'interrupted'`` (SIGINT/SIGTERM)
    :param seconds: wall seconds from start to the end of the shutdown
    :param exit_codes: ``{node: exit code}`` after the stack stopped
    """

    reason: str
    seconds: float
    exit_codes: Dict[str, Optional[int]]


class Supervisor:
    """
    Run stacks of nodes, one after another, watched from one rclpy context.

    Use as a context manager; :meth:`run` starts a stack and returns when it is done.

    :param backend: ``sim`` keeps DDS on this host, on a private domain unless one is exported
    :param owner: the command, for the domain lock and messages (``llava-drive record``)
    :raises DomainBusy: another stack of this package runs on the same ROS domain
    """

    #: The first stop signal any supervisor of this process received: a command that runs
    #: several (``llava-drive demo``) stops after the step a signal ended.
    signalled: Optional[int] = None

    def __init__(self, backend: str, owner: str):
        self.backend, self.owner = backend, owner
        self.env = self.lock = self.context = self.executor = None
        self._caller_env: Dict[str, Optional[str]] = {}
        self.interrupted: Optional[int] = None
        self._handlers = {}

    def __enter__(self):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.signals import SignalHandlerOptions

        user_domain = 'ROS_DOMAIN_ID' in os.environ
        self.env = stack_environment(self.backend)
        # A domain chosen here may move to a free one; the user's or CARLA's never does.
        self.lock = lock_domain(self.env, self.owner,
                                chosen_by_user=user_domain or self.backend != 'sim')
        # The monitor node must see the stack's DDS settings; the caller's come back on exit.
        self._caller_env = {key: os.environ.get(key) for key in self.env}
        os.environ.update(self.env)
        self.context = rclpy.Context()
        try:
            # rclpy's own handler would shut the context down under the running loop.
            rclpy.init(context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        except BaseException:
            self._restore_environment()
            self.lock.release()
            raise
        self.executor = SingleThreadedExecutor(context=self.context)
        if threading.current_thread() is threading.main_thread():  # where Python allows it
            for signum in STOP_SIGNALS:
                self._handlers[signum] = signal.signal(signum, self._on_signal)
        return self

    def __exit__(self, *exc):
        import rclpy

        self.executor.shutdown()
        rclpy.try_shutdown(context=self.context)
        for signum, handler in self._handlers.items():
            signal.signal(signum, handler)
        self._restore_environment()
        self.lock.release()

    def _restore_environment(self) -> None:
        """Put back the caller's values of what :meth:`__enter__` set; remove what was new."""
        for key, value in self._caller_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._caller_env = {}

    def _on_signal(self, signum, frame) -> None:
        """Ask the loop to stop; repeated signals (Ctrl-C twice, SIGTERM after it) are no-ops."""
        if self.interrupted is None:
            self.interrupted = signum
            Supervisor.signalled = Supervisor.signalled or signum

    def run(self, specs, monitor, done: Callable[[float], Optional[str]], log_dir=None,
            stop_order: Sequence[str] = (), period: float = 0.05) -> Outcome:
        """
        Start ``specs``, spin ``monitor`` until ``done`` names a reason, then stop the stack.

        :param specs: the nodes (:class:`~llava_drive.bringup.stack.NodeSpec`)
        :param monitor: the rclpy node (in :attr:`context`) whose callbacks ``done`` reads
        :param done: called with the elapsed wall seconds after each spin; returns a reason to
            stop, None to go on, or raises ``RuntimeError`` (a recorder error, a timeout)
        :param log_dir: node logs (``<name>.log``)
        :param stop_order: nodes stopped first (the recorder, so it closes its bag)
        :param period: longest wait for a callback per loop
        :raises RuntimeError: ``done`` raised, or a node exited before ``done`` said so
        """
        stack = Stack(specs, env=self.env, log_dir=log_dir, pass_fds=[self.lock.fileno()])
        self.executor.add_node(monitor)
        start = time.monotonic()
        reason = None
        try:
            stack.start()
            while self.interrupted is None:
                self.executor.spin_once(timeout_sec=period)
                reason = done(time.monotonic() - start)
                if reason:
                    break
                died = stack.failed()
                if died:
                    raise RuntimeError(f'node(s) exited early: {died}; logs in {log_dir}')
        finally:
            codes = stack.stop(order=stop_order)
            self.executor.remove_node(monitor)
        return Outcome(reason or 'interrupted', time.monotonic() - start, codes)
