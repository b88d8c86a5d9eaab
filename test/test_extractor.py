"""LLaVA feature extractor: truncated decoder equals the full model, modes, determinism."""
from fixtures_llava import scene_frame, tiny_llava_dir  # noqa: F401
from llava_drive.features.extractor import (
    default_layer, ExtractorError, LlavaFeatureExtractor, pool_grid)
from llava_drive.features.spec import FeatureMode
import pytest
import torch

FRAMES = [scene_frame(index) for index in range(3)]
_EXTRACTORS = {}
_FULL = {}


def extractor(model_dir, **options):
    """Return a cached extractor for these options."""
    key = (str(model_dir), tuple(sorted(options.items())))
    if key not in _EXTRACTORS:
        _EXTRACTORS[key] = LlavaFeatureExtractor(model_dir, **options)
    return _EXTRACTORS[key]


def full_forward(model_dir, input_ids, pixel_values):
    """Run the complete model with all hidden states, as a reference."""
    from transformers import AutoModelForImageTextToText

    if 'model' not in _FULL:
        _FULL['model'] = AutoModelForImageTextToText.from_pretrained(
            model_dir, local_files_only=True).eval()
    with torch.inference_mode():
        return _FULL['model'](input_ids=input_ids.expand(pixel_values.shape[0], -1),
                              pixel_values=pixel_values, output_hidden_states=True)


@pytest.mark.parametrize('layer', [1, 2, 4])
def test_truncated_decoder_equals_full_model_hidden_states(tiny_llava_dir, layer):  # noqa
    ex = extractor(tiny_llava_dir, mode='last_token', layer=layer)
    assert len(ex.model.language_model.layers) == layer  # later layers never loaded
    # LLaVA reads the vision tower's layer -2: its last layer is not loaded either.
    assert len(ex.model.vision_tower.encoder.layers) == 2
    assert not hasattr(ex, 'lm_head') and not hasattr(ex.model, 'lm_head')
    pixel_values = ex.pixel_values(FRAMES)
    truncated = ex.decoder_states(pixel_values)
    reference = full_forward(tiny_llava_dir, ex.input_ids, pixel_values).hidden_states
    assert len(reference) == 5  # embeddings + 4 layers
    torch.testing.assert_close(truncated, reference[layer], rtol=1e-5, atol=1e-5)
    features = ex.extract(FRAMES)
    torch.testing.assert_close(features, reference[layer][:, -1])


def test_every_mode_matches_its_definition_on_the_full_model(tiny_llava_dir):  # noqa: F811
    base = extractor(tiny_llava_dir, mode='image_grid', layer=2, grid=2)
    pixel_values = base.pixel_values(FRAMES)
    output = full_forward(tiny_llava_dir, base.input_ids, pixel_values)
    states = output.hidden_states[2]
    image_states = states[:, base.input_ids[0] == base.config.image_token_id]
    assert image_states.shape[1] == 64  # 112 px / patch 14 = 8 x 8 image tokens
    grid = image_states.reshape(3, 8, 8, -1).permute(0, 3, 1, 2)
    expected_grid = grid.reshape(3, -1, 2, 4, 2, 4).mean(dim=(3, 5)).flatten(1)
    torch.testing.assert_close(base.extract(FRAMES), expected_grid, rtol=1e-5, atol=1e-5)
    mean = extractor(tiny_llava_dir, mode='image_mean', layer=2).extract(FRAMES)
    torch.testing.assert_close(mean, image_states.mean(dim=1), rtol=1e-5, atol=1e-5)
    token0 = extractor(tiny_llava_dir, mode='token0').extract(FRAMES)
    torch.testing.assert_close(token0, output.hidden_states[-1][:, 0], rtol=1e-5, atol=1e-5)
    # Vision modes: the tower's states at vision_feature_layer (-2), CLS and pooled patches.
    with torch.inference_mode():
        tower = _FULL['model'].model.vision_tower(pixel_values, output_hidden_states=True)
    vision = tower.hidden_states[-2]
    cls = extractor(tiny_llava_dir, mode='vision_cls').extract(FRAMES)
    torch.testing.assert_close(cls, vision[:, 0])
    vgrid = extractor(tiny_llava_dir, mode='vision_grid', grid=1).extract(FRAMES)
    torch.testing.assert_close(vgrid, vision[:, 1:].mean(dim=1), rtol=1e-5, atol=1e-5)


def test_image_token_id_matches_the_model(tiny_llava_dir):  # noqa: F811
    ex = extractor(tiny_llava_dir, mode='image_grid', layer=2, grid=2)
    assert ex.config.image_token_id == 4
    assert len(ex.image_positions) == 64
    assert ex.prompt_text.startswith('USER: <image>\n') and ex.prompt_text.endswith(
        ' ASSISTANT:')


@pytest.mark.parametrize('mode', [m.value for m in FeatureMode])
def test_modes_see_the_image_except_token0(tiny_llava_dir, mode):  # noqa: F811
    ex = extractor(tiny_llava_dir, mode=mode)
    features = ex.extract(FRAMES)
    assert features.shape == (3, ex.spec.feature_dim) and features.dtype == torch.float32
    assert torch.isfinite(features).all()
    spread = float((features[0] - features[1]).abs().max())
    if mode == 'token0':
        assert spread == 0.0  # position 0 of a causal decoder cannot attend to the image
    else:
        assert spread > 1e-4 * float(features.abs().max())


def test_deterministic_and_batch_independent(tiny_llava_dir):  # noqa: F811
    first = extractor(tiny_llava_dir, mode='image_grid').extract(FRAMES)
    fresh = LlavaFeatureExtractor(tiny_llava_dir, mode='image_grid')
    torch.testing.assert_close(fresh.extract(FRAMES), first, rtol=0, atol=0)
    one_by_one = torch.cat([fresh.extract([frame]) for frame in FRAMES])
    torch.testing.assert_close(one_by_one, first, rtol=1e-5, atol=1e-5)
    assert fresh.spec == extractor(tiny_llava_dir, mode='image_grid').spec


def test_spec_describes_the_features(tiny_llava_dir):  # noqa: F811
    spec = extractor(tiny_llava_dir, mode='image_grid').spec
    assert (spec.mode, spec.layer, spec.grid, spec.image_size) == ('image_grid', 2, 4, 112)
    assert spec.feature_dim == 128 * 4 * 4 and spec.preprocessing == 'pad'
    vision = extractor(tiny_llava_dir, mode='vision_cls').spec
    assert (vision.layer, vision.grid, vision.feature_dim) == (None, None, 64)
    assert extractor(tiny_llava_dir, mode='token0').spec.layer == 4
    other = extractor(tiny_llava_dir, mode='image_grid', layer=1).spec
    assert spec.differences(other) == ['layer: checkpoint 2, extractor 1']


def test_half_precision_runs_close_to_float32(tiny_llava_dir):  # noqa: F811
    reference = extractor(tiny_llava_dir, mode='last_token').extract(FRAMES)
    half = LlavaFeatureExtractor(tiny_llava_dir, mode='last_token', dtype='bfloat16')
    features = half.extract(FRAMES)
    assert half.spec.dtype == 'bfloat16' and features.dtype == torch.float32
    cosine = torch.nn.functional.cosine_similarity(features, reference)
    assert float(cosine.min()) > 0.95


def test_clear_errors(tmp_path, tiny_llava_dir):  # noqa: F811
    with pytest.raises(ExtractorError, match='no config.json'):
        LlavaFeatureExtractor(tmp_path / 'nowhere')
    with pytest.raises(ExtractorError, match="unknown feature mode 'cls'"):
        LlavaFeatureExtractor(tiny_llava_dir, mode='cls')
    with pytest.raises(ExtractorError, match='layer must be in 0..4 for this model, got 9'):
        LlavaFeatureExtractor(tiny_llava_dir, mode='last_token', layer=9)
    with pytest.raises(ExtractorError, match='token0 is defined at the last layer'):
        LlavaFeatureExtractor(tiny_llava_dir, mode='token0', layer=2)
    with pytest.raises(ExtractorError, match='layer must be None'):
        LlavaFeatureExtractor(tiny_llava_dir, mode='vision_cls', layer=2)
    if not torch.cuda.is_available():
        with pytest.raises(ExtractorError, match='has no usable CUDA device; use device cpu'):
            LlavaFeatureExtractor(tiny_llava_dir, device='cuda')
    with pytest.raises(ExtractorError, match='grid 9 is larger than the 8x8 token grid'):
        extractor(tiny_llava_dir, mode='image_grid', grid=9).extract(FRAMES)


def test_pool_grid_and_default_layer():
    tokens = torch.arange(16, dtype=torch.float32).reshape(1, 16, 1)
    assert pool_grid(tokens, 2).tolist() == [[2.5, 4.5, 10.5, 12.5]]
    assert pool_grid(tokens, 1).tolist() == [[7.5]]
    with pytest.raises(ExtractorError, match='square token grid'):
        pool_grid(torch.zeros(1, 15, 1), 2)
    assert default_layer('image_grid', 32) == 16
    assert default_layer('token0', 32) == 32
    assert default_layer('vision_grid', 32) is None
    assert default_layer('last_token', 5) == 2


def test_cpu_batches_stay_within_a_token_budget(tiny_llava_dir):  # noqa: F811
    from llava_drive.features.extractor import CPU_TOKENS_PER_BATCH
    decoder = extractor(tiny_llava_dir, mode='image_grid')
    assert decoder.batch_size == CPU_TOKENS_PER_BATCH // decoder.input_ids.shape[1] > 1
    vision = extractor(tiny_llava_dir, mode='vision_grid')
    assert vision.batch_size == CPU_TOKENS_PER_BATCH // (8 * 8 + 1)
