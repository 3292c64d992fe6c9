"""Checkpoints published in Hugging Face `transformers` layout (ViTModel, Dinov2Model), mapped
onto the same architecture in timm, so that one code path (timm) runs every preset.

Both key namings are read: transformers 4 (`encoder.layer.N.attention.attention.query`), in
which the published checkpoints were saved, and transformers 5 (`layers.N.attention.q_proj`,
`encoder.layer.N.mlp.gate_proj`). Query, key and value become timm's packed `qkv`; gated MLPs
become timm's packed SwiGLU (`fc1` = [gate; up], act(gate) * up, as both libraries compute).
"""

from __future__ import annotations

import re

import torch

from pathssl.errors import ModelBundleError

_BLOCK = r"(?:encoder\.)?(?:layer|layers)\.(\d+)\."  # "encoder." may be stripped already
_RENAMES = [
    (r"embeddings\.cls_token", "cls_token"),
    (r"embeddings\.register_tokens", "reg_token"),
    (r"embeddings\.position_embeddings", "pos_embed"),
    (r"embeddings\.patch_embeddings\.projection\.(weight|bias)", r"patch_embed.proj.\1"),
    (_BLOCK + r"(?:layernorm_before|norm1)\.(weight|bias)", r"blocks.\1.norm1.\2"),
    (_BLOCK + r"(?:layernorm_after|norm2)\.(weight|bias)", r"blocks.\1.norm2.\2"),
    (_BLOCK + r"attention\.(?:output\.dense|o_proj)\.(weight|bias)", r"blocks.\1.attn.proj.\2"),
    (
        _BLOCK + r"(?:intermediate\.dense|mlp\.fc1|mlp\.weights_in)\.(weight|bias)",
        r"blocks.\1.mlp.fc1.\2",
    ),
    (
        _BLOCK + r"(?:output\.dense|mlp\.fc2|mlp\.weights_out|mlp\.down_proj)\.(weight|bias)",
        r"blocks.\1.mlp.fc2.\2",
    ),
    (_BLOCK + r"layer_scale1\.lambda1", r"blocks.\1.ls1.gamma"),
    (_BLOCK + r"layer_scale2\.lambda1", r"blocks.\1.ls2.gamma"),
    (r"layernorm\.(weight|bias)", r"norm.\1"),
]
_QKV = re.compile(
    _BLOCK + r"attention\.(?:attention\.(query|key|value)|(q|k|v)_proj)\.(weight|bias)"
)
_GATED = re.compile(_BLOCK + r"mlp\.(gate|up)_proj\.(weight|bias)")
_DROPPED = re.compile(r"embeddings\.mask_token|pooler\..*")


def transformers_to_timm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A transformers ViT/DINOv2 state dict in timm VisionTransformer names."""
    out: dict[str, torch.Tensor] = {}
    parts: dict[tuple[str, str, str], torch.Tensor] = {}  # (block, q/k/v or gate/up, kind)
    unknown = []
    for key, value in state.items():
        if _DROPPED.fullmatch(key):
            continue
        if match := _QKV.fullmatch(key):
            block, long, short, kind = match.groups()
            parts[(block, (long or short)[0], kind)] = value
            continue
        if match := _GATED.fullmatch(key):
            block, which, kind = match.groups()
            parts[(block, which, kind)] = value
            continue
        for pattern, target in _RENAMES:
            if re.fullmatch(pattern, key):
                out[re.sub(pattern, target, key)] = value
                break
        else:
            unknown.append(key)
    if unknown:
        raise ModelBundleError(
            f"{len(unknown)} keys of the transformers checkpoint have no timm counterpart "
            f"(e.g. {unknown[:3]}); is it a ViT or DINOv2 checkpoint?"
        )
    for block, kind in sorted({(b, k) for b, _, k in parts}):
        if (block, "q", kind) in parts:
            qkv = [parts[(block, name, kind)] for name in "qkv"]
            out[f"blocks.{block}.attn.qkv.{kind}"] = torch.cat(qkv)
        if (block, "gate", kind) in parts:
            gated = [parts[(block, "gate", kind)], parts[(block, "up", kind)]]
            out[f"blocks.{block}.mlp.fc1.{kind}"] = torch.cat(gated)
    return out


def fit_position_embeddings(
    state: dict[str, torch.Tensor], target: torch.nn.Module
) -> dict[str, torch.Tensor]:
    """Position embeddings as the timm module holds them.

    transformers adds a position embedding to the class token and the patches, then inserts
    the registers (none); timm's register models (no_embed_class) embed patches only, so the
    class token's position embedding is folded into the class token. Embeddings saved for
    another image size (DINOv2 checkpoints often keep 518 px) are resampled to the preset's
    grid once, as transformers does at every forward pass: bicubic, antialiased in its
    DINOv2-with-registers model and not in its DINOv2 and ViT models."""
    from timm.layers import resample_abs_pos_embed

    published, wanted = state.get("pos_embed"), getattr(target, "pos_embed", None)
    if published is None or wanted is None:
        return state
    state = dict(state)
    antialias = "reg_token" in state  # Dinov2WithRegistersModel interpolates antialiased
    if getattr(target, "no_embed_class", False) and "cls_token" in state:
        state["cls_token"] = state["cls_token"] + published[:, :1]
        published = published[:, 1:]
    if published.shape != wanted.shape:
        prefix = 0 if getattr(target, "no_embed_class", False) else target.num_prefix_tokens
        published = resample_abs_pos_embed(
            published,
            new_size=list(target.patch_embed.grid_size),
            num_prefix_tokens=prefix,
            interpolation="bicubic",
            antialias=antialias,
        )
    state["pos_embed"] = published
    return state
