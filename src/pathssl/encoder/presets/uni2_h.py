"""UNI2-h (Mahmood lab): ViT-H/14 with 8 registers and SwiGLU, DINOv2 on 350k+ slides;
1536-d class token. timm settings as on the model card."""

from pathssl.encoder.presets import Preset, register


@register
def preset() -> Preset:
    return Preset(
        name="uni2-h",
        description="UNI2-h ViT-H/14 reg8 (MahmoodLab/UNI2-h, pytorch_model.bin)",
        architecture="vit_giant_patch14_224",
        timm_kwargs={
            "img_size": 224,
            "patch_size": 14,
            "depth": 24,
            "num_heads": 24,
            "init_values": 1e-5,
            "embed_dim": 1536,
            "mlp_ratio": 2.66667 * 2,
            "no_embed_class": True,
            "mlp_layer": "SwiGLUPacked",
            "act_layer": "SiLU",
            "reg_tokens": 8,
            "dynamic_img_size": True,
        },
        embedding_dim=1536,
        source_url="https://huggingface.co/MahmoodLab/UNI2-h",
    )
