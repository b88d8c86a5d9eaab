"""Tensor preprocessing: matches the model's own CLIPImageProcessor, keeps the whole frame."""
from fixtures_llava import tiny_llava_dir  # noqa: F401
from llava_drive.features.preprocess import ImageNormalization, preprocess_frames
import numpy as np
import pytest

NORM = ImageNormalization(size=112, mean=(0.48145466, 0.4578275, 0.40821073),
                          std=(0.26862954, 0.26130258, 0.27577711))
# One uint8 step after normalisation is 1 / 255 / std ~ 0.015.
ONE_LEVEL = 1.0 / 255.0 / min(NORM.std)


def textured_frame(height, width, seed=0):
    """Return a smooth-plus-noise RGB frame, like a camera image."""
    rows, cols = np.mgrid[0:height, 0:width]
    frame = np.stack([cols * 255.0 / width, rows * 255.0 / height,
                      128 + 100 * np.sin(cols / 7.0) * np.cos(rows / 5.0)], axis=-1)
    noise = np.random.default_rng(seed).normal(0, 20, frame.shape)
    return np.clip(frame + noise, 0, 255).astype(np.uint8)


@pytest.mark.parametrize('side', [112, 200, 333])
def test_matches_the_models_image_processor_on_square_images(tiny_llava_dir, side):  # noqa
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_llava_dir, local_files_only=True)
    normalization = ImageNormalization.from_image_processor(processor.image_processor)
    assert normalization == NORM
    frame = textured_frame(side, side, seed=side)
    reference = processor.image_processor(images=[frame], return_tensors='pt')['pixel_values']
    ours = preprocess_frames([frame], normalization, 'pad')
    assert ours.shape == reference.shape == (1, 3, 112, 112)
    difference = (ours - reference).abs()
    # Tolerance: at most 2 uint8 levels anywhere (PIL and torch bicubic kernels round
    # differently), under 0.2 level on average; identical without resizing.
    assert float(difference.max()) <= 2 * ONE_LEVEL + 1e-4
    assert float(difference.mean()) <= 0.2 * ONE_LEVEL
    if side == 112:
        assert float(difference.max()) < 1e-5


def test_pad_keeps_the_whole_field_of_view():
    frame = np.full((60, 120, 3), 128, np.uint8)
    frame[:, :10] = (255, 0, 0)   # left edge red
    frame[:, -10:] = (0, 0, 255)  # right edge blue: a centre crop would cut both
    pixels = preprocess_frames(frame, NORM, 'pad')[0]
    red = (np.array([1.0, 0, 0]) - NORM.mean) / NORM.std
    blue = (np.array([0, 0, 1.0]) - NORM.mean) / NORM.std
    middle_row = pixels[:, 56].numpy()
    np.testing.assert_allclose(middle_row[:, 2], red, atol=0.05)
    np.testing.assert_allclose(middle_row[:, -3], blue, atol=0.05)
    # Letterbox bands (top and bottom quarter) have the processor's mean colour: zero.
    assert float(pixels[:, :20].abs().max()) < ONE_LEVEL
    assert float(pixels[:, -20:].abs().max()) < ONE_LEVEL
    squashed = preprocess_frames(frame, NORM, 'resize')[0]
    np.testing.assert_allclose(squashed[:, 2, 2].numpy(), red, atol=0.05)
    np.testing.assert_allclose(squashed[:, 0, -3].numpy(), blue, atol=0.05)


def test_batches_and_errors():
    frames = np.stack([textured_frame(48, 64, seed=s) for s in range(3)])
    batch = preprocess_frames(frames, NORM, 'resize')
    single = preprocess_frames(frames[1], NORM, 'resize')
    assert batch.shape == (3, 3, 112, 112)
    assert float((batch[1] - single[0]).abs().max()) == 0.0
    with pytest.raises(ValueError, match="'crop'"):
        preprocess_frames(frames, NORM, 'crop')
    with pytest.raises(ValueError, match='uint8'):
        preprocess_frames(frames.astype(np.float32), NORM)
    with pytest.raises(ValueError, match='no frames'):
        preprocess_frames([], NORM)
    with pytest.raises(ValueError, match='share a size'):
        preprocess_frames([frames[0], frames[0][:10]], NORM)
