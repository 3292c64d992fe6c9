"""UNI (Mahmood lab): ViT-L/16 trained with DINOv2 on Mass-100K; 1024-d class token."""

from pathssl.encoder.presets import Preset, register


@register
def preset() -> Preset:
    return Preset(
        name="uni",
        description="UNI ViT-L/16 (MahmoodLab/UNI, pytorch_model.bin)",
        architecture="vit_large_patch16_224",
        timm_kwargs={
            "img_size": 224,
            "patch_size": 16,
            "init_values": 1e-5,
            "dynamic_img_size": True,
        },
        embedding_dim=1024,
        source_url="https://huggingface.co/MahmoodLab/UNI",
    )
