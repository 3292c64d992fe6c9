"""Virchow (Paige, v1): ViT-H/14 with SwiGLU, no registers; class token + mean patch token."""

from pathssl.encoder.presets import Preset, register


@register
def preset() -> Preset:
    return Preset(
        name="virchow",
        description="Virchow ViT-H/14 (paige-ai/Virchow); 2560-d = class + mean patch token",
        architecture="vit_huge_patch14_224",
        timm_kwargs={
            "img_size": 224,
            "init_values": 1e-5,
            "mlp_ratio": 5.3375,
            "global_pool": "",
            "dynamic_img_size": True,
            "mlp_layer": "SwiGLUPacked",
            "act_layer": "SiLU",
        },
        embedding_dim=2560,
        pooling="cls+mean",
        source_url="https://huggingface.co/paige-ai/Virchow",
    )
