"""
Environment defaults that keep the embedded stack's DDS traffic on this machine.

Set before ``rclpy.init()`` (DDS reads them when the context starts). A value the user
exported wins: a real CARLA deployment across machines keeps its own settings.
"""
import fcntl
import os
from pathlib import Path
import sys
import tempfile


def config_path(name: str) -> Path:
    """
    Return an installed config file: source tree, pip's ``share/`` or the ROS share dir.

    :param name: file name inside ``config/`` (e.g. ``recorder.yaml``).
    """
    candidates = [
        Path(__file__).resolve().parents[2] / 'config' / name,  # source / editable install
        Path(sys.prefix) / 'share' / 'llava_drive' / 'config' / name,  # pip data_files
    ]
    try:
        from ament_index_python.packages import get_package_share_directory
        candidates.append(Path(get_package_share_directory('llava_drive')) / 'config' / name)
    except Exception:  # noqa: B902 - ament index missing or package not installed
        pass
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(f'config/{name} not found; looked in: '
                            + ', '.join(str(p) for p in candidates))


def fastdds_profile_path() -> Path:
    """Return the shipped FastDDS profile (large-sample shared memory)."""
    return config_path('fastdds_shm.xml')


def private_domain_id(pid=None) -> int:
    """
    Return a ROS domain for this process tree: 1-100, from the process id.

    Valid on every platform (0-101 keep DDS ports out of Linux's ephemeral range).
    """
    return 1 + (os.getpid() if pid is None else pid) % 100


def local_ros_environment(base=None) -> dict:
    """
    Return ``base`` (default ``os.environ``) plus loopback-only DDS defaults.

    :param base: environment mapping to extend; it is not modified.
    :return: a new dict suitable for ``subprocess`` or ``os.environ.update``.
    """
    env = dict(os.environ if base is None else base)
    env.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    # Two embedded stacks on one machine (a recording beside an evaluation) would otherwise
    # share domain 0 and drive each other's simulators.
    env.setdefault('ROS_DOMAIN_ID', str(private_domain_id()))
    # Humble predates ROS_AUTOMATIC_DISCOVERY_RANGE; newer distros warn on LOCALHOST_ONLY.
    if env.get('ROS_DISTRO') == 'humble':
        env.setdefault('ROS_LOCALHOST_ONLY', '1')
    return with_fastdds_profile(env)


def stack_environment(backend: str, base=None) -> dict:
    """
    Return the environment for a stack of nodes on ``backend`` (``sim`` or ``carla``).

    The embedded simulator stays on this host and on a domain of its own; with CARLA the
    user's DDS settings stand (the bridge may run elsewhere), plus the large-sample profile.
    """
    if backend == 'sim':
        return local_ros_environment(base)
    return with_fastdds_profile(dict(os.environ if base is None else base))


def with_fastdds_profile(env: dict) -> dict:
    """Return ``env`` with the shipped FastDDS profile set, unless it names one already."""
    if 'FASTDDS_DEFAULT_PROFILES_FILE' not in env:
        try:
            env['FASTDDS_DEFAULT_PROFILES_FILE'] = str(fastdds_profile_path())
        except FileNotFoundError:
            pass
    return env


def apply_local_ros_environment() -> None:
    """Apply :func:`local_ros_environment` to this process (call before ``rclpy.init``)."""
    os.environ.update(local_ros_environment())


class DomainBusy(RuntimeError):
    """Another simulator or recorder of this package already runs on the ROS domain."""


class DomainLock:
    """
    One stack per ROS domain on this host: an flock'ed file naming its owner.

    The kernel drops the lock when the last process holding the file goes (the supervisor and
    the children it passes the descriptor to), so a lock left by a killed run never blocks.

    :param domain: ROS domain id
    """

    def __init__(self, domain: int):
        self.domain = int(domain)
        self.path = Path(tempfile.gettempdir()) / f'llava_drive_ros_domain_{self.domain}.lock'
        self.file = None

    def acquire(self, owner: str) -> bool:
        """Take the lock for ``owner`` (written with this pid); False when it is held."""
        handle = open(self.path, 'a+')
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        handle.truncate(0)
        handle.write(f'{owner} (pid {os.getpid()})\n')
        handle.flush()
        self.file = handle
        return True

    def holder(self) -> str:
        """Return who holds the lock, as its owner wrote it."""
        try:
            return self.path.read_text().strip() or 'another process'
        except OSError:
            return 'another process'

    def fileno(self) -> int:
        """Return the lock's descriptor (children inherit it to keep the domain taken)."""
        return self.file.fileno()

    def release(self) -> None:
        """Drop the lock (children that inherited it hold it until they exit)."""
        if self.file is not None:
            self.file.close()
            self.file = None


def lock_domain(env: dict, owner: str, chosen_by_user: bool) -> DomainLock:
    """
    Lock ``env``'s ROS domain for ``owner``; a domain this package chose moves to a free one.

    :param env: the stack's environment; its ``ROS_DOMAIN_ID`` may be changed
    :param owner: who runs the stack (``llava-drive record``), written into the lock
    :param chosen_by_user: ``ROS_DOMAIN_ID`` was exported: never move it, refuse instead
    :raises DomainBusy: the domain is taken (or, when moving, every private domain is)
    """
    first = int(env.get('ROS_DOMAIN_ID') or 0)
    candidates = [first] if chosen_by_user else [1 + (first - 1 + i) % 100 for i in range(100)]
    for domain in candidates:
        lock = DomainLock(domain)
        if lock.acquire(owner):
            env['ROS_DOMAIN_ID'] = str(domain)
            return lock
    busy = DomainLock(first)
    raise DomainBusy(f'ROS domain {first} is in use by {busy.holder()}: stop it or export '
                     f'another ROS_DOMAIN_ID (two stacks on one domain drive each other)')
