"""Hibou-L (HistAI): ViT-L/14 with 4 registers, DINOv2 on 1M+ slides, published in
transformers DINOv2-with-registers layout; 1024-d class token after the final layer norm (the
model card's pooler output), with Hibou's own normalisation."""

from pathssl.encoder.presets import Preset, register


@register
def preset() -> Preset:
    return Preset(
        name="hibou-l",
        description="Hibou-L ViT-L/14 reg4 (histai/hibou-L, transformers layout)",
        architecture="vit_large_patch14_reg4_dinov2",
        timm_kwargs={"img_size": 224, "init_values": 1e-5, "global_pool": "token"},
        embedding_dim=1024,
        mean=(0.7068, 0.5755, 0.722),
        std=(0.195, 0.2316, 0.1816),
        layout="transformers",
        strip_prefixes=("module.", "dinov2.", "model."),
        source_url="https://huggingface.co/histai/hibou-L",
    )
