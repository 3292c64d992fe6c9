"""PRISM's slide encoder (paige-ai/Prism's image_resampler): a Perceiver whose 513 learned
latents cross-attend to the Virchow tile embeddings (2560-d: class + mean patch token), each
layer followed by a 6-block latent transformer. Layers 2-7 reuse layer 1's cross-attention
and layers 1-7 reuse layer 0's transformer, as in the published model, so the module tree
(and the state-dict key names) are the published ones with the "image_resampler." prefix
removed. The slide embedding is the first latent after cls_norm (1280-d, PRISM's
"image_embedding"); the other 512 latents feed the report decoder and are not returned.

Written from the Perceiver in unicorn-baseline 1.4.4 (a copy of paige-ai/Prism's
perceiver.py); only batch-of-one inference without a padding mask is implemented (the
reference's all-ones float mask adds the same constant to every score, a no-op).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

LATENT_SEQ = 512
LATENT_DIM = 1280
CONTEXT_DIM = 2560
MHSA_HEADS = 8
PERCEIVER_DEPTH = 8
TRANSFORMER_DEPTH = 6
SHARE_XATTN_START_LAYER = 1  # layers after this one reuse its cross-attention
SHARE_TF_START_LAYER = 0  # layers after this one reuse its transformer


class CrossAttention(nn.Module):
    """Single-head cross-attention of the latents (queries) to the tiles (context)."""

    def __init__(self, query_dim: int, context_dim: int, heads: int = 1) -> None:
        super().__init__()
        self.heads = heads
        self.inner_dim = query_dim
        self.x_norm = nn.LayerNorm(query_dim)
        self.to_q = nn.Linear(query_dim, self.inner_dim, bias=False)
        self.to_kv = nn.Linear(context_dim, self.inner_dim * 2, bias=False)
        self.to_out = nn.Linear(self.inner_dim, query_dim, bias=False)

    def keys_values(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, n, _ = context.shape
        kv = self.to_kv(context).reshape(b, n, 2, self.heads, self.inner_dim // self.heads)
        k, v = kv.unbind(2)
        return k.transpose(1, 2), v.transpose(1, 2)

    def forward(self, x: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        b, n, _ = x.shape
        q = self.to_q(self.x_norm(x)).reshape(b, n, self.heads, -1).transpose(1, 2)
        a = F.scaled_dot_product_attention(q, kv[0], kv[1])
        return self.to_out(a.transpose(1, 2).reshape(b, n, self.inner_dim))


class GEGLU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, gates = x.chunk(2, dim=-1)
        return x * F.gelu(gates)


class FeedForward(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.net = nn.Sequential(nn.Linear(dim, dim * 2), GEGLU(), nn.Linear(dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.norm(x))


class MHSA(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.mha = nn.MultiheadAttention(dim, heads, bias=False, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        return self.mha(x, x, x, need_weights=False)[0]


def _cross_block(dim: int, context_dim: int) -> nn.ModuleDict:
    return nn.ModuleDict({"xattn": CrossAttention(dim, context_dim), "ff": FeedForward(dim)})


def _transformer(dim: int, heads: int) -> nn.ModuleList:
    return nn.ModuleList(
        nn.ModuleDict({"mhsa": MHSA(dim, heads), "ff": FeedForward(dim)})
        for _ in range(TRANSFORMER_DEPTH)
    )


class Perceiver(nn.Module):
    def __init__(self, latent_seq: int, dim: int, context_dim: int, heads: int) -> None:
        super().__init__()
        self.latents = nn.Parameter(torch.randn(latent_seq, dim))
        layers: list[nn.ModuleDict] = []
        for i in range(PERCEIVER_DEPTH):
            if i <= SHARE_XATTN_START_LAYER:
                xattn = _cross_block(dim, context_dim)
            else:
                xattn = layers[-1]["xattn"]
            tf = _transformer(dim, heads) if i <= SHARE_TF_START_LAYER else layers[-1]["tf"]
            layers.append(nn.ModuleDict({"xattn": xattn, "tf": tf}))
        self.layers = nn.ModuleList(layers)

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        x = self.latents.unsqueeze(0).expand(context.shape[0], -1, -1)
        kv = None
        for i, layer in enumerate(self.layers):
            block = layer["xattn"]
            if i <= SHARE_XATTN_START_LAYER:  # shared layers reuse the previous keys/values
                kv = block["xattn"].keys_values(context)
            x = block["xattn"](x, kv) + x
            x = block["ff"](x) + x
            for sub in layer["tf"]:
                x = sub["mhsa"](x) + x
                x = sub["ff"](x) + x
        return x


class PrismSlideEncoder(nn.Module):
    """forward(tiles (B, N, 2560)) -> the slide embedding (B, 1280).

    The keyword arguments size it (the defaults are the published PerceiverConfig; the tests
    also build a narrow twin with the same layer sharing)."""

    def __init__(
        self,
        *,
        latent_seq: int = LATENT_SEQ,
        latent_dim: int = LATENT_DIM,
        context_dim: int = CONTEXT_DIM,
        heads: int = MHSA_HEADS,
    ) -> None:
        super().__init__()
        self.cls_norm = nn.LayerNorm(latent_dim)
        self.img_norm = nn.LayerNorm(latent_dim)  # normalises the decoder's latents: loaded only
        # +1: the image-embedding query in front of the decoder's latents
        self.perceiver = Perceiver(latent_seq + 1, latent_dim, context_dim, heads)

    def forward(self, tiles: torch.Tensor) -> torch.Tensor:
        return self.cls_norm(self.perceiver(tiles)[:, 0])


def build() -> PrismSlideEncoder:
    """The architecture with random weights (the published file replaces them)."""
    return PrismSlideEncoder().eval()


def alias_groups(model: nn.Module) -> list[list[str]]:
    """State-dict names that share one tensor (the reused layers), first name first."""
    groups: dict[int, list[str]] = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        groups.setdefault(id(tensor), []).append(name)
    return list(groups.values())


def slide_encoder_state(
    state: dict[str, torch.Tensor], model: nn.Module, prefix: str = "image_resampler."
) -> dict[str, torch.Tensor]:
    """The published Prism checkpoint's slide-encoder tensors, keyed for PrismSlideEncoder.

    The text decoder and contrastive heads are dropped. A reused layer may be saved under one
    name only (safetensors keeps one of the shared names) or under all: either loads.
    """
    own = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
    out: dict[str, torch.Tensor] = {}
    for names in alias_groups(model):
        found = next((own[n] for n in names if n in own), None)
        if found is None:
            continue  # reported as missing by the strict load
        out.update(dict.fromkeys(names, found))
    out.update({k: v for k, v in own.items() if k not in out})  # extras: reported as unexpected
    return out
