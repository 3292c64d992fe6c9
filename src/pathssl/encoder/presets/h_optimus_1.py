"""H-optimus-1 (Bioptimus): ViT-G/14 with 4 registers, trained on 1M+ slides; 1536-d class
token; the same architecture and normalisation as H-optimus-0."""

from pathssl.encoder.presets import Preset, register


@register
def preset() -> Preset:
    return Preset(
        name="h-optimus-1",
        description="H-optimus-1 ViT-G/14 reg4 (bioptimus/H-optimus-1)",
        architecture="vit_giant_patch14_reg4_dinov2",
        timm_kwargs={
            "img_size": 224,
            "init_values": 1e-5,
            "global_pool": "token",
            "dynamic_img_size": False,
        },
        embedding_dim=1536,
        mean=(0.707223, 0.578729, 0.703617),
        std=(0.211883, 0.230117, 0.177517),
        source_url="https://huggingface.co/bioptimus/H-optimus-1",
    )
