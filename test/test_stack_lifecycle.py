"""
The supervisor's life cycle, through real ``llava-drive record`` processes at a tiny scale.

Signals to the command's pid close the bag and leave no process, a recorder error is rc 1 and
a second stack on a busy ROS domain is refused with rc 2 and one line.
"""
import json
import os
from pathlib import Path
import re
import resource
import signal
import subprocess
import sys

from llava_drive.bag.format import read_metadata
from llava_drive.bag.reader import read_pairs
from llava_drive.bringup.environment import DomainBusy, DomainLock, lock_domain
from llava_drive.bringup.environment import local_ros_environment
import pytest
from ros_helpers import wait_for

TINY = ['--width', '96', '--height', '72']
DEADLINE = 180  # seconds; generous for a loaded 2-core machine


def children(pid: int) -> list:
    """Return the node processes whose parent is ``pid`` (from /proc)."""
    found = []
    for stat in Path('/proc').glob('[0-9]*/stat'):
        try:
            # "pid (comm) state ppid ...": comm may hold spaces, so split after its ')'.
            fields = stat.read_text().rsplit(')', 1)[1].split()
            command = (stat.parent / 'cmdline').read_bytes()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid and b'llava_drive.nodes.' in command:
            found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    """Return True while ``pid`` exists and is not a zombie."""
    try:
        state = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != 'Z'


class Record:
    """One ``llava-drive record`` process with its output in files."""

    def __init__(self, tmp_path: Path, name: str, duration: str = '1000', preexec_fn=None):
        self.out = tmp_path / name
        self.stdout_path, self.stderr_path = tmp_path / f'{name}.out', tmp_path / f'{name}.err'
        self.log_dir = tmp_path / f'{name}_logs'
        with open(self.stdout_path, 'w') as stdout, open(self.stderr_path, 'w') as stderr:
            self.process = subprocess.Popen(
                [sys.executable, '-m', 'llava_drive.cli', 'record', '--duration', duration,
                 '--out', str(self.out), '--log-dir', str(self.log_dir)] + TINY,
                stdout=stdout, stderr=stderr, env=local_ros_environment(),
                preexec_fn=preexec_fn)
        self.nodes = []

    def wait_recording(self):
        """Wait until the three nodes run and the progress bar counts pairs written."""
        def recording():
            self.nodes = children(self.process.pid)
            counts = re.findall(r'(\d+) pairs', self.stderr())
            return len(self.nodes) == 3 and counts and int(counts[-1]) >= 20
        assert wait_for(recording, timeout=DEADLINE), (self.nodes, self.report())

    def wait(self) -> int:
        """Wait for the command to exit; return its exit code."""
        return self.process.wait(DEADLINE)

    def stderr(self) -> str:
        """Return what the command wrote to stderr so far."""
        return self.stderr_path.read_text()

    def report(self) -> str:
        """Return the end of stderr and of every node log, for a failed assertion."""
        parts = [self.stderr()[-1500:]]
        for log in sorted(self.log_dir.glob('*.log')):
            parts.append(f'--- {log.name}\n{log.read_text(errors="replace")[-1500:]}')
        return '\n'.join(parts)

    def summary(self) -> dict:
        """Return the JSON summary the command printed."""
        return json.loads(self.stdout_path.read_text())

    def kill(self):
        """Kill what is left (a failed test must not leave a stack running)."""
        for pid in [self.process.pid] + self.nodes:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        self.process.wait(DEADLINE)


@pytest.fixture
def record_process(tmp_path):
    """Start ``llava-drive record`` runs; kill what a failed test left."""
    started = []

    def start(name: str, **kwargs) -> Record:
        started.append(Record(tmp_path, name, **kwargs))
        return started[-1]
    yield start
    for run in started:
        run.kill()


def assert_closed_bag(run: Record):
    """Check the bag has its metadata, its pairs read back, and the summary counts them."""
    assert read_metadata(run.out) is not None, 'no metadata.yaml'
    pairs = list(read_pairs(run.out, decode_images=False))
    assert pairs
    summary = run.summary()
    assert summary['stopped'] == 'interrupted' and summary['pairs'] == len(pairs), summary


def test_sigterm_closes_the_bag_and_a_busy_domain_refuses_a_second_run(record_process):
    first = record_process('first')
    first.wait_recording()
    # A second stack on the same domain would mix both simulators' data: refused, one line.
    second = record_process('second', duration='2')
    assert second.wait() == 2, second.stderr()[-2000:]
    lines = second.stderr().strip().splitlines()
    assert len(lines) == 1 and 'ROS domain' in lines[0] and 'llava-drive record (pid' in lines[0]
    assert not second.out.exists()  # refused before any node started

    first.process.send_signal(signal.SIGTERM)
    assert first.wait() == 0, first.report()
    assert_closed_bag(first)
    assert not [pid for pid in first.nodes if alive(pid)]


def test_sigint_twice_stops_cleanly_without_a_traceback(record_process):
    run = record_process('twice')
    run.wait_recording()
    recorder, = [pid for pid in run.nodes
                 if b'llava_drive.nodes.recorder' in Path(f'/proc/{pid}/cmdline').read_bytes()]
    run.process.send_signal(signal.SIGINT)
    # The second signal lands while the supervisor stops the other nodes.
    assert wait_for(lambda: not alive(recorder) or run.process.poll() is not None,
                    timeout=DEADLINE)
    if run.process.poll() is None:
        run.process.send_signal(signal.SIGINT)
    assert run.wait() == 0, run.report()
    assert 'Traceback' not in run.stderr() and 'KeyboardInterrupt' not in run.stderr()
    assert_closed_bag(run)
    assert not [pid for pid in run.nodes if alive(pid)]


def test_sigkill_of_the_supervisor_takes_its_nodes_along(record_process):
    run = record_process('killed')
    run.wait_recording()
    run.process.send_signal(signal.SIGKILL)
    run.wait()
    # PR_SET_PDEATHSIG: each node gets SIGTERM, so the recorder still closes its bag.
    assert wait_for(lambda: not [pid for pid in run.nodes if alive(pid)], timeout=DEADLINE)
    assert read_metadata(run.out) is not None
    assert list(read_pairs(run.out, decode_images=False))


def full_disk():
    """Let files grow to 400 kB only (EFBIG, as a full disk gives ENOSPC)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # inherited: writes fail instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (400_000, 400_000))


def test_a_recorder_error_is_exit_code_1_even_though_the_bag_was_closed(record_process):
    run = record_process('full', preexec_fn=full_disk)
    nodes = set()
    assert wait_for(lambda: nodes.update(children(run.process.pid)) or
                    run.process.poll() is not None, timeout=DEADLINE)
    assert run.wait() == 1
    assert 'recorder error' in run.stderr() and 'File too large' in run.stderr()
    # No success summary (DDS libraries may print their own lines to stdout: FastDDS on
    # Jazzy reports there that the file size limit keeps it from its shared memory).
    assert '"pairs"' not in run.stdout_path.read_text()
    assert len(nodes) == 3 and not [pid for pid in nodes if alive(pid)]


def test_domain_lock_moves_a_private_domain_and_ignores_a_dead_owner(tmp_path):
    domain = int(local_ros_environment()['ROS_DOMAIN_ID'])
    held = DomainLock(domain)
    held.path.write_text('llava-drive record (pid 999999999)\n')  # stale: no flock behind it
    assert held.acquire('test holder')
    try:
        with pytest.raises(DomainBusy, match=r'in use by test holder \(pid'):
            lock_domain({'ROS_DOMAIN_ID': str(domain)}, 'other', chosen_by_user=True)
        env = {'ROS_DOMAIN_ID': str(domain)}
        moved = lock_domain(env, 'other', chosen_by_user=False)
        assert env['ROS_DOMAIN_ID'] != str(domain) and 1 <= int(env['ROS_DOMAIN_ID']) <= 100
        moved.release()
    finally:
        held.release()
    again = lock_domain({'ROS_DOMAIN_ID': str(domain)}, 'other', chosen_by_user=True)
    again.release()


@pytest.mark.parametrize('command', [
    ['drive', '--driver', 'expert'],
    ['evaluate', '--driver', 'expert', '--routes', '101', '--repetitions', '1']])
def test_drive_and_evaluate_refuse_a_busy_domain(command, tmp_path):
    env = local_ros_environment()
    held = DomainLock(int(env['ROS_DOMAIN_ID']))
    assert held.acquire('a test holding the domain')
    try:
        completed = subprocess.run(
            [sys.executable, '-m', 'llava_drive.cli', *command, '--out' if
             command[0] == 'evaluate' else '--log-dir', str(tmp_path / 'out')],
            capture_output=True, text=True, env=env, timeout=DEADLINE)
    finally:
        held.release()
    assert completed.returncode == 2, completed.stderr[-2000:]
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1 and 'in use by a test holding the domain' in lines[0], lines
    assert not (tmp_path / 'out').exists()


def test_the_supervisor_gives_the_caller_its_environment_back(monkeypatch):
    from llava_drive.bringup.supervisor import Supervisor
    for key in ('ROS_DOMAIN_ID', 'FASTDDS_DEFAULT_PROFILES_FILE'):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    before = dict(os.environ)
    with pytest.raises(ZeroDivisionError):  # an error in the body restores it as well
        with Supervisor('sim', 'test supervisor') as supervisor:
            assert os.environ['ROS_DOMAIN_ID'] == supervisor.env['ROS_DOMAIN_ID']
            assert 'FASTDDS_DEFAULT_PROFILES_FILE' in os.environ
            1 / 0
    assert dict(os.environ) == before
    lock = DomainLock(int(supervisor.env['ROS_DOMAIN_ID']))
    assert lock.acquire('test')  # and the domain is free again
    lock.release()
