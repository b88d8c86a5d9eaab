"""
Policy node: camera image -> LLaVA features -> action head -> ``vehicle_control_cmd``.

Loads a checkpoint and the extractor its feature specification names (a mismatch is refused
at start-up, naming every difference). The camera subscription (best effort, depth 1) only
hands the newest frame to an inference thread
(:class:`llava_drive.policy.inference.InferenceWorker`), so the executor serving the timers
never waits for the model. Control rate (architecture: Control rate): every result goes
through the safety gate (:mod:`llava_drive.policy.safety_gate`) and out at once as exactly one
control, stamped with its source image's stamp (in synchronous simulation that steps the
world: one control per frame); a NaN output is a brake. The fixed-rate timer (``gate_rate``)
publishes only a full brake, and only while images or inferences are older than ``max_age``.
Engaging the emergency stop (``/llava_drive/emergency_stop``, std_msgs/Bool: True brakes until
False; subscribed volatile so that any publisher matches, hence a value published before the
node started is not seen) or disabling driving (``~/enable``, std_srvs/SetBool) sends one
brake at once, and every result is a brake until released. Refused inputs (images outside
``llava_drive.image_codec``'s bounds, non-finite speed or odometry, a malformed plan) are
counted by reason (``rejected_<reason>`` in the diagnostics), logged the first time each
reason is seen, and otherwise ignored. Diagnostics on ``/diagnostics`` once a second; for RViz,
``~/annotated_image`` and ``~/predicted_path`` (markers in the vehicle frame ``<role_name>``).
Each frame carries its route input (command in effect and next target point from the global
plan and the newest odometry, :class:`llava_drive.features.route_prompt.RouteTracker`, as
extraction computes them; LANEFOLLOW until a plan is known) for route-conditioned prompts and
heads. A waypoint head drives through the waypoint controller (pure pursuit + PID, gains
``controller_*``); its waypoints, target speed and the controller output are drawn.
On shutdown a final full brake goes out: the CARLA bridge applies the last control forever.
"""
from collections import Counter
from dataclasses import replace
import gc
import math
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point
from llava_drive.control import FULL_BRAKE
from llava_drive.features.route_prompt import RouteTracker
from llava_drive.image_codec import decode_raw, ImageError, raw_fields
from llava_drive.nodes.common import declare_parameters as declare_table
from llava_drive.nodes.common import ParameterSpec as Param, run_node
from llava_drive.nodes.control_codec import (AckermannConfig, ControlCodec, DRIVE_WIRES,
                                             driving_codec, ns_to_stamp, stamp_to_ns)
from llava_drive.nodes.interfaces import (CAMERA_QOS, CONTROL_QOS, DEFAULT_ROLE_NAME,
                                          DIAGNOSTICS_TOPIC, EMERGENCY_STOP_TOPIC,
                                          EXPERT_CONTROL_TOPIC, LATCHED_QOS,
                                          POLICY_ANNOTATED_IMAGE, POLICY_ENABLE, POLICY_NODE,
                                          POLICY_PREDICTED_PATH, reliable_qos, vehicle_topics)
from llava_drive.nodes.route_codec import decode_plan, plan_type, RouteMessageError
from llava_drive.policy.annotate import annotate_frame, steering_path
from llava_drive.policy.controller import ControllerConfig
from llava_drive.policy.inference import Frame, InferenceWorker, load_policy
from llava_drive.policy.safety_gate import BRAKING_REASONS, GateConfig, SafetyGate
from nav_msgs.msg import Odometry
from rclpy.duration import Duration
from rclpy.node import Node
from sensor_msgs.msg import Image
from std_msgs.msg import Bool, Float32
from std_srvs.srv import SetBool
from visualization_msgs.msg import Marker, MarkerArray

LOG_THROTTLE_S = 2.0


# Every parameter of the node; ``runtime`` ones are applied by Policy.apply_parameter.
PARAMETERS = [
    Param('role_name', DEFAULT_ROLE_NAME, 'CARLA role name of the ego vehicle'),
    Param('checkpoint', '', 'checkpoint directory written by llava-drive train (required)'),
    Param('model', '', 'LLaVA model directory; "" = the path stored in the checkpoint'),
    Param('device', 'cpu', 'torch device: cpu, cuda, cuda:1, ...'),
    Param('dtype', '', 'compute dtype (float32, float16, bfloat16); "" = the one in the '
          'checkpoint'),
    Param('max_age', GateConfig.max_age_s,
          'brake when the newest image or inference is older (wall s)',
          0.01, 60.0, runtime=True),
    Param('synchronous', GateConfig.synchronous,
          'the simulator waits for each control (sim_bridge or carla_bridge in synchronous '
          'mode): max_age is not applied, a slow inference still answers its frame, and the '
          "simulator's control timeout brakes a silent policy"),
    Param('gate_rate', 20.0, 'rate of the full brakes the safety gate repeats while images '
          'or inferences are older than max_age (Hz); results go out one per frame', 1.0,
          1000.0),
    Param('steer_rate_limit', GateConfig.steer_rate_limit,
          'largest steering change per second of stamp time (steer '
          'units; 0 = off)', 0.0, 100.0, runtime=True),
    Param('steer_smoothing', GateConfig.steer_smoothing,
          'weight of the newest steering prediction in its moving '
          'average (1 = no smoothing)', 0.01, 1.0, runtime=True),
    Param('brake_threshold', GateConfig.brake_threshold,
          'a predicted brake at or above this zeroes the throttle; '
          'below it the brake is released', 0.01, 1.0, runtime=True),
    Param('control_wire', 'auto', f'message type of the output, one of {DRIVE_WIRES}; '
          'ackermann publishes AckermannDriveStamped on ackermann_cmd_stamped'),
    Param('ackermann_speed', 8.0, 'speed commanded while not braking with control_wire '
          'ackermann (m/s)', 0.0, 100.0),
    Param('publish_annotated', True, 'publish ~/annotated_image (while someone subscribes)',
          runtime=True),
    Param('expert_label_topic', EXPERT_CONTROL_TOPIC,
          'expert control drawn beside the prediction when present; "" = none'),
    Param('max_steer_deg', 35.0, 'wheel angle at |steer| = 1, for ~/predicted_path (35 in the '
          'embedded simulator, about 70 for CARLA cars)', 5.0, 90.0),
    Param('wheelbase', 2.9, 'wheelbase for ~/predicted_path (m)', 1.0, 10.0),
    Param('cpu_threads', 0, 'torch CPU threads (0 = torch default); 1 avoids OpenMP spinning on '
          'a shared, busy CPU', 0, 1024),
    Param('debug_inference_delay', 0.0, 'extra seconds per inference (tests of the safety '
          'gate)', 0.0, 60.0),
]
# The waypoint controller's gains (checkpoints with a waypoint head): ControllerConfig fields.
CONTROLLER_PARAMETERS = {
    'wheelbase_m': ('wheelbase of the driven vehicle (m)', 0.5, 10.0),
    'max_steer_deg': ('wheel angle at |steer| = 1 (deg)', 1.0, 89.0),
    'rear_axle_offset_m': ('rear axle behind the odometry point (m)', 0.0, 10.0),
    'lookahead_time_s': ('pure-pursuit lookahead grows by this times the speed (s)', 0.0, 10.0),
    'min_lookahead_m': ('smallest pure-pursuit lookahead (m)', 0.1, 100.0),
    'max_lookahead_m': ('largest pure-pursuit lookahead (m)', 0.1, 100.0),
    'kp': ('speed PID proportional gain (per m/s)', 0.0, 100.0),
    'ki': ('speed PID integral gain (per m)', 0.0, 100.0),
    'kd': ('speed PID derivative gain (per m/s^2)', 0.0, 100.0),
    'integral_limit': ('anti-windup clamp of the speed integral (m)', 0.0, 1000.0),
    'max_throttle': ('throttle ceiling of the controller', 0.01, 1.0),
    'brake_deadband_mps': ('overspeed tolerated before braking (m/s)', 0.0, 100.0),
    'stop_speed_mps': ('a target speed below this brakes to a stop (m/s)', 0.0, 100.0),
    'stop_brake': ('brake applied when stopping', 0.0, 1.0),
}
PARAMETERS += [Param(f'controller_{name}', getattr(ControllerConfig, name),
                     f'waypoint controller: {description}', low, high)
               for name, (description, low, high) in CONTROLLER_PARAMETERS.items()]


def declare_parameters(node, apply=None) -> dict:
    """
    Declare every policy parameter on ``node``; return ``{name: value}``.

    Separate from :class:`Policy` so tools can list the parameters without a checkpoint.

    :param node: an rclpy node.
    :param apply: applies a runtime parameter set while running (None: all read-only)
    """
    return declare_table(node, PARAMETERS, apply)


class Policy(Node):
    """Drives the ego vehicle with a trained checkpoint behind a safety gate."""

    def __init__(self, **node_options):
        super().__init__(POLICY_NODE, **node_options)
        p = declare_parameters(self, self.apply_parameter)
        self.role = p['role_name']
        self.publish_annotated = p['publish_annotated']
        self.max_steer_deg, self.wheelbase = p['max_steer_deg'], p['wheelbase']
        checkpoint = p['checkpoint']

        wire = p['control_wire']
        if wire not in DRIVE_WIRES:
            raise ValueError(f'control_wire must be one of {DRIVE_WIRES}, got {wire!r}')
        self.codec = driving_codec(wire, AckermannConfig(
            max_steer_deg=self.max_steer_deg, wheelbase_m=self.wheelbase,
            target_speed_mps=p['ackermann_speed']))
        # The expert's label stays a control whatever this node publishes.
        self.label_codec = ControlCodec('auto' if wire == 'ackermann' else wire)
        self.gate = SafetyGate(GateConfig(
            max_age_s=p['max_age'], steer_rate_limit=p['steer_rate_limit'],
            steer_smoothing=p['steer_smoothing'], brake_threshold=p['brake_threshold'],
            synchronous=p['synchronous']))
        self.lock = threading.Lock()  # the gate and the control publisher, two threads
        self.rejected = Counter()  # inputs refused, by reason
        self.speed = math.nan
        self.pose = None  # (x, y, yaw) from the newest odometry
        self.route_tracker = RouteTracker()
        self.expert = None  # (stamp_ns, Control)
        self.last_reason = None
        self.published = 0
        self.closed = False
        if p['cpu_threads']:
            import torch
            torch.set_num_threads(p['cpu_threads'])
        started = time.monotonic()
        self.policy = load_policy(checkpoint, p['model'] or None, p['device'],
                                  p['dtype'] or None)
        self.load_s = time.monotonic() - started
        # torch + transformers leave ~370k long-lived objects: a full collection scanning
        # them holds the GIL ~0.2 s, stalling the gate timer. Exempt them from collection.
        gc.collect()
        gc.freeze()

        topics = vehicle_topics(self.role)
        self.camera_frame = topics.camera_frame
        self.control_pub = self.create_publisher(self.codec.msg_type,
                                                 topics.command(self.codec.topic), CONTROL_QOS)
        self.image_pub = self.create_publisher(Image, f'~/{POLICY_ANNOTATED_IMAGE}',
                                               reliable_qos(1))
        self.marker_pub = self.create_publisher(MarkerArray, f'~/{POLICY_PREDICTED_PATH}',
                                                reliable_qos(1))
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, 10)
        self.worker = InferenceWorker(self.policy, self.on_result,
                                      debug_delay_s=p['debug_inference_delay'],
                                      keep_rgb=self.publish_annotated,
                                      on_error=self.on_inference_error,
                                      controller=ControllerConfig(**{
                                          name: p[f'controller_{name}']
                                          for name in CONTROLLER_PARAMETERS})).start()
        self.create_subscription(Image, topics.camera_image, self.on_image, CAMERA_QOS)
        self.create_subscription(Float32, topics.speedometer, self.on_speed, CAMERA_QOS)
        self.create_subscription(Odometry, topics.odometry, self.on_odometry, CAMERA_QOS)
        self.create_subscription(plan_type(), topics.global_plan, self.on_plan, LATCHED_QOS)
        self.create_subscription(Bool, EMERGENCY_STOP_TOPIC, self.on_emergency_stop,
                                 reliable_qos(10))
        if p['expert_label_topic']:
            self.create_subscription(self.label_codec.msg_type, p['expert_label_topic'],
                                     self.on_expert, CONTROL_QOS)
        self.create_service(SetBool, f'~/{POLICY_ENABLE}', self.on_enable)
        self.create_timer(1.0 / p['gate_rate'], self.on_gate_timer)
        self.create_timer(1.0, self.publish_diagnostics)
        spec = self.policy.config['feature_spec']
        head = self.policy.config['head']
        self.get_logger().info(
            f'checkpoint {checkpoint} ({head["kind"]}, window {head["window"]}, '
            f'speed {head["use_speed"]}, output {head.get("output", "control")}), features '
            f'{spec["mode"]} layer {spec["layer"]} of {self.policy.extractor.model_dir}, loaded '
            f'in {self.load_s:.1f} s; gate {p["gate_rate"]} Hz, max age {p["max_age"]} s; '
            f'control {self.codec.name}')

    # Runtime parameters and the GateConfig fields they set.
    GATE_FIELDS = {'max_age': 'max_age_s', 'steer_rate_limit': 'steer_rate_limit',
                   'steer_smoothing': 'steer_smoothing', 'brake_threshold': 'brake_threshold'}

    def apply_parameter(self, name: str, value) -> None:
        """Apply a runtime parameter set with ``ros2 param set`` (ValueError refuses it)."""
        if name == 'publish_annotated':
            self.publish_annotated = bool(value)
            if hasattr(self, 'worker'):
                self.worker.keep_rgb = self.publish_annotated
        elif name in self.GATE_FIELDS and hasattr(self, 'gate'):
            with self.lock:
                self.gate.config = replace(self.gate.config, **{self.GATE_FIELDS[name]: value})
        self.get_logger().info(f'parameter {name} set to {value!r}')

    # -- inputs --------------------------------------------------------------------------
    def on_image(self, msg: Image):
        """Hand the newest frame to the inference thread (a waiting older one is dropped)."""
        now = time.monotonic()
        try:
            image = decode_raw(msg.encoding, msg.height, msg.width, msg.step, msg.data)
        except ImageError as error:
            self.reject(error.reason, f'image: {error}')
            return
        stamp_ns = stamp_to_ns(msg.header.stamp)
        with self.lock:
            self.gate.on_image(now, stamp_ns)
        route, _ = self.route_tracker.route(self.pose, self.speed)
        self.worker.submit(Frame(stamp_ns, image, msg.encoding, now, self.speed, route))

    def on_speed(self, msg: Float32):
        """Keep the newest finite speed (m/s) for heads that use it."""
        speed = float(msg.data)
        if not math.isfinite(speed):
            self.reject('speed_not_finite', f'speed {speed}')
            return
        self.speed = speed

    def on_plan(self, msg):
        """Follow a new global plan (the route commands come from it and the odometry)."""
        try:
            plan = decode_plan(msg)
        except RouteMessageError as error:
            self.reject('global_plan_malformed', f'global plan: {error}')
            return
        self.route_tracker.set_plan(plan)
        self.get_logger().info(f'global plan: {len(plan)} target points, {plan.length:.0f} m')

    def on_odometry(self, msg: Odometry):
        """Keep the newest finite pose for the route command."""
        position, q = msg.pose.pose.position, msg.pose.pose.orientation
        yaw = math.atan2(2.0 * (q.w * q.z + q.x * q.y), 1.0 - 2.0 * (q.y * q.y + q.z * q.z))
        pose = (float(position.x), float(position.y), yaw)
        if not all(math.isfinite(value) for value in pose):
            self.reject('odometry_not_finite', f'odometry pose {pose}')
            return
        self.pose = pose

    def reject(self, reason: str, detail: str):
        """Count one refused input; log the first of each reason (diagnostics have the rest)."""
        self.rejected[reason] += 1
        if self.rejected[reason] == 1:
            self.get_logger().warning(f'ignored {detail}; further ones for this reason are '
                                      f'only counted')

    def on_expert(self, msg):
        """Keep the newest expert control for the annotated image."""
        try:
            self.expert = self.label_codec.decode(msg)
        except ValueError:
            self.expert = None

    def on_emergency_stop(self, msg: Bool):
        """Latch (True) or release (False) the emergency stop."""
        with self.lock:
            changed = self.gate.emergency_stopped != bool(msg.data)
            brake = self.gate.set_emergency_stop(msg.data)
            if brake is not None:
                self._publish(brake)
        if changed:
            self.get_logger().warning(f'emergency stop {"ON" if msg.data else "released"}')

    def on_enable(self, request, response):
        """Enable (True) or disable (False: full brake) driving."""
        with self.lock:
            brake = self.gate.set_enabled(request.data)
            if brake is not None:
                self._publish(brake)
        response.success = True
        response.message = 'driving enabled' if request.data else 'driving disabled (braking)'
        self.get_logger().info(response.message)
        return response

    # -- outputs -------------------------------------------------------------------------
    def on_result(self, result):
        """Gate a model output and publish it at once (worker thread)."""
        with self.lock:
            command = self.gate.on_inference(result.stamp_ns, result.control, time.monotonic(),
                                             source_received=result.received)
            self._publish(command)
        if command.reason in BRAKING_REASONS:
            self.get_logger().warning(
                f'safety gate: {command.reason} (model said {result.control.as_array()})',
                throttle_duration_sec=LOG_THROTTLE_S)
        elif command.reason is not None:
            self.get_logger().info(
                f'safety gate adjusted the command ({command.reason}); interventions so far: '
                f'{dict(self.gate.interventions)}', throttle_duration_sec=5 * LOG_THROTTLE_S)
        self.publish_path(command, result)
        if self.publish_annotated and result.rgb is not None \
                and self.image_pub.get_subscription_count() > 0:
            self.publish_annotated_image(result, command)

    def on_inference_error(self, error: Exception):
        """Log a failed inference; the gate brakes once inferences go stale."""
        self.get_logger().error(f'inference failed: {error!r}',
                                throttle_duration_sec=LOG_THROTTLE_S)

    def on_gate_timer(self):
        """Publish a full brake while the outputs are stale (silent otherwise)."""
        with self.lock:
            command = self.gate.command(time.monotonic())
            if command is not None:
                self._publish(command)
        reason = command.reason if command is not None else None
        if reason != self.last_reason:
            if reason is not None:
                self.get_logger().warning(f'safety gate braking: {reason}')
            else:
                self.get_logger().info(f'safety gate released ({self.last_reason} cleared)')
            self.last_reason = reason

    def _publish(self, command):
        """Send one control (caller holds the lock)."""
        if self.closed:
            return
        self.control_pub.publish(self.codec.encode(command.control, command.stamp_ns))
        self.published += 1

    def publish_path(self, command, result=None):
        """Publish the path the gated steering implies, waypoints and a text, for RViz."""
        if self.marker_pub.get_subscription_count() == 0:
            return
        control = command.control
        speed = self.speed if math.isfinite(self.speed) else 0.0
        line = Marker()
        line.header.frame_id = self.role
        ns_to_stamp(command.stamp_ns, line.header.stamp)
        line.ns, line.id, line.type, line.action = 'predicted_path', 0, Marker.LINE_STRIP, \
            Marker.ADD
        line.pose.orientation.w = 1.0
        line.scale.x = 0.3
        braking = command.reason in BRAKING_REASONS
        line.color.r, line.color.g, line.color.b, line.color.a = \
            (1.0, 0.1, 0.1, 1.0) if braking else (0.1, 0.9, 0.2, 1.0)
        line.points = [Point(x=float(x), y=float(y), z=0.2) for x, y in steering_path(
            control.steer, speed, self.max_steer_deg, self.wheelbase)]
        text = Marker()
        text.header = line.header
        text.ns, text.id, text.type, text.action = 'predicted_path', 1, \
            Marker.TEXT_VIEW_FACING, Marker.ADD
        text.pose.position.z = 2.5
        text.pose.orientation.w = 1.0
        text.scale.z = 0.8
        text.color = line.color
        text.text = (f'steer {control.steer:+.2f} thr {control.throttle:.2f} '
                     f'brk {control.brake:.2f}' + (f' [{command.reason}]' if braking else ''))
        markers = [line, text]
        if result is not None and result.route is not None:
            text.text = f'{result.route.command.name}: ' + text.text
        if result is not None and result.waypoints is not None:
            text.text += f' target {result.target_speed:.1f} m/s'
            points = Marker()
            points.header = line.header
            points.ns, points.id, points.type, points.action = 'predicted_path', 2, \
                Marker.LINE_STRIP, Marker.ADD
            points.pose.orientation.w = 1.0
            points.scale.x = 0.2
            points.color.r, points.color.g, points.color.b, points.color.a = 0.1, 0.6, 1.0, 1.0
            path = [(0.0, 0.0)] + [tuple(point) for point in result.waypoints]
            points.points = [Point(x=float(x), y=float(y), z=0.3) for x, y in path
                             if math.isfinite(x) and math.isfinite(y)]
            markers.append(points)
        self.marker_pub.publish(MarkerArray(markers=markers))

    def publish_annotated_image(self, result, command):
        """Publish the frame with the prediction, the expert and the gate drawn on it."""
        expert = None
        if self.expert is not None:
            stamp_ns, control = self.expert
            if abs(stamp_ns - result.stamp_ns) <= self.gate.config.max_age_s * 1e9:
                expert = control
        frame = annotate_frame(result.rgb, result.control, self.speed, result.stamp_ns / 1e9,
                               expert=expert, gate_reason=command.reason,
                               latency_s=result.latency_s,
                               command=result.route.command.name if result.route else None,
                               waypoints=result.waypoints, target_speed=result.target_speed,
                               lookahead=result.lookahead)
        image = Image()
        ns_to_stamp(result.stamp_ns, image.header.stamp)
        image.header.frame_id = self.camera_frame
        image.encoding = 'bgr8'
        image.height, image.width, image.step, image.data = raw_fields(frame)
        self.image_pub.publish(image)

    def publish_diagnostics(self):
        """Publish latency, rate, drops, interventions and the gate state on /diagnostics."""
        stats = self.worker.stats()
        with self.lock:
            interventions = dict(self.gate.interventions)
            reason = self.gate.braking_reason(time.monotonic())
            enabled, stopped = self.gate.enabled, self.gate.emergency_stopped
        status = DiagnosticStatus()
        status.name = 'llava_drive policy'
        status.hardware_id = self.role
        if reason is None:
            status.level, status.message = DiagnosticStatus.OK, 'driving'
        else:
            status.level, status.message = DiagnosticStatus.WARN, f'braking: {reason}'
        values = {
            'enabled': enabled, 'emergency_stop': stopped,
            'inference_latency_p50_ms': stats['latency_p50_s'] * 1000,
            'inference_latency_p99_ms': stats['latency_p99_s'] * 1000,
            'forward_p50_ms': stats['forward_p50_s'] * 1000,
            'forward_p99_ms': stats['forward_p99_s'] * 1000,
            'frames_per_s': stats['frames_per_s'],
            'frames_processed': stats['processed'],
            'frames_dropped_stale': stats['dropped_stale'],
            'inference_errors': stats['errors'],
            'controls_published': self.published,
            'inputs_rejected': sum(self.rejected.values()),
        }
        values.update({f'rejected_{reason}': count for reason, count in self.rejected.items()})
        values.update({f'intervention_{name}': count for name, count in interventions.items()})
        status.values = [KeyValue(key=key, value=f'{value:.2f}' if isinstance(value, float)
                                  else str(value)) for key, value in values.items()]
        array = DiagnosticArray()
        array.header.stamp = self.get_clock().now().to_msg()
        array.status = [status]
        self.diagnostics_pub.publish(array)

    def destroy_node(self):
        """Stop inference and send a final full brake (the bridge keeps the last control)."""
        if not self.closed and hasattr(self, 'worker'):
            self.worker.stop()
            with self.lock:
                try:
                    self.control_pub.publish(self.codec.encode(FULL_BRAKE,
                                                               self.gate.image_stamp_ns))
                    self.control_pub.wait_for_all_acked(Duration(seconds=2.0))
                except Exception as error:  # noqa: B902 - context already shut down
                    self.get_logger().warning(f'final brake not sent: {error}')
                self.closed = True
        super().destroy_node()


def main(args=None):
    """Run the policy node; Ctrl-C and SIGTERM still let it send its final brake."""
    run_node(Policy, args)


if __name__ == '__main__':
    main()
