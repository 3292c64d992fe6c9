"""Lunit's DINO ViT-S/16 (Kang et al., CVPR 2023), trained on 19M TCGA/TULIP tiles; 384-d."""

from pathssl.encoder.presets import Preset, register


@register
def preset() -> Preset:
    return Preset(
        name="lunit-dino-vits16",
        description="Lunit DINO ViT-S/16 (lunit-io/benchmark-ssl-pathology)",
        architecture="vit_small_patch16_224",
        timm_kwargs={},
        embedding_dim=384,
        mean=(0.70322989, 0.53606487, 0.66096631),
        std=(0.21716536, 0.26081574, 0.20723464),
        source_url="https://github.com/lunit-io/benchmark-ssl-pathology/releases",
    )
