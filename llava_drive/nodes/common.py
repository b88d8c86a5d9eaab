"""Wiring shared by every node: declared parameters and ``main()``."""
from dataclasses import dataclass
import signal
import sys
from typing import Callable, Dict, Optional, Sequence

from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                SetParametersResult)
import rclpy
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor


def declare(node, name: str, default, description: str, low=None, high=None, step=None,
            read_only: bool = True):
    """
    Declare a parameter with a descriptor (and range) and return its value.

    An override outside the range makes rclpy refuse it at start-up, naming the parameter.
    Read-only by default, so ``ros2 param set`` is refused (rclpy checks the descriptor)
    instead of reporting a change the node never applies; :func:`declare_parameters` clears
    it for the parameters a node applies at run time.
    """
    descriptor = ParameterDescriptor(description=description, read_only=read_only)
    if low is not None:
        if isinstance(default, bool) or not isinstance(default, (int, float)):
            raise TypeError(f'a range only applies to numbers, not {name}={default!r}')
        if isinstance(default, int):
            descriptor.integer_range = [IntegerRange(from_value=int(low), to_value=int(high),
                                                     step=int(step or 0))]
        else:
            descriptor.floating_point_range = [FloatingPointRange(
                from_value=float(low), to_value=float(high), step=float(step or 0.0))]
    return node.declare_parameter(name, default, descriptor).value


@dataclass(frozen=True)
class ParameterSpec:
    """
    One node parameter: the row of a node's parameter table.

    :param name: parameter name
    :param default: default value (its type is the parameter's type)
    :param description: what it does, with its unit
    :param low: smallest value (numbers only; with ``high``)
    :param high: largest value
    :param runtime: ``ros2 param set`` changes it while the node runs (the node applies it);
        otherwise it is read-only after start-up
    """

    name: str
    default: object
    description: str
    low: Optional[float] = None
    high: Optional[float] = None
    runtime: bool = False


def declare_parameters(node, table: Sequence[ParameterSpec],
                       apply: Optional[Callable[[str, object], None]] = None) -> Dict:
    """
    Declare every parameter of ``table`` on ``node``; return ``{name: value}``.

    Parameters are read-only unless marked ``runtime``; a runtime one, once rclpy has checked
    its type and range, goes to ``apply(name, value)``, which applies it or raises
    ``ValueError`` to refuse it (the caller of ``set_parameters`` gets the reason). So
    ``ros2 param get`` always shows what the node uses.

    :param node: an rclpy node
    :param table: the node's parameter table
    :param apply: applies one runtime parameter; None declares every parameter read-only
        (a node that only lists them)
    """
    runtime = {spec.name for spec in table if spec.runtime} if apply is not None else set()
    values = {spec.name: declare(node, spec.name, spec.default, spec.description, spec.low,
                                 spec.high, read_only=spec.name not in runtime)
              for spec in table}
    if runtime:

        def on_set(parameters) -> SetParametersResult:
            for parameter in parameters:
                if parameter.name in runtime:
                    try:
                        apply(parameter.name, parameter.value)
                    except ValueError as error:
                        return SetParametersResult(successful=False, reason=str(error))
            return SetParametersResult(successful=True)

        # Registered after declaring: rclpy also calls these callbacks on declaration.
        node.add_on_set_parameters_callback(on_set)
    return values


def topic_or_default(value: str, default: str) -> str:
    """Return ``value`` unless it is empty (parameters use '' for 'derive from role_name')."""
    return value if value else default


class _Interrupt:
    """
    SIGINT/SIGTERM handler that only takes note: spinning checks :attr:`fired` between callbacks.

    It never raises: an exception thrown into whatever the main thread is running (a bag
    write half done, rclpy's executor between taking and handling a message) can leave that
    state broken for ``destroy_node``, which must close the bag. Later signals change nothing.
    """

    def __init__(self):
        self.fired = False

    def __call__(self, signum, frame):
        self.fired = True


def die_with_parent() -> None:
    """
    Have Linux send this process SIGTERM when its parent dies (no-op elsewhere).

    A launch or ``llava-drive`` command that is killed, or fails after starting some nodes,
    then leaves no orphan simulator or recorder behind to disturb the next run on the domain.
    The signal follows the parent *thread* that started us: launchers start nodes from their
    main thread.
    """
    if not sys.platform.startswith('linux'):
        return
    import ctypes
    pr_set_pdeathsig = 1  # <linux/prctl.h>
    try:
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):  # no libc prctl (e.g. a static or foreign libc)
        pass


def spin_tolerantly(node, stop: Callable[[], bool] = lambda: False) -> None:
    """
    Spin ``node`` until shutdown or ``stop()``, surviving messages rclpy cannot convert.

    A sample rclpy fails to take (seen: a string field that is not UTF-8, from another
    process on the same domain) raises out of the executor; ``rclpy.spin`` would end the node
    and lose an open bag, so the sample is dropped, counted and logged instead.

    :param node: the node
    :param stop: checked after every wait; True ends spinning (a signal arrived)
    """
    executor = SingleThreadedExecutor(context=node.context)
    executor.add_node(node)
    dropped = 0
    # Short waits: a Python signal handler runs only once the wait has returned.
    while node.context.ok() and not stop():
        try:
            executor.spin_once(timeout_sec=0.2)
        except RuntimeError as error:
            if not node.context.ok():
                break  # shut down from a callback: the executor met destroyed entities
            dropped += 1
            node.get_logger().error(f'dropped a message rclpy could not take ({dropped} so '
                                    f'far): {error}', throttle_duration_sec=5.0)
    executor.remove_node(node)


def run_node(node_class, args=None) -> None:
    """
    Init, spin ``node_class()``, and always clean up, exactly once.

    SIGINT and SIGTERM end spinning the same way, at the next wait, never in the middle of a
    callback; more signals during the shutdown change nothing, so ``destroy_node`` always
    runs to its end (a recorder closes its bag there). rclpy's own handlers stay out, so the
    context is still up in ``destroy_node`` (the policy publishes its final brake there).
    A signal during start-up (a model loading) takes effect once the node is built.
    """
    from rclpy.signals import SignalHandlerOptions

    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    interrupt = _Interrupt()
    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    die_with_parent()  # SIGTERM: the clean shutdown below
    node = None
    exit_code = 0
    try:
        node = node_class()
        spin_tolerantly(node, stop=lambda: interrupt.fired)
    except ExternalShutdownException:
        pass
    except (ParameterException, ValueError) as error:  # a bad parameter: say which, no trace
        print(f'[{node_class.__name__}] refused to start: {error}', file=sys.stderr)
        exit_code = 2
    finally:
        # Ignored from here to the exit, by the OS: the interpreter's finalization would
        # restore the default (killing) action for signals with Python handlers.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    if exit_code:
        sys.exit(exit_code)
