"""Phikon (Owkin): ViT-B/16, iBOT on TCGA, published as a transformers ViTModel; 768-d class
token of the last hidden state (after the final layer norm), as on the model card."""

from pathssl.encoder.presets import Preset, register


@register
def preset() -> Preset:
    return Preset(
        name="phikon",
        description="Phikon ViT-B/16 (owkin/phikon, transformers ViTModel, model.safetensors)",
        architecture="vit_base_patch16_224",
        timm_kwargs={"img_size": 224, "global_pool": "token"},
        embedding_dim=768,
        layout="transformers",
        layer_norm_eps=1e-12,  # transformers' ViT default, kept by Phikon's config
        strip_prefixes=("module.", "vit."),
        source_url="https://huggingface.co/owkin/phikon",
    )
