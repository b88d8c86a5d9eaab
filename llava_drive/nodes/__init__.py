"""
The ROS 2 nodes: thin wiring of the pure packages, plus the one definition of the interfaces.

Public API: the nodes :class:`~.sim_bridge.SimBridge`, :class:`~.carla_bridge.CarlaBridge`,
:class:`~.expert.Expert`, :class:`~.recorder.Recorder`, :class:`~.policy.Policy` (each with a
``PARAMETERS`` table and ``main``); :mod:`.interfaces` (topic names, QoS), :mod:`.status`
(status payload schemas), :class:`~.control_codec.ControlCodec`, :mod:`.route_codec`,
:mod:`.common` (``ParameterSpec``, ``declare_parameters``, ``run_node``).
"""
