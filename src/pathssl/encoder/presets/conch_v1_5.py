"""CONCH v1.5 (Mahmood lab): the tile encoder of TITAN, a ViT-L/16 with layer scale at 448 px
whose tokens an attentional pooler reduces to 768 features (TITAN's `return_conch()`,
TRIDENT's `conch_v15`).

The published `pytorch_model_vision.bin` holds `trunk.` (the ViT), `attn_pool_contrast.` and
`ln_contrast.`; its position embeddings are fitted to 448 px at import as the reference
resamples them (encoder/conch_layout.py). Preprocessing as the reference's: resize + centre crop
to 448 px, ImageNet mean and std. Tiles: TITAN's grid is 512 px at 20x (0.5 um/px), resized to
448 for CONCH v1.5, i.e. 448 px at 0.5 * 512 / 448 um/px: the same 256 um per tile, so the
slide encoder sees the grid it was trained on.
"""

from pathssl.encoder.presets import Preset, register


@register
def preset() -> Preset:
    return Preset(
        name="conch_v1_5",
        description="CONCH v1.5 (TITAN's tile encoder), ViT-L/16 + attentional pooler "
        "(MahmoodLab/conchv1_5, pytorch_model_vision.bin)",
        architecture="vit_large_patch16_224",
        # position embeddings stored for 448 px only: no dynamic size
        timm_kwargs={"img_size": 448, "patch_size": 16, "init_values": 1.0},
        embedding_dim=768,
        input_size_px=448,
        target_mpp=0.5 * 512 / 448,
        pooling="attentional-pooler",
        layout="conch-v1.5",
        source_url="https://huggingface.co/MahmoodLab/conchv1_5",
    )
