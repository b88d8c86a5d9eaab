"""
Launch argument checks, run by the launch files before any node starts.

ROS-free (the launch files pass their argument values as a dict), so they are unit-tested
without launch. Each check takes ``(text, name)`` and raises :class:`LaunchArgumentError` with
one line naming the argument; ``ros2 launch`` prints it and ends with status 1.
"""
from contextlib import contextmanager
import difflib
from pathlib import Path
import shutil
import tempfile
from typing import Callable, Dict, List, Mapping

from llava_drive.bringup.environment import DomainLock, lock_domain
from llava_drive.nodes.interfaces import BACKENDS
import yaml

# carla_ros_bridge's default timeout (2 s) is shorter than the town load it starts with.
MIN_ROS_BRIDGE_TIMEOUT_S = 20.0

#: ``{ROS domain: lock}`` held by this launch process, never released: the kernel drops a lock
#: when the process exits, however it ends (Python opens the file close-on-exec, so no node of
#: the launch inherits it).
DOMAIN_LOCKS: Dict[int, DomainLock] = {}

Check = Callable[[str, str], object]


class LaunchArgumentError(ValueError):
    """A launch argument value that the stack cannot run with (the message is one line)."""


def refuse(name: str, must: str, text: str):
    """Raise the one-line refusal of argument ``name``."""
    raise LaunchArgumentError(f'launch argument {name} must be {must}, got {text!r}')


def check_arguments(values: Mapping[str, str], checks: Mapping[str, Check]) -> None:
    """
    Refuse undeclared arguments, then run the check of every declared one.

    ``ros2 launch`` keeps every ``name:=value`` it is given as a launch configuration, declared
    or not, so a misspelt name would otherwise be dropped silently and its default used.

    :param values: the launch configurations (every ``name:=value`` and each default)
    :param checks: ``{declared argument: check}``
    """
    unknown = sorted(set(values) - set(checks))
    if unknown:
        hints = [f'{name} (did you mean {close[0]}?)' if close else name
                 for name in unknown
                 for close in [difflib.get_close_matches(name, checks, n=1)]]
        raise LaunchArgumentError(f'unknown launch argument {", ".join(hints)}; known: '
                                  f'{", ".join(sorted(checks))}')
    for name, check in checks.items():
        check(values[name], name)


def non_empty(text: str, name: str) -> str:
    """Return ``text`` unless it is empty."""
    if not text.strip():
        refuse(name, 'non-empty', text)
    return text


def boolean(text: str, name: str) -> bool:
    """Parse true/false (or 1/0)."""
    value = text.strip().lower()
    if value not in ('true', 'false', '1', '0'):
        refuse(name, 'true or false', text)
    return value in ('true', '1')


def one_of(*choices: str) -> Check:
    """Return a check accepting exactly ``choices``."""
    def check(text: str, name: str) -> str:
        if text not in choices:
            refuse(name, f'one of {", ".join(choices)}', text)
        return text
    return check


def backend(text: str, name: str) -> str:
    """Accept one of :data:`BACKENDS`."""
    return one_of(*BACKENDS)(text, name)


def auto_or_boolean(text: str, name: str) -> str:
    """Accept ``auto``, true or false."""
    if text.strip().lower() != 'auto':
        try:
            boolean(text, name)
        except LaunchArgumentError:
            refuse(name, 'auto, true or false', text)
    return text


def number(low: float = None, integer: bool = False, high: float = None) -> Check:
    """Return a check of a real (or, if ``integer``, whole) value in ``[low, high]``."""
    kind = 'an integer' if integer else 'a number'
    bounds = ''.join([f' >= {low:g}' if low is not None else '',
                      ' and' if low is not None and high is not None else '',
                      f' <= {high:g}' if high is not None else ''])

    def check(text: str, name: str) -> float:
        try:
            value = int(text) if integer else float(text)
        except ValueError:
            value = None
        if value is None or value != value or (low is not None and value < low) or (
                high is not None and value > high):
            refuse(name, kind + bounds, text)
        return value
    return check


def ros_name(text: str, name: str) -> str:
    """Accept a ROS name token (letters, digits, underscores; a letter first)."""
    if not (text[:1].isalpha() and text.replace('_', '').isalnum() and text.isascii()):
        refuse(name, 'a ROS name token (letters, digits, _)', text)
    return text


def parse_numbers(text: str, count: int, name: str) -> List[float]:
    """Parse ``count`` comma-separated numbers of launch argument ``name``, naming it if bad."""
    try:
        values = [float(part) for part in text.split(',')]
    except ValueError:
        values = []
    if len(values) != count:
        refuse(name, f'{count} comma-separated numbers', text)
    return values


def optional_numbers(count: int) -> Check:
    """Return a check of ``count`` comma-separated numbers, or empty."""
    return lambda text, name: parse_numbers(text, count, name) if text else []


def seed_list(text: str, name: str) -> List[int]:
    """Parse a non-empty YAML list of non-negative integers, e.g. ``[1, 2, 5]``."""
    try:
        seeds = yaml.safe_load(text)
    except yaml.YAMLError:
        seeds = None
    if not (isinstance(seeds, list) and seeds and all(
            isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0
            for seed in seeds)):
        refuse(name, 'a YAML list of route seeds such as [1, 2, 5]', text)
    return seeds


def optional_file(text: str, name: str) -> str:
    """Accept empty or an existing file."""
    if text and not Path(text).is_file():
        refuse(name, 'empty or an existing file', text)
    return text


def ros_bridge_timeout(text: str, name: str) -> float:
    """Parse carla_ros_bridge's server timeout: it loads the town on start, so >= 20 s."""
    timeout = number(low=0.0)(text, name)
    if timeout < MIN_ROS_BRIDGE_TIMEOUT_S:
        raise LaunchArgumentError(f'launch argument {name} must be >= '
                                  f'{MIN_ROS_BRIDGE_TIMEOUT_S:g} s for carla_ros_bridge (it '
                                  f'loads the town on start), got {timeout:g}')
    return timeout


def new_bag_path(text: str, name: str) -> str:
    """
    Accept a bag directory that does not exist (or is empty) and can be created.

    Probed by creating (and removing) a directory beside it: permissions alone do not show a
    read-only mount, and root passes every permission check.
    """
    if not text.strip():
        refuse(name, 'a bag directory', text)
    path = Path(text).expanduser().absolute()
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise LaunchArgumentError(f'launch argument {name}: {text} already exists and is not '
                                  f'an empty directory; choose a new bag_path')
    parent = path if path.is_dir() else path.parent
    while not parent.exists():
        parent = parent.parent
    try:
        if not parent.is_dir():
            raise NotADirectoryError(f'{parent} is not a directory')
        shutil.rmtree(tempfile.mkdtemp(prefix='.llava_drive_probe_', dir=parent))
    except OSError as error:
        raise LaunchArgumentError(f'launch argument {name}: cannot create {text}: '
                                  f'{error.strerror or error}') from None
    return text


def rviz(text: str, name: str) -> bool:
    """Parse true/false; true needs ``rviz2`` on PATH."""
    wanted = boolean(text, name)
    if wanted and shutil.which('rviz2') is None:
        raise LaunchArgumentError(f'launch argument {name}:=true but rviz2 is not on PATH '
                                  f'(install ROS rviz2 or leave {name} false)')
    return wanted


@contextmanager
def naming(name: str, *errors):
    """Turn a library check's one-line error into the refusal of launch argument ``name``."""
    try:
        yield
    except errors as error:
        raise LaunchArgumentError(f'launch argument {name}: {error}') from None


def checkpoint_dir(text: str, name: str) -> str:
    """Accept a directory written by ``llava-drive train`` whose files are intact (no torch)."""
    from llava_drive.learning.checkpoint_files import check_checkpoint_files, CheckpointError
    if not text:
        raise LaunchArgumentError(f'launch argument {name} is required (a llava-drive train '
                                  f'output directory)')
    with naming(name, CheckpointError):
        check_checkpoint_files(text)
    return text


def model_dir(text: str, name: str) -> str:
    """Accept empty (the checkpoint's model) or a LLaVA model directory."""
    from llava_drive.features.choices import ChoiceError, check_model_dir
    if text:
        with naming(name, ChoiceError):
            check_model_dir(text)
    return text


def torch_device(text: str, name: str) -> str:
    """Accept a device this torch has (``cpu`` without importing torch)."""
    from llava_drive.features.choices import ChoiceError, resolve_device
    if text != 'cpu':
        with naming(name, ChoiceError):
            resolve_device(text)
    return text


def related(values: Mapping[str, str]) -> None:
    """Check what depends on two arguments: carla_ros_bridge's longer server timeout."""
    if values['backend'] == 'carla_ros_bridge':
        ros_bridge_timeout(values['carla_timeout'], 'carla_timeout')


def lock_launch_domain(environ: Mapping[str, str], owner: str) -> int:
    """
    Take the launch's ROS domain for the life of this process, as ``llava-drive`` commands do.

    Every backend's stack drives a vehicle and records or answers on the domain's topics, so two
    stacks on one domain mix their data. A launch never moves domains: its nodes inherit
    ``ROS_DOMAIN_ID`` (default 0) as it is. Taken once per process and domain.

    :param environ: the launch's environment
    :param owner: who holds the domain, as the refusal of a second stack names it
    :return: the locked domain
    :raises DomainBusy: another stack of this package runs on the domain (one line)
    """
    text = environ.get('ROS_DOMAIN_ID') or '0'
    try:
        domain = int(text)
    except ValueError:
        raise LaunchArgumentError(f'ROS_DOMAIN_ID must be an integer, got {text!r}') from None
    if domain not in DOMAIN_LOCKS:
        DOMAIN_LOCKS[domain] = lock_domain({'ROS_DOMAIN_ID': str(domain)}, owner,
                                           chosen_by_user=True)
    return domain


def checks_of(arguments) -> Dict[str, Check]:
    """Return ``{name: check}`` of ``(name, default, description, check)`` rows."""
    return {name: check for name, _, _, check in arguments}
