"""Midnight (kaiko.ai): ViT-g/14 with SwiGLU, DINOv2 on 12k slides, published as a
transformers Dinov2Model; 3072-d = class token + mean patch token, inputs normalised with
mean = std = 0.5, as on the model card."""

from pathssl.encoder.presets import Preset, register


@register
def preset() -> Preset:
    return Preset(
        name="midnight",
        description="Midnight ViT-g/14 (kaiko-ai/midnight, transformers Dinov2Model); "
        "3072-d = class + mean patch token",
        architecture="vit_giant_patch14_dinov2",
        timm_kwargs={"img_size": 224, "init_values": 1e-5, "global_pool": ""},
        embedding_dim=3072,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        pooling="cls+mean",
        layout="transformers",
        strip_prefixes=("module.", "dinov2."),
        source_url="https://huggingface.co/kaiko-ai/midnight",
    )
