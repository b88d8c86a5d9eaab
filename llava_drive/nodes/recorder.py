"""
Recorder node: pairs camera frames with the control in effect and writes bag format v1.

Services (std_srvs/Trigger), in any order: ``~/start``, ``~/stop`` (closes the bag),
``~/split`` (closes the bag and continues in the next one). Every recording after the first
goes to a new bag directory beside it, ``<bag_path>_001``, ``_002``, ...: ``~/start`` after
``~/stop`` never reopens a closed bag. A recorder that cannot open its first bag (``autostart``)
exits with status 2 and one line. Status as JSON on ``~/status`` (``RecorderStatus``).
Nothing bad on the wire crashes it: each rejected frame (unknown encoding, a size outside
``llava_drive.image_codec``'s bounds, data that does not match its step), control, speed,
odometry or episode marker is counted by reason, logged the first time each reason is seen,
written into the bag's recording summary, and otherwise ignored (the newest valid speed and
odometry stay in effect).
"""
from collections import Counter
import math
from pathlib import Path
import time

from llava_drive.bag.format import OdometrySample
from llava_drive.bag.writer import (BagWriteError, BagWriter, BagWriterConfig, IMAGE_FORMATS,
                                    SampleRejected)
from llava_drive.image_codec import decode_raw, ImageError
from llava_drive.nodes.common import declare_parameters, ParameterSpec as Param, run_node
from llava_drive.nodes.common import topic_or_default
from llava_drive.nodes.control_codec import ControlCodec, stamp_to_ns, WIRE_TYPES
from llava_drive.nodes.interfaces import (CONTROL_QOS, DEFAULT_ROLE_NAME, EXPERT_CONTROL_TOPIC,
                                          RECORDER_FRAME_DONE, RECORDER_NODE, RECORDER_SPLIT,
                                          RECORDER_START, RECORDER_STATUS, RECORDER_STOP,
                                          reliable_qos, SIM_EPISODE_TOPIC, vehicle_topics)
from llava_drive.nodes.route_codec import decode_lights, RouteMessageError
from llava_drive.nodes.status import PayloadError, RecorderStatus, SimEpisode
from llava_drive.recording.pairing import Pairer, PairingConfig
from nav_msgs.msg import Odometry
from rclpy.node import Node
from sensor_msgs.msg import Image
from std_msgs.msg import Float32, Header, String
from std_srvs.srv import Trigger


# Every parameter of the node; ``runtime`` ones are applied by Recorder.apply_parameter.
PARAMETERS = [
    Param('role_name', DEFAULT_ROLE_NAME, 'CARLA role name of the ego vehicle'),
    Param('image_topic', '', 'sensor_msgs/Image topic; "" = the camera of role_name'),
    Param('label_topic', EXPERT_CONTROL_TOPIC,
          "control topic whose commands are the labels: the expert's clean command; use "
          "role_name's vehicle_control_cmd to record whatever drives the car"),
    Param('control_wire', 'auto', f'control message type, one of {WIRE_TYPES}'),
    Param('bag_path', 'bags/run', 'output bag directory (must not exist or be empty); '
          '~/split and ~/start after ~/stop continue in <bag_path>_001, _002, ...'),
    Param('image_format', BagWriterConfig.image_format, f'one of {IMAGE_FORMATS}'),
    Param('jpeg_quality', BagWriterConfig.jpeg_quality, 'JPEG quality', 1, 100),
    Param('max_control_age', PairingConfig.max_control_age_ns / 1e9,
          'seconds (stamp time): a frame whose newest earlier control is older is not written',
          0.0, 10.0),
    Param('max_stamp_gap', 300.0, 'seconds (stamp time): a frame, control or episode marker '
          'further than this from the newest frame is refused (one bad clock must not poison '
          'the recording)', 1.0, 1e9, runtime=True),
    Param('max_duration', 0.0, 'stop after this many seconds of stamps; 0 = no limit',
          0.0, 1e6, runtime=True),
    Param('exit_when_done', False, 'exit once max_duration is recorded (ends a launch)',
          runtime=True),
    Param('flush_interval', BagWriterConfig.flush_interval_s,
          'seconds between flushes to disk (SIGKILL loses at most this '
          'much)', 0.05, 60.0),
    Param('fsync', BagWriterConfig.fsync, 'fsync on every flush (power-loss safety)'),
    Param('image_queue_depth', 30, 'reliable image subscription depth (frames buffered while '
          'writing)', 1, 1000),
    Param('autostart', True, 'start recording at once'),
    Param('status_period', 1.0, 'seconds between ~/status messages', 0.01, 60.0),
]


class Recorder(Node):
    """Writes image/control pairs to rosbag2 bags (architecture: Bag format v1)."""

    def __init__(self, **node_options):
        super().__init__(RECORDER_NODE, **node_options)
        p = declare_parameters(self, PARAMETERS, self.apply_parameter)
        self.role = p['role_name']
        topics = vehicle_topics(self.role)
        self.image_topic = topic_or_default(p['image_topic'], topics.camera_image)
        label_topic, wire = p['label_topic'], p['control_wire']
        self.bag_path = Path(p['bag_path'])
        self.image_format = p['image_format']
        if self.image_format not in IMAGE_FORMATS:
            raise ValueError(f'image_format must be one of {IMAGE_FORMATS}, got '
                             f'{self.image_format!r}')
        self.jpeg_quality = p['jpeg_quality']
        self.max_control_age, self.max_stamp_gap = p['max_control_age'], p['max_stamp_gap']
        self.max_duration, self.exit_when_done = p['max_duration'], p['exit_when_done']
        self.flush_interval, self.fsync = p['flush_interval'], p['fsync']
        depth, autostart, status_period = (p['image_queue_depth'], p['autostart'],
                                           p['status_period'])

        self.codec = ControlCodec(wire)
        self.pairer = None
        self.writer = None
        self.bag_index = 0
        self.rejected = Counter()  # reasons seen before the pairer (decode, wire errors)
        self.pairs_written = 0
        self.first_stamp = None
        self.last_stamp = None
        self.newest_frame_stamp = None
        self.stopping = False
        self.speed = math.nan
        self.odometry = None
        self.error = None
        self._written_bags = []
        self.last_summary = None

        qos = reliable_qos(depth)
        self.create_subscription(Image, self.image_topic, self.on_image, qos)
        self.create_subscription(self.codec.msg_type, label_topic, self.on_control, qos)
        self.create_subscription(Float32, topics.speedometer, self.on_speed, qos)
        self.create_subscription(Odometry, topics.odometry, self.on_odometry, qos)
        self.create_subscription(String, SIM_EPISODE_TOPIC, self.on_episode, 10)
        # Town worlds: light states go into the bag beside the pairs (the plan comes with the
        # episode start marker).
        self.create_subscription(String, topics.traffic_lights, self.on_traffic_lights, qos)
        self.status_pub = self.create_publisher(String, f'~/{RECORDER_STATUS}', 10)
        # Every frame taken (written, waiting or rejected) is acknowledged, so a synchronous
        # simulator can wait for the recorder and no frame is lost (sim_bridge parameter
        # synchronous_mode_wait_for_ack_topic).
        self.done_pub = self.create_publisher(Header, f'~/{RECORDER_FRAME_DONE}', CONTROL_QOS)
        self.create_service(Trigger, f'~/{RECORDER_START}', self.srv_start)
        self.create_service(Trigger, f'~/{RECORDER_STOP}', self.srv_stop)
        self.create_service(Trigger, f'~/{RECORDER_SPLIT}', self.srv_split)
        self.create_timer(status_period, self.publish_status)
        self.create_timer(0.1, self.expire_pending)
        self.get_logger().info(
            f'recording {self.image_topic} + {label_topic} ({self.codec.name}) '
            f'as {self.image_format} to {self.bag_path}')
        if autostart:
            message = self.start()
            if self.writer is None:
                # Exit non-zero (run_node prints one line), so a launch with
                # on_exit=Shutdown ends instead of a simulator running for nothing.
                raise ValueError(message)

    def apply_parameter(self, name: str, value) -> None:
        """Apply a runtime parameter set with ``ros2 param set`` (rclpy checked its range)."""
        setattr(self, name, value)
        self.get_logger().info(f'parameter {name} set to {value!r}')

    # -- recording lifecycle -------------------------------------------------------------
    def current_path(self) -> Path:
        """Return the bag directory for the current split index."""
        if self.bag_index == 0:
            return self.bag_path
        return self.bag_path.with_name(f'{self.bag_path.name}_{self.bag_index:03d}')

    def start(self) -> str:
        """Open a bag and start pairing; return a message for the caller."""
        if self.writer is not None:
            return f'already recording to {self.writer.config.path}'
        # After a stop (or split) the next recording is the next split, never the closed bag.
        while str(self.current_path()) in self._written_bags:
            self.bag_index += 1
        config = BagWriterConfig(
            path=self.current_path(), image_format=self.image_format,
            jpeg_quality=self.jpeg_quality, image_topic=self.image_topic,
            role_name=self.role, flush_interval_s=self.flush_interval, fsync=self.fsync)
        try:
            self.writer = BagWriter(config)
        except (BagWriteError, OSError, ValueError) as error:
            self.error = str(error)
            self.get_logger().error(f'cannot start recording: {error}')
            return f'cannot start: {error}'
        self.writer.set_recording_info(self.recording_info())
        self.pairer = Pairer(PairingConfig(
            max_control_age_ns=int(self.max_control_age * 1e9)))
        self.first_stamp = self.last_stamp = self.newest_frame_stamp = None
        self.pairs_written = 0
        self.rejected.clear()
        self.error = None
        self.get_logger().info(f'recording to {config.path}')
        return f'recording to {config.path}'

    def stop(self) -> str:
        """Write what can still be paired, close the bag, and return a summary line."""
        if self.writer is None or self.stopping:
            return 'not recording'
        self.stopping = True
        for pair in self.pairer.flush():
            if self.writer is not None:
                self.write(pair)
        summary = self.summary()
        final = self.summary(include_writer=True)
        path = self.writer.config.path
        try:
            self.writer.close(summary)
        except (BagWriteError, OSError) as error:
            self.error = self.error or str(error)
            self.get_logger().error(f'closing {path} failed: {error}')
        if self.writer.error is not None:
            # The writer cut the bag back to its last flushed chunk: report what is on disk
            # and what was lost, not what was acknowledged (llava_drive.bag.writer).
            self.error = self.error or self.writer.error
            self.pairs_written = self.writer.pairs_written
            final.update(error=self.error, pairs_written=self.writer.pairs_written,
                         lost=self.writer.loss)
        self.writer = None
        self.stopping = False
        self._written_bags.append(str(path))
        self.last_summary = final
        message = (f'closed {path}: {final["pairs_written"]} pairs, '
                   f'rejected {final["rejected"] or "none"}')
        self.get_logger().info(message)
        return message

    def summary(self, include_writer: bool = False) -> dict:
        """
        Return pairs written and rejections by reason (the writer adds its own on close).

        :param include_writer: also count what the bag writer rejected (for the status).
        """
        rejected = Counter(self.rejected)
        if self.pairer is not None:
            rejected.update(self.pairer.rejected)
        if include_writer and self.writer is not None:
            rejected.update(self.writer.rejected)
        return {'pairs_written': self.pairs_written, 'rejected': dict(sorted(rejected.items())),
                'error': self.error}

    def recording_info(self) -> dict:
        """Return the recording configuration written at the start of each bag."""
        return {'node': self.get_fully_qualified_name(),
                'parameters': {name: param.value for name, param in self._parameters.items()},
                'control_wire': self.codec.name}

    # -- callbacks -----------------------------------------------------------------------
    def on_image(self, msg: Image):
        """Validate a frame, queue it for pairing, and acknowledge it."""
        try:
            self.take_image(msg)
        finally:
            self.done_pub.publish(msg.header)

    def take_image(self, msg: Image):
        """Validate a frame and queue it for pairing."""
        if self.writer is None:
            return
        stamp_ns = stamp_to_ns(msg.header.stamp)
        problem = self.implausible_stamp(stamp_ns)
        if problem is not None:
            self.reject('implausible_image_stamp', problem)
            return
        try:
            image = decode_raw(msg.encoding, msg.height, msg.width, msg.step, msg.data)
        except ImageError as error:
            self.reject(error.reason, str(error))
            return
        frame = (image, msg.encoding, self.speed, self.odometry, msg.header.frame_id)
        self.newest_frame_stamp = max(stamp_ns, self.newest_frame_stamp or stamp_ns)
        self.write_all(self.pairer.add_frame(stamp_ns, frame))

    def on_control(self, msg):
        """Decode a label and complete the frames waiting for it."""
        if self.writer is None:
            return
        try:
            stamp_ns, control = self.codec.decode(msg)
        except ValueError as error:
            self.reject('malformed_control', str(error))
            return
        problem = self.implausible_stamp(stamp_ns)
        if problem is not None:
            self.reject('implausible_control_stamp', problem)
            return
        problem = control.problem()
        if problem is not None:
            self.get_logger().warning(f'label rejected ({problem}) at {stamp_ns} ns: {control}',
                                      throttle_duration_sec=2.0)
        self.write_all(self.pairer.add_control(stamp_ns, control))

    def on_speed(self, msg: Float32):
        """Remember the newest speed (m/s); it is written with the next frame."""
        speed = float(msg.data)
        if not math.isfinite(speed):
            self.reject('speed_not_finite', f'speed {speed}')
            return
        self.speed = speed

    def on_odometry(self, msg: Odometry):
        """Remember the newest odometry; it is written with the next frame."""
        pose, twist = msg.pose.pose, msg.twist.twist
        sample = OdometrySample(
            position=(pose.position.x, pose.position.y, pose.position.z),
            orientation=(pose.orientation.x, pose.orientation.y, pose.orientation.z,
                         pose.orientation.w),
            linear_velocity=(twist.linear.x, twist.linear.y, twist.linear.z),
            angular_velocity=(twist.angular.x, twist.angular.y, twist.angular.z),
            frame_id=msg.header.frame_id, child_frame_id=msg.child_frame_id)
        values = (sample.position + sample.orientation + sample.linear_velocity
                  + sample.angular_velocity)
        if not all(math.isfinite(value) for value in values):
            self.reject('odometry_not_finite', f'odometry {values}')
            return
        self.odometry = sample

    def on_episode(self, msg: String):
        """Write a simulator episode marker into the bag."""
        if self.writer is None:
            return
        try:
            marker = SimEpisode.from_json(msg.data)
        except PayloadError as error:
            self.reject(f'episode_marker_{error.reason}', str(error))
            return
        problem = self.implausible_stamp(marker.stamp_ns)
        if problem is not None:
            self.reject('episode_marker_implausible_stamp', problem)
            return
        try:
            self.writer.write_episode_marker(marker.stamp_ns, marker.to_dict())
        except SampleRejected as error:  # counted by the writer, reported at close
            self.get_logger().warning(f'episode marker not written: {error}',
                                      throttle_duration_sec=2.0)
        except (BagWriteError, OSError) as error:
            self.fail(error)

    def on_traffic_lights(self, msg: String):
        """Write one frame's traffic light states into the bag."""
        if self.writer is None:
            return
        try:
            lights = decode_lights(msg)
            self.writer.write_traffic_lights(lights['stamp_ns'], lights)
        except RouteMessageError as error:
            self.reject('malformed_traffic_lights', str(error))
        except SampleRejected as error:  # counted by the writer, reported at close
            self.get_logger().warning(f'traffic lights not written: {error}',
                                      throttle_duration_sec=2.0)
        except (BagWriteError, OSError) as error:
            self.fail(error)

    def implausible_stamp(self, stamp_ns: int):
        """
        Return why ``stamp_ns`` cannot belong to this recording, or None.

        One far-future frame would otherwise become the newest stamp and make every later
        frame look backwards; the reference is the newest frame taken.
        """
        reference = self.newest_frame_stamp
        if reference is not None and abs(stamp_ns - reference) > self.max_stamp_gap * 1e9:
            return (f'stamp {stamp_ns} ns is {(stamp_ns - reference) / 1e9:+.0f} s from the '
                    f'newest frame {reference} ns (max_stamp_gap {self.max_stamp_gap} s)')
        return None

    def expire_pending(self):
        """Settle frames whose control never came (a stalled or silent driver)."""
        if self.writer is not None and self.newest_frame_stamp is not None:
            self.write_all(self.pairer.expire(self.newest_frame_stamp))

    def write_all(self, pairs):
        """Write each completed pair, stopping cleanly on a storage error."""
        for pair in pairs:
            if self.writer is None:
                return
            self.write(pair)

    def write(self, pair):
        """Write one pair; a storage error stops the recording, keeping what is on disk."""
        image, encoding, speed, odometry, frame_id = pair.frame
        try:
            self.writer.write_pair(pair.stamp_ns, image, encoding, pair.control, speed,
                                   odometry=odometry, frame_id=frame_id)
        except SampleRejected as error:  # counted by the writer, reported at close
            self.get_logger().warning(f'pair not written: {error}', throttle_duration_sec=2.0)
            return
        except (BagWriteError, OSError) as error:
            self.fail(error)
            return
        self.pairs_written += 1
        if self.first_stamp is None:
            self.first_stamp = pair.stamp_ns
        self.last_stamp = pair.stamp_ns
        span_ns = self.last_stamp - self.first_stamp
        if not self.stopping and self.max_duration and span_ns >= self.max_duration * 1e9:
            self.get_logger().info(f'max_duration {self.max_duration} s reached')
            self.stop()
            if self.exit_when_done:
                self.context.try_shutdown()  # spin returns; main() exits cleanly

    def fail(self, error):
        """Stop recording after a storage error (full disk, unwritable path)."""
        self.error = str(error)
        self.get_logger().error(f'recording stopped: {error}. What was written stays '
                                f'readable (run "llava-drive bag recover" if it is not).')
        self.stop()

    def reject(self, reason: str, detail: str):
        """Count one rejected input; log the first of each reason (the status has the counts)."""
        self.rejected[reason] += 1
        if self.rejected[reason] == 1:
            self.get_logger().warning(f'rejected ({reason}): {detail}; further ones for this '
                                      f'reason are only counted')

    # -- services and status -------------------------------------------------------------
    def srv_start(self, request, response):
        """Handle ``~/start``."""
        response.message = self.start()
        response.success = self.writer is not None
        return response

    def srv_stop(self, request, response):
        """Handle ``~/stop``."""
        response.message = self.stop()
        response.success = True
        return response

    def srv_split(self, request, response):
        """Handle ``~/split``: close this bag and continue in the next one."""
        if self.writer is None:
            response.success, response.message = False, 'not recording'
            return response
        closed = self.stop()
        response.message = f'{closed}; {self.start()}'
        response.success = self.writer is not None
        return response

    def publish_status(self):
        """Publish the recording status as JSON (used by ``llava-drive record``)."""
        try:
            status = self.status()
        except PayloadError as error:  # a bug here must not end a recording
            self.get_logger().error(f'status not published: {error}', throttle_duration_sec=60)
            return
        self.status_pub.publish(String(data=status.to_json()))

    def status(self) -> RecorderStatus:
        """Return the recording status."""
        span = 0.0
        if self.first_stamp is not None:
            span = (self.last_stamp - self.first_stamp) / 1e9
        summary = self.last_summary if self.writer is None and self.last_summary \
            else self.summary(include_writer=True)
        return RecorderStatus(**summary, recording=self.writer is not None,
                              bag=str(self.current_path()), span_s=span,
                              last_stamp_ns=self.last_stamp, cpu_s=time.process_time(),
                              pending=self.pairer.pending if self.pairer else 0,
                              closed_bags=list(self._written_bags))

    def destroy_node(self):
        """Close the bag before the node goes away (Ctrl-C, SIGTERM, shutdown)."""
        self.stop()
        super().destroy_node()


def main(args=None):
    """Run the recorder node."""
    run_node(Recorder, args)


if __name__ == '__main__':
    main()
