"""Prov-GigaPath tile encoder (Providence/Microsoft): ViT-G with 16 px patches; 1536-d."""

from pathssl.encoder.presets import Preset, register


@register
def preset() -> Preset:
    return Preset(
        name="prov-gigapath",
        description="Prov-GigaPath tile encoder (prov-gigapath/prov-gigapath)",
        architecture="vit_giant_patch14_dinov2",
        timm_kwargs={
            "img_size": 224,
            "in_chans": 3,
            "patch_size": 16,
            "embed_dim": 1536,
            "depth": 40,
            "num_heads": 24,
            "init_values": 1e-5,
            "mlp_ratio": 5.33334,
            "global_pool": "token",
        },
        embedding_dim=1536,
        source_url="https://huggingface.co/prov-gigapath/prov-gigapath",
    )
