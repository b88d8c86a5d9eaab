"""Raw frame decoding and its failure reasons (pure logic)."""
from llava_drive.image_codec import decode_raw, ImageError, raw_fields, to_bgr, to_rgb
import numpy as np
import pytest


def test_round_trip_bgra8_with_padded_rows():
    image = np.random.default_rng(0).integers(0, 255, (6, 5, 4), dtype=np.uint8)
    padded = np.zeros((6, 24), np.uint8)
    padded[:, :20] = image.reshape(6, 20)
    decoded = decode_raw('bgra8', 6, 5, 24, padded.tobytes())
    np.testing.assert_array_equal(decoded, image)
    np.testing.assert_array_equal(to_rgb(decoded, 'bgra8'), image[:, :, [2, 1, 0]])
    np.testing.assert_array_equal(to_bgr(decoded, 'bgra8'), image[:, :, :3])


def test_raw_fields_gives_bytes():
    image = np.zeros((4, 3, 3), np.uint8)
    height, width, step, data = raw_fields(image)
    assert (height, width, step) == (4, 3, 9) and isinstance(data, bytes) and len(data) == 36


@pytest.mark.parametrize('args,reason', [
    (('yuv422', 2, 2, 4, bytes(8)), 'unsupported_encoding'),
    (('rgb8', 0, 0, 0, b''), 'empty_image'),
    (('rgb8', 2, 2, 6, b''), 'empty_image'),
    (('rgb8', 2, 2, 6, bytes(7)), 'truncated_image'),
    (('rgb8', 2, 2, 4, bytes(12)), 'truncated_image'),
])
def test_broken_frames_name_their_reason(args, reason):
    with pytest.raises(ImageError) as error:
        decode_raw(*args)
    assert error.value.reason == reason
