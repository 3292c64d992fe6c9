"""CONCH v1 (Mahmood lab): the image tower of a CoCa model, a ViT-B/16 at 448 px whose tokens an
attentional pooler reduces to 512 features: `encode_image(x, proj_contrast=False,
normalize=False)`, CONCH's README recipe for tile features (before the contrastive projection).

Preprocessing as `create_model_from_pretrained` returns it: resize + centre crop to 448 px,
OpenAI CLIP's mean and std. Tiles: 512 px at 20x (0.5 um/px) resized to 448, as TRIDENT extracts
them (`--patch_size 512 --mag 20`), i.e. 448 px at 0.5 * 512 / 448 um/px: the same 256 um.
"""

from pathssl.encoder.presets import Preset, register

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@register
def preset() -> Preset:
    return Preset(
        name="conch_v1",
        description="CONCH v1 image tower, ViT-B/16 + attentional pooler (MahmoodLab/CONCH, "
        "pytorch_model.bin)",
        architecture="vit_base_patch16_224",
        timm_kwargs={"img_size": 448, "patch_size": 16, "dynamic_img_size": True},
        embedding_dim=512,
        input_size_px=448,
        target_mpp=0.5 * 512 / 448,
        mean=OPENAI_CLIP_MEAN,
        std=OPENAI_CLIP_STD,
        pooling="attentional-pooler-mha",
        strip_prefixes=("module.", "visual."),
        # the text tower, the captioning pooler and the contrastive projection are not used
        drop_prefixes=(
            "head.",
            "fc.",
            "text.",
            "text_decoder.",
            "logit_scale",
            "proj_contrast",
            "attn_pool_caption.",
            "ln_caption.",
        ),
        source_url="https://huggingface.co/MahmoodLab/CONCH",
    )
