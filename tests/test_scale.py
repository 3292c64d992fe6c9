"""Archive scale: sharding a slide list across processes, and a generated pyramidal slide."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from pathssl.embed import EmbedOptions, Shard, embed_slides

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))


def test_shard_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "SLURM_NTASKS", "SLURM_PROCID"):
        monkeypatch.delenv(key, raising=False)
    assert Shard.from_env() == Shard(0, 1, 0)
    monkeypatch.setenv("SLURM_NTASKS", "4")
    monkeypatch.setenv("SLURM_PROCID", "3")
    assert Shard.from_env().rank == 3 and Shard.from_env().world == 4
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert Shard.from_env() == Shard(1, 2, 0)
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(Exception, match="outside"):
        Shard.from_env()


def test_shards_are_disjoint_and_cover_the_list(
    tmp_path: Path,
    cmu_slide: Path,
    tiny_bundle,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    slides = tmp_path / "slides"
    slides.mkdir()
    for name in ("a", "b", "c"):
        shutil.copy(cmu_slide, slides / f"{name}.svs")
    out = tmp_path / "out"
    done = {}
    for rank in (0, 1):
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setenv("RANK", str(rank))
        reports = embed_slides([slides], out, tiny_bundle, EmbedOptions(num_workers=0, max_tiles=3))
        done[rank] = {Path(r.slide).name for r in reports if r.status == "complete"}
        summary = json.loads((out / f"summary-rank{rank}.json").read_text())
        assert len(summary["slides"]) == len(reports)
    assert done[0] == {"a.svs", "c.svs"} and done[1] == {"b.svs"}
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["a", "b", "c"]


def test_synthetic_pyramidal_tiff_end_to_end(tmp_path: Path, tiny_bundle) -> None:
    from synthetic_slide import ellipses, tissue_mask, write_synthetic_slide

    from pathssl.embed import embed_slide

    path = write_synthetic_slide(tmp_path / "syn.tif", 6000, 4000, mpp=0.25, seed=1)
    run = embed_slide(path, tmp_path / "out", tiny_bundle, EmbedOptions(num_workers=1))
    assert run["slide"]["vendor"] == "generic-tiff" and run["slide"]["levels"] >= 4
    assert run["resolution"] == {"mpp": 0.25, "source": "openslide.mpp-x/y (generic-tiff)"}
    assert run["tiling"]["level"] == 3  # 2 um/px is level 3 (0.25 x 8)
    patches = json.loads((tmp_path / "out/patch-neural-representation.json").read_text())
    size = run["tiling"]["stride_level0_px"]
    shapes = ellipses(1)
    import numpy as np

    for p in patches[0]["patches"]:  # every tile's centre lies in (or at the rim of) tissue
        x, y = p["coordinates"]
        cx, cy = (x + size / 2) / 6000, (y + size / 2) / 4000
        near = [
            tissue_mask(np.array(cx + dx), np.array(cy + dy), shapes)
            for dx in (-0.02, 0, 0.02)
            for dy in (-0.02, 0, 0.02)
        ]
        assert any(bool(n) for n in near)
