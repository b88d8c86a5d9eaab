"""
Start and stop a set of nodes as child processes, the way ``ros2 launch`` would.

Used by ``llava-drive record`` (and later drive/evaluate) so the same nodes and the same
YAML files run with or without launch_ros installed. No ROS imports.
"""
from dataclasses import dataclass, field
import json
import os
import signal
import subprocess
import sys
import time
from typing import Dict, List, Optional


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


class Stack:
    """Child processes for a list of :class:`NodeSpec`; stops them in reverse order."""

    def __init__(self, specs: List[NodeSpec], env: Optional[dict] = None, log_dir=None):
        self.specs = specs
        self.env = dict(os.environ if env is None else env)
        self.log_dir = log_dir
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
                spec.command(), env=self.env, stdout=output, stderr=subprocess.STDOUT)
        return self

    def failed(self) -> Dict[str, int]:
        """Return ``{name: exit code}`` of nodes that have exited already."""
        return {name: p.returncode for name, p in self.processes.items()
                if p.poll() is not None}

    def stop_node(self, name: str, timeout: float = 15.0) -> Optional[int]:
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

    def stop(self, order: Optional[List[str]] = None):
        """Stop every node, in ``order`` first (e.g. the recorder), then the rest reversed."""
        names = list(order or []) + [s.name for s in reversed(self.specs)]
        for name in dict.fromkeys(names):
            self.stop_node(name)
        for log in self._logs:
            log.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def wait_until(predicate, timeout: float, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
