"""Archive scale: sharding a slide list across processes, and a generated pyramidal slide."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from pathssl.embed import EmbedOptions, embed_slides
from pathssl.embed.run import RunSettings
from pathssl.embed.shard import Shard, resolve_shard
from pathssl.errors import PathsslError

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))


def test_shard_only_on_purpose() -> None:
    """Sharding is asked for (--shard I/N, --shard env) or comes from a torchrun/srun launch
    of several tasks; variables of a job script alone never shard, and say so."""
    assert resolve_shard(None, {}) == (Shard(), None)
    shard, note = resolve_shard(None, {"SLURM_NTASKS": "4", "SLURM_PROCID": "3"})
    assert shard.world == 1 and "SLURM_NTASKS=4" in note and "--shard env" in note
    shard, note = resolve_shard(None, {"WORLD_SIZE": "2", "RANK": "1"})
    assert shard.world == 1 and "WORLD_SIZE=2" in note
    torchrun = {"TORCHELASTIC_RUN_ID": "x", "WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"}
    assert resolve_shard(None, torchrun) == (Shard(1, 2, 1, "torchrun"), None)
    srun = {"SLURM_STEP_NUM_TASKS": "4", "SLURM_NTASKS": "4", "SLURM_PROCID": "3"}
    assert resolve_shard(None, srun)[0] == Shard(3, 4, 0, "srun")
    env = {"SLURM_NTASKS": "4", "SLURM_PROCID": "3"}
    assert resolve_shard("env", env)[0] == Shard(3, 4, 0, "environment (--shard env)")
    assert resolve_shard("1/3", env)[0] == Shard(1, 3, 0, "--shard")
    for bad, env in (("3/2", {}), ("x", {}), ("env", {"SLURM_NTASKS": ""})):
        with pytest.raises(PathsslError, match=r"--shard|SLURM_NTASKS") as err:
            resolve_shard(bad, env)
        assert "\n" not in str(err.value)
    assert resolve_shard(None, {"SLURM_NTASKS": ""}) == (Shard(), None)  # not asked: ignored


def test_shards_are_disjoint_and_cover_the_list(
    tmp_path: Path, cmu_slide: Path, tiny_bundle
) -> None:
    slides = tmp_path / "slides"
    slides.mkdir()
    for name in ("a", "b", "c"):
        shutil.copy(cmu_slide, slides / f"{name}.svs")
    out = tmp_path / "out"
    done = {}
    for rank in (0, 1):
        run = RunSettings(shard=Shard(rank, 2, 0, "--shard"))
        options = EmbedOptions(num_workers=0, max_tiles=3)
        reports = embed_slides([slides], out, tiny_bundle, options, run=run)
        done[rank] = {Path(r.slide).name for r in reports if r.status == "complete"}
        summary = json.loads((out / f"summary-rank{rank}.json").read_text())
        assert len(summary["slides"]) == len(reports)
        assert summary["shard"]["world"] == 2 and summary["shard"]["rank"] == rank
        assert summary["shard"]["slides_owned"] == (["a", "c"] if rank == 0 else ["b"])
        assert sorted(summary["inputs"]) == ["a", "b", "c"]
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
