"""
Nodes of the embedded stack as ``NodeSpec`` values: the installed YAML plus overrides.

Shared by ``llava-drive record``, ``evaluate`` and ``drive`` so each node is configured in one
place. No ROS imports.
"""
from pathlib import Path
from typing import Optional

from llava_drive.bringup.environment import config_path
from llava_drive.bringup.stack import NodeSpec
from llava_drive.nodes.interfaces import BACKENDS, CARLA_BACKENDS

# Front-wheel angle at |steer| = 1 of CARLA's cars (vehicle.tesla.model3 physics: 70 deg); the
# embedded simulator's is 35 (config/expert.yaml).
CARLA_MAX_STEER_DEG = 70.0


def sim_bridge_spec(route_seeds, width: int, height: int, synchronous: bool = True,
                    **overrides) -> NodeSpec:
    """
    Return the sim_bridge node with ``config/sim_bridge.yaml`` and these overrides.

    :param route_seeds: routes driven one after another
    :param width: camera width (px)
    :param height: camera height (px)
    :param synchronous: step as fast as the nodes answer (True) or in real time
    :param overrides: further sim_bridge parameters (e.g. ``loop_routes=False``)
    """
    params = {'route_seeds': [int(seed) for seed in route_seeds], 'image_width': int(width),
              'image_height': int(height), 'synchronous_mode': bool(synchronous)}
    params.update(overrides)
    return NodeSpec('sim_bridge', 'llava_drive.nodes.sim_bridge',
                    config_path('sim_bridge.yaml'), params)


def carla_bridge_spec(route_seeds, width: int = 0, height: int = 0,
                      **overrides) -> NodeSpec:
    """
    Return the carla_bridge node with ``config/carla_bridge.yaml`` and these overrides.

    :param route_seeds: routes (start and goal drawn per seed) driven one after another
    :param width: camera width (px); 0 = the objects file's
    :param height: camera height (px); 0 = the objects file's
    :param overrides: further carla_bridge parameters (``host``, ``town``, ``loop_routes``...)
    """
    params = {'route_seeds': [int(seed) for seed in route_seeds], 'image_width': int(width),
              'image_height': int(height)}
    params.update(overrides)
    return NodeSpec('carla_bridge', 'llava_drive.nodes.carla_bridge',
                    config_path('carla_bridge.yaml'), params)


def bridge_specs(backend: str, route_seeds, width: int, height: int, sim=None, carla=None,
                 **common) -> list:
    """
    Return the bridge node of ``backend``: sim_bridge, carla_bridge, or none (carla_ros_bridge).

    :param backend: one of :data:`BACKENDS`
    :param route_seeds: routes driven one after another
    :param width: camera width (px)
    :param height: camera height (px)
    :param sim: parameters only sim_bridge has (``route_length``, ``variation``...)
    :param carla: parameters only carla_bridge has (``host``, ``town``, ``time_limit``...)
    :param common: parameters both bridges have (``loop_routes``, ``control_timeout``...)
    """
    if backend not in BACKENDS:
        raise ValueError(f'backend must be one of {BACKENDS}, got {backend!r}')
    if backend == 'sim':
        return [sim_bridge_spec(route_seeds, width, height, **common, **(sim or {}))]
    if backend == 'carla':
        return [carla_bridge_spec(route_seeds, width, height, **common, **(carla or {}))]
    return []  # carla_ros_bridge runs on its own (ros2 launch ... backend:=carla_ros_bridge)


def steps_per_control(backend: str, sim_synchronous: bool) -> bool:
    """
    Return True when the bridge steps once per control (the policy's ``synchronous``).

    carla_bridge always does, sim_bridge in synchronous mode; a running carla_ros_bridge is not
    ours to promise, so there the policy's gate judges ages on the wall clock.
    """
    return backend == 'carla' or (backend == 'sim' and bool(sim_synchronous))


def expert_spec(drive: bool = True, noise: bool = False, backend: str = 'sim',
                **overrides) -> NodeSpec:
    """
    Return the expert node with ``config/expert.yaml``.

    :param drive: publish on vehicle_control_cmd; False = labels only (the policy drives)
    :param noise: perturb the executed steering (recovery data)
    :param backend: on CARLA backends the steering limit is CARLA's
    :param overrides: further expert parameters
    """
    params = {'drive': bool(drive), 'noise': bool(noise)}
    if backend in CARLA_BACKENDS:
        params['max_steer_deg'] = CARLA_MAX_STEER_DEG
    params.update(overrides)
    return NodeSpec('expert', 'llava_drive.nodes.expert', config_path('expert.yaml'), params)


def policy_spec(checkpoint: Path, model: Optional[Path] = None, device: str = 'cpu',
                dtype: Optional[str] = None, name: str = 'policy', **overrides) -> NodeSpec:
    """
    Return the policy node with ``config/policy.yaml`` and a checkpoint.

    :param checkpoint: trained checkpoint directory
    :param model: LLaVA directory; None uses the path stored in the checkpoint
    :param device: torch device (``cpu``, ``cuda``)
    :param dtype: model dtype (``float32``, ``bfloat16``...); None = the checkpoint's
    :param name: process name (logs); the ROS node name comes from the node itself
    :param overrides: further policy parameters (e.g. ``publish_annotated=True``)
    """
    params = {'checkpoint': str(Path(checkpoint).resolve()), 'device': str(device)}
    # Left out when unset: '' does not parse as a command-line override (Stack passes it raw).
    if model:
        params['model'] = str(Path(model).resolve())
    if dtype:
        params['dtype'] = str(dtype)
    params.update(overrides)
    try:
        params_file = config_path('policy.yaml')
    except FileNotFoundError:  # the node declares the same defaults
        params_file = None
    return NodeSpec(name, 'llava_drive.nodes.policy', params_file, params)
