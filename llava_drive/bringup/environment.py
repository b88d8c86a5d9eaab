"""
Environment defaults that keep the embedded stack's DDS traffic on this machine.

Set before ``rclpy.init()`` (DDS reads them when the context starts). A value the user
exported wins: a real CARLA deployment across machines keeps its own settings.
"""
import os
from pathlib import Path
import sys


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
