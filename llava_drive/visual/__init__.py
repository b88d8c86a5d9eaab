"""
Pictures and videos of driving, without ROS: one overlay style and one MP4 writer.

Used by ``bag review``, the policy's annotated image and the evaluation video. Public API:
:func:`~llava_drive.visual.overlay.draw_overlay` (a frame with a control drawn on it),
:func:`~llava_drive.visual.overlay.draw_steer_arrow`,
:func:`~llava_drive.visual.overlay.draw_waypoint_inset`,
:func:`~llava_drive.visual.overlay.draw_border`, :func:`~llava_drive.visual.overlay.canvas`
(bounded size and aspect ratio), :class:`~llava_drive.visual.video.Mp4Writer`.
"""
