"""
Start and stop a set of nodes as child processes, the way ``ros2 launch`` would.

Used by ``llava-drive record``, ``drive`` and ``evaluate`` (through
:mod:`llava_drive.bringup.supervisor`) so the same nodes and the same YAML files run with or
without launch_ros installed. No ROS imports.

The children run in a process group of their own, so a Ctrl-C at the terminal reaches only the
supervisor, which stops them in its order (the recorder first, so the bag is closed while its
inputs still flow). On Linux each child also gets ``PR_SET_PDEATHSIG``: should the supervisor be
killed outright, the kernel sends the child SIGTERM, which the nodes turn into a clean shutdown.
"""
import ctypes
from dataclasses import dataclass, field
import json
import os
import signal
import subprocess
import sys
from typing import Dict, List, Optional, Sequence

#: Seconds a node has to exit after SIGINT, before SIGTERM (then 5 s more before SIGKILL).
STOP_GRACE_S = 15.0
#: The same for the nodes a stack stops first because they must finish (the recorder).
CLOSE_GRACE_S = 60.0


def param_value(value) -> str:
    """Format a Python value for ``--ros-args -p name:=value`` (YAML syntax)."""
    if isinstance(value, str):
        # An empty value would read as "name:=" with nothing after it, which rcl rejects.
        return value if value else "''"
    return json.dumps(value)


@dataclass
class NodeSpec:
    """One node to run: its module, YAML parameter file and overrides."""

    name: str
    module: str
    params_file: Optional[str] = None
    overrides: Dict[str, object] = field(default_factory=dict)

    def command(self) -> List[str]:
        """Return the command line that runs this node with its parameters."""
        command = [sys.executable, '-m', self.module, '--ros-args']
        if self.params_file:
            command += ['--params-file', str(self.params_file)]
        for key, value in self.overrides.items():
            command += ['-p', f'{key}:={param_value(value)}']
        return command


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _parent_death_signal():
    """Return a ``preexec_fn`` that asks for SIGTERM when the parent dies (Linux), else None."""
    if not sys.platform.startswith('linux'):
        return None
    # Resolved here, in the parent: between fork and exec the child only makes system calls.
    libc = ctypes.CDLL(None, use_errno=True)  # this process's symbols, libc's among them
    parent = os.getpid()

    def preexec():
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM))
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)
    return preexec


class Stack:
    """Child processes for a list of :class:`NodeSpec`; stops them in reverse order."""

    def __init__(self, specs: List[NodeSpec], env: Optional[dict] = None, log_dir=None,
                 pass_fds: Sequence[int] = ()):
        """
        Prepare the stack; nothing starts before :meth:`start`.

        :param specs: the nodes, in start order
        :param env: environment of the children (default: this process's)
        :param log_dir: one ``<name>.log`` per node here; None = this process's output
        :param pass_fds: file descriptors the children inherit (the supervisor's domain lock,
            held until the last child is gone)
        """
        self.specs = specs
        self.env = dict(os.environ if env is None else env)
        self.log_dir = log_dir
        self.pass_fds = tuple(pass_fds)
        self.processes: Dict[str, subprocess.Popen] = {}
        self._logs = []

    def start(self):
        """Start every node; their output goes to ``log_dir/<name>.log`` when given."""
        for spec in self.specs:
            output = None
            if self.log_dir is not None:
                os.makedirs(self.log_dir, exist_ok=True)
                output = open(os.path.join(self.log_dir, f'{spec.name}.log'), 'w')
                self._logs.append(output)
            self.processes[spec.name] = subprocess.Popen(
                spec.command(), env=self.env, stdout=output, stderr=subprocess.STDOUT,
                process_group=0, preexec_fn=_parent_death_signal(), pass_fds=self.pass_fds)
        return self

    def failed(self) -> Dict[str, int]:
        """Return ``{name: exit code}`` of nodes that have exited already."""
        return {name: p.returncode for name, p in self.processes.items()
                if p.poll() is not None}

    def stop_node(self, name: str, timeout: float = STOP_GRACE_S) -> Optional[int]:
        """Stop one node: SIGINT (clean), then SIGTERM, then SIGKILL; return its exit code."""
        process = self.processes.get(name)
        if process is None:
            return None
        for sig, wait in ((signal.SIGINT, timeout), (signal.SIGTERM, 5.0),
                          (signal.SIGKILL, 5.0)):
            if process.poll() is not None:
                break
            process.send_signal(sig)
            try:
                process.wait(wait)
            except subprocess.TimeoutExpired:
                continue
        return process.returncode

    def stop(self, order: Sequence[str] = ()) -> Dict[str, Optional[int]]:
        """
        Stop every node, in ``order`` first (e.g. the recorder), then the rest reversed.

        The nodes in ``order`` get :data:`CLOSE_GRACE_S` to finish: a recorder killed while
        it writes its summary leaves a bag to recover, and on a loaded machine its last
        write and fsync can take many seconds.

        :return: ``{name: exit code}`` of every node started
        """
        names = list(order) + [s.name for s in reversed(self.specs)]
        codes = {name: self.stop_node(name, CLOSE_GRACE_S if name in order else STOP_GRACE_S)
                 for name in dict.fromkeys(names) if name in self.processes}
        for log in self._logs:
            log.close()
        self._logs.clear()
        return codes

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
