"""The tiny random LLaVA: deterministic, real tokenizer and processor, loads like a checkpoint."""
from fixtures_llava import tiny_llava_dir  # noqa: F401
from llava_drive.features.spec import model_content_hash
from llava_drive.features.tiny_model import create_tiny_llava, IMAGE_TOKEN, TinyLlavaSize
import pytest


def test_same_seed_same_bytes_other_seed_other_weights(tmp_path, tiny_llava_dir):  # noqa: F811
    again = create_tiny_llava(tmp_path / 'again', seed=0)
    other = create_tiny_llava(tmp_path / 'other', seed=1)
    for name in ('model.safetensors', 'config.json', 'tokenizer.json'):
        assert (again / name).read_bytes() == (tiny_llava_dir / name).read_bytes(), name
    assert (other / 'model.safetensors').read_bytes() != (again / 'model.safetensors').read_bytes()
    assert model_content_hash(again) == model_content_hash(tiny_llava_dir)
    assert model_content_hash(other) != model_content_hash(again)


def test_loads_through_the_real_transformers_classes(tiny_llava_dir):  # noqa: F811
    from transformers import AutoModelForImageTextToText, AutoProcessor, LlavaConfig
    from transformers import LlavaForConditionalGeneration

    config = LlavaConfig.from_pretrained(tiny_llava_dir, local_files_only=True)
    assert config.vision_config.model_type == 'clip_vision_model'
    assert config.text_config.model_type == 'llama'
    assert config.vision_feature_layer == -2
    assert config.vision_feature_select_strategy == 'default'
    model = AutoModelForImageTextToText.from_pretrained(tiny_llava_dir, local_files_only=True)
    assert isinstance(model, LlavaForConditionalGeneration)
    assert sum(p.numel() for p in model.parameters()) < 3_000_000
    processor = AutoProcessor.from_pretrained(tiny_llava_dir, local_files_only=True)
    assert type(processor).__name__ == 'LlavaProcessor'
    assert 'CLIPImageProcessor' in type(processor.image_processor).__name__
    conversation = [{'role': 'user', 'content': [
        {'type': 'image'}, {'type': 'text', 'text': 'Where is the lane?'}]}]
    text = processor.apply_chat_template(conversation, add_generation_prompt=True,
                                         tokenize=False)
    assert text == 'USER: <image>\nWhere is the lane? ASSISTANT:'
    tokenizer = processor.tokenizer
    ids = tokenizer(text)['input_ids']
    assert ids[0] == tokenizer.bos_token_id
    assert ids.count(config.image_token_id) == 1
    assert tokenizer.convert_ids_to_tokens(config.image_token_id) == IMAGE_TOKEN
    assert tokenizer.decode(ids, skip_special_tokens=True).strip().endswith('ASSISTANT:')
    # A real BPE: common words are single tokens, so the prompt is short.
    assert len(tokenizer('the road curves to the left')['input_ids']) < 12


def test_size_validation_names_the_bad_value():
    with pytest.raises(ValueError, match='image_size 100 is not a multiple of patch_size 14'):
        TinyLlavaSize(image_size=100)
    with pytest.raises(ValueError, match='text_hidden 130'):
        TinyLlavaSize(text_hidden=130)
