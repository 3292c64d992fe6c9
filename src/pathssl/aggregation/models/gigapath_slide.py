"""Prov-GigaPath's slide encoder (gigapath_slide_enc12l768d): tile features plus a fixed 2-D
sin-cos position of each tile on a 256 px grid at 0.5 mpp, a class token, and a 12-layer
LongNet encoder whose self-attention is dilated attention (several segment lengths and dilation
rates, mixed by their log-sum-exp). Written in plain PyTorch (no flash-attn, xformers, fairseq,
fairscale or einops) from prov-gigapath's gigapath/slide_encoder.py and its torchscale copy;
parameter names follow the published slide_encoder.pth so that it loads unchanged.

The reference pads segments and dilation groups with zero keys that take part in the softmax
(flash attention sees them as real keys); this copy pads the same way so that it gives the
same numbers, not only the same idea.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

IN_DIM = 1536
DIM = 768
DEPTH = 12
HEADS = 16
FFN_DIM = 3072
TILE_SIZE_PX = 256  # the grid the positions were learned on: 256 px tiles at 0.5 mpp
DILATED_RATIOS = (1, 2, 4, 8, 16)
# LongNetViT.get_optimal_segment_length(262144, 256): 2 ** linspace(10, 20, 5), truncated.
SEGMENT_LENGTHS = (1024, 5792, 32768, 185363, 1048576)
LSE_FILL = -1e8  # the reference's log-sum-exp of a position a branch does not cover
SCORE_BUDGET = 1 << 26  # attention scores computed at once (bounds the memory, ~256 MB)


def sincos_1d(dim: int, pos: torch.Tensor) -> torch.Tensor:
    """MAE's 1-D sin-cos embedding of integer positions, in float64 like the reference."""
    omega = torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0)
    omega = 1.0 / 10000**omega
    out = pos.to(torch.float64)[:, None] * omega[None, :]
    return torch.cat([torch.sin(out), torch.cos(out)], dim=1)


def grid_pos_embed(dim: int, col: torch.Tensor, row: torch.Tensor) -> torch.Tensor:
    """The row of get_2d_sincos_pos_embed for a tile in grid column col (x) and row row (y):
    the first half encodes the y index, the second the x index (MAE's meshgrid order)."""
    return torch.cat([sincos_1d(dim // 2, row), sincos_1d(dim // 2, col)], dim=1).float()


def attention_with_lse(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax attention over (batch, length, dim) and its log-sum-exp, as flash-attn returns
    them; rows are processed in chunks so that a long segment does not exhaust memory."""
    scale = q.shape[-1] ** -0.5
    rows = max(1, SCORE_BUDGET // max(1, q.shape[1] * k.shape[1]))
    outs, lses = [], []
    for start in range(0, q.shape[0], rows):
        sl = slice(start, start + rows)
        scores = torch.bmm(q[sl], k[sl].transpose(1, 2)) * scale
        lse = torch.logsumexp(scores, dim=-1)
        outs.append(torch.bmm(torch.exp(scores - lse[..., None]), v[sl]))
        lses.append(lse)
    return torch.cat(outs), torch.cat(lses)


def dense_to_sparse(x: torch.Tensor, ratio: int) -> torch.Tensor:
    """(segments, length, heads, d) -> (segments, length / ratio, heads, d): head group g keeps
    the positions congruent to g modulo ratio (zero-padded to a multiple of ratio)."""
    heads = x.shape[2]
    x = F.pad(x, (0, 0, 0, (-heads) % ratio, 0, (-x.shape[1]) % ratio))
    b, length, padded_heads, d = x.shape
    x = x.reshape(b, length // ratio, ratio, ratio, padded_heads // ratio, d)
    x = torch.diagonal(x, dim1=2, dim2=3)  # (b, l, h, d, ratio)
    x = x.permute(0, 1, 4, 2, 3).reshape(b, length // ratio, padded_heads, d)
    return x[:, :, :heads]


def gather(x: torch.Tensor, segment: int, ratio: int) -> torch.Tensor:
    """(b, L, heads, d) -> (b * segments * heads, length / ratio, d) for one branch."""
    _, length, heads, d = x.shape
    segment = min(segment, length)
    x = F.pad(x, (0, 0, 0, 0, 0, (-length) % segment))
    x = dense_to_sparse(x.reshape(-1, segment, heads, d), ratio)
    return x.permute(0, 2, 1, 3).reshape(-1, x.shape[1], d)


def sparse_to_dense(
    out: torch.Tensor, lse: torch.Tensor, ratio: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(segments, heads, l, d) and (segments, heads, l) back to every position of the segment;
    positions a head group did not attend get output 0 and log-sum-exp LSE_FILL."""
    segs, heads, length, d = out.shape
    per_group = (heads + (-heads) % ratio) // ratio
    dense = out.new_zeros(segs, per_group * ratio, length * ratio, d)
    dense_lse = lse.new_zeros(segs, per_group * ratio, length * ratio)
    for g in range(ratio):
        src = slice(g * per_group, min((g + 1) * per_group, heads))
        dst = slice(g * per_group, g * per_group + (src.stop - src.start))
        dense[:, dst, g::ratio] = out[:, src]
        dense_lse[:, dst, g::ratio] = lse[:, src]
    # Like the reference (diag_embed, then every exact zero becomes LSE_FILL).
    dense_lse = dense_lse.masked_fill(dense_lse == 0, LSE_FILL)
    return dense[:, :heads], dense_lse[:, :heads]


class DilatedAttention(nn.Module):
    """torchscale's DilatedAttention (subln: a LayerNorm before out_proj), encoder only."""

    def __init__(self, dim: int, heads: int, segments: tuple[int, ...], ratios: tuple[int, ...]):
        super().__init__()
        self.heads = heads
        self.segments = segments
        self.ratios = ratios
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)
        self.inner_attn_ln = nn.LayerNorm(dim, eps=1e-5)

    def branch(self, qkv: tuple[torch.Tensor, ...], segment: int, ratio: int) -> tuple:
        """One (segment length, dilation) branch: its output and log-sum-exp at every position."""
        b, length, heads, d = qkv[0].shape
        q, k, v = (gather(t, segment, ratio) for t in qkv)
        out, lse = attention_with_lse(q, k, v)
        out = out.reshape(-1, heads, out.shape[1], d)
        out, lse = sparse_to_dense(out, lse.reshape(-1, heads, lse.shape[-1]), ratio)
        # Segments back to one sequence (padding inside a segment kept, as the reference does).
        padded = out.shape[2]
        out = out.reshape(b, -1, heads, padded, d).permute(0, 2, 1, 3, 4).reshape(b, heads, -1, d)
        lse = lse.reshape(b, -1, heads, padded).permute(0, 2, 1, 3).reshape(b, heads, -1)
        return out[:, :, :length], lse[:, :, :length]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, length, dim = x.shape
        shape = (b, length, self.heads, dim // self.heads)
        qkv = tuple(proj(x).reshape(shape) for proj in (self.q_proj, self.k_proj, self.v_proj))
        outs, lses = zip(
            *(self.branch(qkv, s, r) for s, r in zip(self.segments, self.ratios, strict=True)),
            strict=True,
        )
        weights = torch.softmax(torch.stack(lses), dim=0)  # = exp(lse - max) / sum, per position
        out = (torch.stack(outs) * weights[..., None]).sum(0)  # (b, heads, L, d)
        out = out.permute(0, 2, 1, 3).reshape(b, length, dim)
        return self.out_proj(self.inner_attn_ln(out))


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.ffn_layernorm = nn.LayerNorm(hidden, eps=1e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.ffn_layernorm(F.gelu(self.fc1(x))))


class EncoderLayer(nn.Module):
    """Pre-norm (subln) LongNet layer; dropout and drop-path are training-only."""

    def __init__(self, dim: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.self_attn = DilatedAttention(dim, heads, SEGMENT_LENGTHS, DILATED_RATIOS)
        self.self_attn_layer_norm = nn.LayerNorm(dim, eps=1e-5)
        self.ffn = FeedForward(dim, hidden)
        self.final_layer_norm = nn.LayerNorm(dim, eps=1e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.self_attn_layer_norm(x))
        return x + self.ffn(self.final_layer_norm(x))


class LongNetEncoder(nn.Module):
    def __init__(self, dim: int, depth: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(dim, heads, hidden) for _ in range(depth))
        self.layer_norm = nn.LayerNorm(dim, eps=1e-5)


class PatchEmbed(nn.Module):
    def __init__(self, in_dim: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(in_dim, dim)


class GigaPathSlideEncoder(nn.Module):
    """forward(features (B, N, 1536), coords (B, N, 2) x, y in px of the 0.5 mpp grid) returns
    the class token (B, 768). The keyword arguments size the encoder (the defaults are the
    published gigapath_slide_enc12l768d; the tests also build a narrow, shallow twin).

    final_encoder_norm=False is gigapath.pipeline.run_inference_with_slide_encoder's
    "last_layer_embed" (the last layer's output, then norm); True is the model's plain forward
    (the encoder's closing layer_norm, then norm).
    """

    def __init__(
        self,
        *,
        in_dim: int = IN_DIM,
        dim: int = DIM,
        depth: int = DEPTH,
        heads: int = HEADS,
        ffn_dim: int = FFN_DIM,
        final_encoder_norm: bool = False,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.final_encoder_norm = final_encoder_norm
        self.patch_embed = PatchEmbed(in_dim, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.encoder = LongNetEncoder(dim, depth, heads, ffn_dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        nn.init.normal_(self.cls_token, std=0.02)

    def forward(self, features: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        cells = torch.floor(coords.to(torch.float32) / TILE_SIZE_PX).long()
        pos = grid_pos_embed(self.dim, cells[..., 0].reshape(-1), cells[..., 1].reshape(-1))
        x = self.patch_embed.proj(features) + pos.reshape(*cells.shape[:-1], self.dim)
        # The class token's position row is all zeros in the reference.
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        for layer in self.encoder.layers:
            x = layer(x)
        if self.final_encoder_norm:
            x = self.encoder.layer_norm(x)
        return self.norm(x)[:, 0]


def build() -> GigaPathSlideEncoder:
    """The architecture with random weights (the published file replaces them)."""
    return GigaPathSlideEncoder().eval()


def grid_coords_px(coords_level0_px: torch.Tensor, patch_size_level0_px: int) -> torch.Tensor:
    """Level-0 top-left corners -> the same tiles' corners on the 256 px grid at 0.5 mpp, so
    that every tile gets its own grid cell whatever the scan's resolution."""
    cells = torch.div(coords_level0_px.long(), int(patch_size_level0_px), rounding_mode="floor")
    return cells * TILE_SIZE_PX


def positions_fit(coords: torch.Tensor) -> bool:
    """The pretrained grid is 1000 x 1000 tiles (slide_ngrids); beyond it the reference fails."""
    return bool(coords.numel() == 0 or int(coords.max()) // TILE_SIZE_PX < 1000)


__all__ = ["GigaPathSlideEncoder", "build", "grid_coords_px", "positions_fit"]
