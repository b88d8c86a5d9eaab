"""
The driving policy without ROS: inference worker, safety gate, controller, annotated image.

Public API: :func:`~.inference.load_policy` and :class:`~.inference.InferenceWorker`,
:class:`~.safety_gate.SafetyGate` (+ ``GateConfig``), :class:`~.controller.WaypointController`
(+ ``ControllerConfig``), :func:`~.annotate.annotate_frame` and ``steering_path``.
"""
