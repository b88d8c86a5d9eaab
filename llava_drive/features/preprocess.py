"""
Camera frames to vision-tower input with torch ops only, keeping the whole field of view.

LLaVA's own image processor resizes the short side and centre-crops, which drops 25% of the
width of an 800x600 frame. Here a frame is either letterboxed to a square with the
processor's mean colour (``'pad'``, LLaVA-1.5's own ``expand2square`` training policy) or
squashed to a square (``'resize'``), then resized with antialiased bicubic interpolation and
normalised with the processor's mean and std. Batched, on any device, no PIL.
"""
from dataclasses import dataclass

from llava_drive.features.spec import PREPROCESSING_POLICIES
import numpy as np


@dataclass(frozen=True)
class ImageNormalization:
    """
    The image settings a vision tower expects.

    :param size: side of the square input in pixels.
    :param mean: per-channel mean (RGB, on the 0..1 scale).
    :param std: per-channel std (RGB, on the 0..1 scale).
    """

    size: int
    mean: tuple
    std: tuple

    def __post_init__(self):
        """Validate the values."""
        if not isinstance(self.size, int) or self.size < 1:
            raise ValueError('size must be a positive int, got %r' % (self.size,))
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError('mean and std need 3 values, std > 0; got %r, %r'
                             % (self.mean, self.std))

    @classmethod
    def from_image_processor(cls, image_processor) -> 'ImageNormalization':
        """
        Read size, mean and std from a Hugging Face image processor (CLIP-style).

        :param image_processor: e.g. ``processor.image_processor``.
        """
        crop = getattr(image_processor, 'crop_size', None) or {}
        size = getattr(image_processor, 'size', None) or {}
        if getattr(image_processor, 'do_center_crop', False) and crop.get('height'):
            side = crop['height']
        elif size.get('shortest_edge'):
            side = size['shortest_edge']
        elif size.get('height'):
            side = size['height']
        else:
            raise ValueError('cannot read the input size from image processor %s'
                             % type(image_processor).__name__)
        return cls(size=int(side), mean=tuple(float(v) for v in image_processor.image_mean),
                   std=tuple(float(v) for v in image_processor.image_std))


def frames_to_tensor(frames_rgb, device='cpu'):
    """
    Stack RGB uint8 frames into a uint8 [B, 3, H, W] tensor (a view, channels first).

    :param frames_rgb: an HxWx3 uint8 array, a BxHxWx3 array, or a list of HxWx3 arrays of
        one size.
    :param device: torch device for the result.
    """
    import torch

    if isinstance(frames_rgb, np.ndarray):
        batch = frames_rgb[None] if frames_rgb.ndim == 3 else frames_rgb
    else:
        if len(frames_rgb) == 0:
            raise ValueError('no frames to preprocess')
        shapes = {np.shape(frame) for frame in frames_rgb}
        if len(shapes) != 1:
            raise ValueError('frames in one batch must share a size, got %s' % sorted(shapes))
        batch = np.stack(frames_rgb)
    if batch.ndim != 4 or batch.shape[-1] != 3 or batch.dtype != np.uint8:
        raise ValueError('expected HxWx3 uint8 RGB frames, got shape %s dtype %s'
                         % (batch.shape, batch.dtype))
    tensor = torch.from_numpy(np.ascontiguousarray(batch)).to(device)
    return tensor.permute(0, 3, 1, 2)


def preprocess_frames(frames_rgb, normalization: ImageNormalization, policy: str = 'pad',
                      device='cpu', dtype=None):
    """
    Turn RGB frames into normalised ``pixel_values`` [B, 3, size, size].

    :param frames_rgb: HxWx3 uint8 RGB frames (see :func:`frames_to_tensor`).
    :param normalization: target size, mean and std.
    :param policy: ``'pad'`` (letterbox with the mean colour) or ``'resize'`` (squash).
    :param device: torch device.
    :param dtype: torch dtype of the result (float32 when None).
    """
    import torch

    if policy not in PREPROCESSING_POLICIES:
        raise ValueError('preprocessing policy must be one of %s, got %r'
                         % (PREPROCESSING_POLICIES, policy))
    frames = frames_to_tensor(frames_rgb, device)  # uint8 [B, 3, H, W]
    mean = torch.tensor(normalization.mean, device=frames.device).view(1, 3, 1, 1) * 255.0
    std = torch.tensor(normalization.std, device=frames.device).view(1, 3, 1, 1) * 255.0
    size = normalization.size
    # One frame at a time: a float copy of a whole batch at camera resolution would cost
    # tens of MB per frame for no speed gain (resizing is memory-bound).
    pixel_values = torch.empty((frames.shape[0], 3, size, size), device=frames.device)
    for index, frame in enumerate(frames):
        pixel_values[index] = _square_resize(frame[None], mean, policy, size)[0]
    pixel_values.sub_(mean).div_(std)
    return pixel_values.to(dtype or torch.float32)


def _square_resize(frame, mean, policy: str, size: int):
    """Letterbox (``'pad'``) or keep (``'resize'``) a uint8 [1, 3, H, W] frame, resize it."""
    import torch.nn.functional as functional

    height, width = frame.shape[-2:]
    if policy == 'pad' and height != width:
        side = max(height, width)
        # Same placement as LLaVA's expand2square: centred, rounding down on the top/left.
        top, left = (side - height) // 2, (side - width) // 2
        image = mean.round().expand(1, 3, side, side).clone()
        image[:, :, top:top + height, left:left + width] = frame  # converts to float
    else:
        image = frame.float()
    if image.shape[-2:] != (size, size):
        image = functional.interpolate(image, size=(size, size), mode='bicubic',
                                       align_corners=False, antialias=True)
        # The reference processors resize uint8 images: round and clamp the same way.
        image = image.round().clamp(0.0, 255.0)
    return image
