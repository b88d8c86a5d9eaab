"""The one MP4 writer: ``bag review`` and the evaluation videos."""
from pathlib import Path
from typing import Optional

import cv2
import numpy as np


class Mp4Writer:
    """
    An MP4 (``mp4v``) written frame by frame; opened at the first frame (its size fixes it).

    :param path: the ``.mp4`` file (its directory is created)
    :param fps: frames per second
    """

    def __init__(self, path: Path, fps: float = 20.0):
        self.path = Path(path)
        self.fps = fps
        self.frames = 0
        self._writer = None
        self._size = None

    def write(self, frame_bgr: np.ndarray) -> None:
        """
        Append a BGR frame (resized to the first frame's size if it differs).

        :param frame_bgr: ``H x W x 3`` uint8
        :raises RuntimeError: OpenCV cannot write the file
        """
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            height, width = frame_bgr.shape[:2]
            self._size = (width - width % 2, height - height % 2)  # codecs like even sizes
            self._writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*'mp4v'),
                                           self.fps, self._size)
            if not self._writer.isOpened():
                raise RuntimeError(f'cv2.VideoWriter cannot write {self.path}')
        if (frame_bgr.shape[1], frame_bgr.shape[0]) != self._size:
            frame_bgr = cv2.resize(frame_bgr, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(np.ascontiguousarray(frame_bgr))
        self.frames += 1

    def close(self) -> Optional[Path]:
        """Finish the file; return its path, or None when no frame was written."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        return self.path if self.frames else None

    def discard(self) -> None:
        """Close and delete the file."""
        self.close()
        self.path.unlink(missing_ok=True)
        self.frames = 0
