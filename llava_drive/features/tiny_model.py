"""
Small random-weight LLaVA models, saved in Hugging Face format, for demos, tests and benchmarks.

:func:`create_tiny_llava` writes a LLaVA-1.5-shaped model (CLIP vision tower, two-layer MLP
projector, Llama decoder) with a real byte-level BPE tokenizer trained offline on a built-in
text and a real ``LlavaProcessor`` with the LLaVA-1.5 chat format, so the extractor loads it
through exactly the code path of a real checkpoint. The weights are random: the features
carry image information (the vision tower is a random projection of the pixels) but no
semantics. Same seed, same bytes.

:func:`create_llava_7b_structure` keeps llava-1.5-7b's layer structure (24 CLIP-L layers at
336 px, patch 14, 576 image tokens; 32 decoder layers; vocabulary 32064) at smaller widths,
so timings keep the real proportions of vision tower, decoder depth and LM head per token.
"""
from dataclasses import dataclass
import json
from pathlib import Path

# OpenAI CLIP normalisation, as used by LLaVA-1.5's image processor.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

SPECIAL_TOKENS = ('<unk>', '<s>', '</s>', '<pad>', '<image>')
IMAGE_TOKEN = '<image>'

# LLaVA-1.5 conversation format: 'USER: <image>\n<text> ASSISTANT:'.
CHAT_TEMPLATE = (
    '{% for message in messages %}'
    '{% if message.role == "user" %}USER: {% elif message.role == "assistant" %} ASSISTANT: '
    '{% endif %}'
    '{% for item in message.content %}{% if item.type == "image" %}<image>\n{% endif %}'
    '{% endfor %}'
    '{% for item in message.content %}{% if item.type == "text" %}{{ item.text }}{% endif %}'
    '{% endfor %}{% endfor %}'
    '{% if add_generation_prompt %} ASSISTANT:{% endif %}'
)

# Training text for the tokenizer: driving vocabulary, so prompts tokenize into real pieces.
_CORPUS = """
USER: ASSISTANT: What should the driver do next: steer, throttle and brake?
The car drives along the road. Keep the lane, follow the route, slow down before the turn.
Steer left, steer right, go straight, accelerate, brake, stop at the red light, wait for the
pedestrian, the vehicle ahead is braking, keep a safe distance, the road curves to the left,
the road curves to the right, an intersection is ahead, turn left at the junction, turn right
at the junction, the traffic light is green, the traffic light is red, the lane is blocked.
Describe the scene. What is in the image? A camera image from the front of the car shows the
street, buildings, trees, parked cars, the sky, lane markings, a sidewalk and a crossing.
Speed, steering angle, throttle pedal, brake pedal, camera, image, frame, control, action.
The quick brown fox jumps over the lazy dog. 0 1 2 3 4 5 6 7 8 9 10 20 30 50 100 km/h m/s.
"""


@dataclass(frozen=True)
class TinyLlavaSize:
    """
    Widths and depths of a random LLaVA.

    :param image_size: vision input side in pixels.
    :param patch_size: vision patch side in pixels.
    :param vision_hidden: vision tower width.
    :param vision_layers: vision tower depth.
    :param vision_heads: vision attention heads.
    :param text_hidden: decoder width.
    :param text_layers: decoder depth.
    :param text_heads: decoder attention heads.
    :param vocab_size: decoder vocabulary size (at least the tokenizer's).
    :param tokenizer_vocab: target size of the trained BPE vocabulary.
    """

    image_size: int = 112
    patch_size: int = 14
    vision_hidden: int = 64
    vision_layers: int = 3
    vision_heads: int = 4
    text_hidden: int = 128
    text_layers: int = 4
    text_heads: int = 4
    vocab_size: int = 0  # 0: exactly the tokenizer's vocabulary
    tokenizer_vocab: int = 1024

    def __post_init__(self):
        """Check that the sizes fit together."""
        if self.image_size % self.patch_size:
            raise ValueError('image_size %d is not a multiple of patch_size %d'
                             % (self.image_size, self.patch_size))
        for name in ('vision_hidden', 'text_hidden'):
            heads = getattr(self, name.replace('hidden', 'heads'))
            if getattr(self, name) % heads:
                raise ValueError('%s %d is not a multiple of the head count %d'
                                 % (name, getattr(self, name), heads))
        if min(self.vision_layers, self.text_layers) < 2:
            raise ValueError('need at least 2 vision and 2 decoder layers, got %d and %d'
                             % (self.vision_layers, self.text_layers))


TINY = TinyLlavaSize()
# llava-1.5-7b: CLIP-L/14-336 (24 layers, 1024 wide), Vicuna-7B (32 layers, 4096 wide, 32064
# tokens). Same depths, token counts and vocabulary; widths divided by 4 (vision) and 8 (text).
LLAVA_7B_STRUCTURE = TinyLlavaSize(image_size=336, patch_size=14, vision_hidden=256,
                                   vision_layers=24, vision_heads=4, text_hidden=512,
                                   text_layers=32, text_heads=8, vocab_size=32064)
# llava-1.5-7b at full size (llava-hf/llava-1.5-7b-hf config.json): CLIP ViT-L/14-336 (24
# layers, 1024 wide, 16 heads, MLP 4096), Vicuna-7B (32 layers, 4096 wide, 32 heads, MLP
# 11008, vocabulary 32064); random weights, for GPU timings only (14 GB in bfloat16).
LLAVA_15_7B = TinyLlavaSize(image_size=336, patch_size=14, vision_hidden=1024, vision_layers=24,
                            vision_heads=16, text_hidden=4096, text_layers=32, text_heads=32,
                            vocab_size=32064)


def build_tokenizer(vocab_size: int = 1024):
    """
    Train a byte-level BPE tokenizer on the built-in text and wrap it for transformers.

    :param vocab_size: target vocabulary size (the text may yield fewer merges).
    """
    from tokenizers import decoders, models, pre_tokenizers, processors, Tokenizer, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token='<unk>'))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tokenizer.train_from_iterator([_CORPUS] * 4, trainer=trainer)
    bos_id = tokenizer.token_to_id('<s>')
    # Like Llama: a BOS token starts every sequence.
    tokenizer.post_processor = processors.TemplateProcessing(
        single='<s> $A', pair='<s> $A <s> $B', special_tokens=[('<s>', bos_id)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token='<s>', eos_token='</s>', unk_token='<unk>',
        pad_token='<pad>', extra_special_tokens={'image_token': IMAGE_TOKEN},
        model_max_length=4096)


def create_tiny_llava(out_dir, seed: int = 0, size: TinyLlavaSize = TINY,
                      dtype: str = 'float32', device: str = 'cpu') -> Path:
    """
    Create a random-weight LLaVA in Hugging Face format and return its directory.

    The result is deterministic: the same seed and size give byte-identical weights.

    :param out_dir: destination directory (created; existing model files are overwritten).
    :param seed: torch seed for the weights.
    :param size: widths and depths, :data:`TINY` by default.
    :param dtype: weight dtype (``'bfloat16'`` halves a 7B model's 28 GB in float32).
    :param device: where the weights are initialised (``'cuda'`` is much faster for 7B).
    """
    import torch
    from transformers import (CLIPImageProcessorPil, CLIPVisionConfig, LlamaConfig,
                              LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(size.tokenizer_vocab)
    vocab_size = max(size.vocab_size, len(tokenizer))
    vision = CLIPVisionConfig(
        hidden_size=size.vision_hidden, intermediate_size=4 * size.vision_hidden,
        num_hidden_layers=size.vision_layers, num_attention_heads=size.vision_heads,
        image_size=size.image_size, patch_size=size.patch_size, projection_dim=size.vision_hidden,
        hidden_act='quick_gelu')
    text = LlamaConfig(
        vocab_size=vocab_size, hidden_size=size.text_hidden,
        intermediate_size=int(size.text_hidden * 11008 / 4096),
        num_hidden_layers=size.text_layers, num_attention_heads=size.text_heads,
        num_key_value_heads=size.text_heads, max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id)
    num_image_tokens = (size.image_size // size.patch_size) ** 2
    config = LlavaConfig(
        vision_config=vision.to_dict(), text_config=text.to_dict(),
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        image_seq_length=num_image_tokens, vision_feature_layer=-2,
        vision_feature_select_strategy='default', projector_hidden_act='gelu')
    torch.manual_seed(seed)
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(getattr(torch, dtype))
    try:
        with torch.device(device):
            model = LlavaForConditionalGeneration(config).eval()
    finally:
        torch.set_default_dtype(default_dtype)
    model.save_pretrained(out)
    del model
    image_processor = CLIPImageProcessorPil(
        size={'shortest_edge': size.image_size},
        crop_size={'height': size.image_size, 'width': size.image_size},
        do_center_crop=True, resample=3, image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD))
    processor = LlavaProcessor(
        image_processor=image_processor, tokenizer=tokenizer, patch_size=size.patch_size,
        vision_feature_select_strategy='default', chat_template=CHAT_TEMPLATE,
        num_additional_image_tokens=1)
    processor.save_pretrained(out)
    (out / 'llava_drive_model.json').write_text(json.dumps(
        {'created_by': 'llava_drive.features.tiny_model', 'seed': seed,
         'size': size.__dict__, 'random_weights': True}, indent=2, sort_keys=True) + '\n')
    return out


def create_llava_7b_structure(out_dir, seed: int = 0) -> Path:
    """
    Create a random LLaVA with llava-1.5-7b's layer structure at reduced widths.

    24 CLIP layers at 336 px / patch 14 (576 image tokens), 32 Llama decoder layers, the
    7B vocabulary (32064); widths as in :data:`LLAVA_7B_STRUCTURE`.

    :param out_dir: destination directory.
    :param seed: torch seed for the weights.
    """
    return create_tiny_llava(out_dir, seed=seed, size=LLAVA_7B_STRUCTURE)
