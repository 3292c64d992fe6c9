"""Phikon-v2 (Owkin): ViT-L/16, DINOv2 on PANCAN-XL, published as a transformers Dinov2Model;
1024-d class token of the last hidden state, as on the model card."""

from pathssl.encoder.presets import Preset, register


@register
def preset() -> Preset:
    return Preset(
        name="phikon-v2",
        description="Phikon-v2 ViT-L/16 (owkin/phikon-v2, transformers Dinov2Model)",
        architecture="vit_large_patch16_224",
        timm_kwargs={"img_size": 224, "init_values": 1e-5, "global_pool": "token"},
        embedding_dim=1024,
        layout="transformers",
        strip_prefixes=("module.", "dinov2."),
        source_url="https://huggingface.co/owkin/phikon-v2",
    )
