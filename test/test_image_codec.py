"""Raw and compressed frame decoding, its bounds and its failure reasons (pure logic)."""
import cv2
from llava_drive.image_codec import (check_size, decode_compressed, decode_raw, ImageError,
                                     MAX_ASPECT, MAX_ROW_PADDING, MAX_SIDE, MIN_SIDE, raw_fields,
                                     to_bgr, to_rgb)
import numpy as np
import pytest


def test_round_trip_bgra8_with_padded_rows():
    image = np.random.default_rng(0).integers(0, 255, (16, 20, 4), dtype=np.uint8)
    padded = np.zeros((16, 96), np.uint8)
    padded[:, :80] = image.reshape(16, 80)
    decoded = decode_raw('bgra8', 16, 20, 96, padded.tobytes())
    np.testing.assert_array_equal(decoded, image)
    np.testing.assert_array_equal(to_rgb(decoded, 'bgra8'), image[:, :, [2, 1, 0]])
    np.testing.assert_array_equal(to_bgr(decoded, 'bgra8'), image[:, :, :3])


def test_raw_fields_gives_bytes():
    image = np.zeros((4, 3, 3), np.uint8)
    height, width, step, data = raw_fields(image)
    assert (height, width, step) == (4, 3, 9) and isinstance(data, bytes) and len(data) == 36


@pytest.mark.parametrize('args,reason', [
    (('yuv422', 16, 16, 32, bytes(512)), 'unsupported_encoding'),
    (('rgb8', 0, 0, 0, b''), 'empty_image'),
    (('rgb8', 16, 16, 48, b''), 'empty_image'),
    (('rgb8', 16, 16, 48, bytes(767)), 'truncated_image'),
    (('rgb8', 16, 16, 47, bytes(768)), 'truncated_image'),
    (('rgb8', 16, 16, 48, bytes(769)), 'data_size_mismatch'),
    (('rgb8', 16, 16, 48 + MAX_ROW_PADDING + 1, bytes(16 * (49 + MAX_ROW_PADDING))), 'bad_step'),
    (('rgb8', 600, 1, 3, bytes(1800)), 'image_too_small'),
    (('mono8', 16, MAX_SIDE + 1, MAX_SIDE + 1, b'\0'), 'image_too_large'),
    (('mono8', 16, 16 * int(MAX_ASPECT) + 1, 16 * int(MAX_ASPECT) + 1, b'\0'),
     'bad_aspect_ratio'),
])
def test_broken_frames_name_their_reason(args, reason):
    with pytest.raises(ImageError) as error:
        decode_raw(*args)
    assert error.value.reason == reason


def test_bounds_are_inclusive():
    for width, height in ((MIN_SIDE, MIN_SIDE), (MAX_SIDE, MAX_SIDE // int(MAX_ASPECT)),
                          (MIN_SIDE, MIN_SIDE * int(MAX_ASPECT))):
        check_size(width, height)
    image = decode_raw('mono8', MIN_SIDE, MIN_SIDE * 8, MIN_SIDE * 8, bytes(MIN_SIDE ** 2 * 8))
    assert image.shape == (MIN_SIDE, MIN_SIDE * 8, 1)


def test_compressed_frames_round_trip_and_are_bounded_before_decoding():
    frame = np.random.default_rng(1).integers(0, 255, (24, 32, 3), dtype=np.uint8)
    for extension in ('.jpg', '.png'):
        ok, encoded = cv2.imencode(extension, frame)
        assert ok
        decoded = decode_compressed(encoded.tobytes())
        assert decoded.shape == frame.shape
    np.testing.assert_array_equal(decode_compressed(cv2.imencode('.png', frame)[1]), frame)
    for shape, reason in (((600, 1, 3), 'image_too_small'), ((16, 200, 3), 'bad_aspect_ratio')):
        encoded = cv2.imencode('.png', np.zeros(shape, np.uint8))[1].tobytes()
        with pytest.raises(ImageError) as error:
            decode_compressed(encoded)
        assert error.value.reason == reason
    ok, jpeg = cv2.imencode('.jpg', frame)
    for data, reason in ((b'', 'empty_image'), (b'not an image', 'undecodable_jpeg'),
                         (jpeg.tobytes()[:40], 'undecodable_jpeg')):
        with pytest.raises(ImageError) as error:
            decode_compressed(data)
        assert error.value.reason == reason
