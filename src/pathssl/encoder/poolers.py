"""Attentional poolers: CoCa-style image towers (CONCH v1, CONCH v1.5) pool the ViT's tokens with
one learned query attending to all of them (class token included), then a layer norm.

Parameter names follow the published checkpoints (`trunk.`, `attn_pool_contrast.`,
`ln_contrast.`), so their tensors load without renaming. Two variants, as published:
"attentional-pooler-mha" is open_clip's (CONCH v1: torch's MultiheadAttention with separate
q/k/v projections and biases); "attentional-pooler" is CoCa-pytorch's (CONCH v1.5 / TITAN:
bias-free `to_q`, packed `to_kv`, `to_out`).
"""

from __future__ import annotations

import torch

ATTENTION_POOLINGS = ("attentional-pooler", "attentional-pooler-mha")
POOLER_HEADS = 8  # both CONCH versions (open_clip's attn_pooler_heads, TITAN's n_head)
POOLER_QUERIES = 1  # the contrastive pooler: one query, its output is the image embedding


class AttentionalPooler(torch.nn.Module):
    """CONCH v1.5's pooler: multi-head cross-attention of learned queries over the tokens."""

    def __init__(self, dim: int, context_dim: int, heads: int = POOLER_HEADS) -> None:
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.query = torch.nn.Parameter(torch.zeros(POOLER_QUERIES, dim))
        self.ln_q = torch.nn.LayerNorm(dim)
        self.ln_k = torch.nn.LayerNorm(context_dim)
        self.to_q = torch.nn.Linear(dim, dim, bias=False)
        self.to_kv = torch.nn.Linear(context_dim, 2 * dim, bias=False)
        self.to_out = torch.nn.Linear(dim, dim, bias=False)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        return x.reshape(batch, length, self.heads, -1).transpose(1, 2)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        batch = tokens.shape[0]
        q = self.to_q(self.ln_q(self.query.expand(batch, -1, -1)))
        k, v = self.to_kv(self.ln_k(tokens)).chunk(2, dim=-1)
        q, k, v = self._split(q) * self.scale, self._split(k), self._split(v)
        sim = q @ k.transpose(-2, -1)
        attn = (sim - sim.amax(dim=-1, keepdim=True)).softmax(dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(batch, q.shape[2], -1)
        return self.to_out(out)


class MultiheadAttentionalPooler(torch.nn.Module):
    """CONCH v1's pooler (open_clip): the same idea through torch's MultiheadAttention."""

    def __init__(self, dim: int, context_dim: int, heads: int = POOLER_HEADS) -> None:
        super().__init__()
        self.query = torch.nn.Parameter(torch.zeros(POOLER_QUERIES, dim))
        self.attn = torch.nn.MultiheadAttention(dim, heads, kdim=context_dim, vdim=context_dim)
        self.ln_q = torch.nn.LayerNorm(dim)
        self.ln_k = torch.nn.LayerNorm(context_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.ln_k(tokens).permute(1, 0, 2)  # sequence first, as open_clip calls it
        q = self.ln_q(self.query).unsqueeze(1).repeat(1, x.shape[1], 1)
        return self.attn(q, x, x, need_weights=False)[0].permute(1, 0, 2)


class AttentionPooledEncoder(torch.nn.Module):
    """A timm ViT (`trunk`) whose tokens after the final norm are pooled by the pooler."""

    def __init__(self, trunk: torch.nn.Module, pooling: str, embedding_dim: int) -> None:
        super().__init__()
        pooler = (
            AttentionalPooler if pooling == "attentional-pooler" else MultiheadAttentionalPooler
        )
        self.trunk = trunk
        self.num_features = embedding_dim  # what the module gives per tile, as timm names it
        self.attn_pool_contrast = pooler(embedding_dim, trunk.num_features)
        self.ln_contrast = torch.nn.LayerNorm(embedding_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.attn_pool_contrast(self.trunk.forward_features(x))[:, 0]
        return self.ln_contrast(pooled)
