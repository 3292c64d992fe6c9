"""Where `pathssl embed` spends its time, stage by stage, on one slide and one model.

    python bench/embed_profile.py --slide SLIDE [--model DIR] [--json OUT]
    python bench/embed_profile.py --synthetic 40000x30000 --model DIR

Each stage runs alone, in order, over the same tiles the pipeline embeds: open, resolution,
thumbnail, tissue, tiling, region read and decode, cutting and reducing tiles, tile QC,
normalisation, the encoder, staging the features, and the outputs (features.h5, the UNICORN
JSON, .mha feature map, mask, preview, run record). Reading stages run on one thread, the
encoder as the pipeline runs it (every core), so the table is in seconds of one stage alone,
and per tile. Then `embed_slide` runs end to end on the same slide for the total.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from pathssl.runtime import configure_openmp

configure_openmp()  # as `pathssl embed` does, before PyTorch loads

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from pathssl.atomic import staged_outputs  # noqa: E402
from pathssl.embed import EmbedOptions, embed_slide  # noqa: E402
from pathssl.embed.plan import plan_slide  # noqa: E402
from pathssl.embed.slide import EmbeddedTiles, _slide_outputs  # noqa: E402
from pathssl.encoder.bundle import load_bundle  # noqa: E402
from pathssl.encoder.inference import DeviceSettings, engine_input, prepare_module  # noqa: E402
from pathssl.encoder.openvino_engine import resolve_engine  # noqa: E402
from pathssl.outputs.feature_store import FeatureStore  # noqa: E402
from pathssl.outputs.slide_outputs import write_slide_outputs  # noqa: E402
from pathssl.slide import open_slide, resolve_mpp  # noqa: E402
from pathssl.tiles.grid import TilingSpec, plan_tiles  # noqa: E402
from pathssl.tiles.loading import cut_tiles, plan_blocks, reduction_factor  # noqa: E402
from pathssl.tissue.detection import detect_tissue, render_thumbnail  # noqa: E402
from pathssl.tissue.tile_qc import TileQC  # noqa: E402


class Clock:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def time(self, stage: str, fn, *args, **kwargs):
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        self.seconds[stage] += time.perf_counter() - t0
        return out


def profile_planning(clock: Clock, slide_path: Path, bundle) -> tuple:
    slide = clock.time("open", open_slide, slide_path)
    res = clock.time("resolution", resolve_mpp, slide, None)
    thumb = clock.time("thumbnail", render_thumbnail, slide, res.mpp)
    tissue = clock.time("tissue detection", detect_tissue, thumb)
    cfg = bundle.config
    spec = TilingSpec(cfg.target_mpp, cfg.input_size_px)
    grid = clock.time("tiling", plan_tiles, slide.levels, res.mpp, tissue, spec)
    return slide, grid, slide.levels[grid.level].downsample


def profile_reading(clock: Clock, slide, grid, downsample: float) -> np.ndarray:
    """The region reads and the cutting, on one thread, as read_block does for dense blocks."""
    factor = reduction_factor(grid, downsample)
    tiles = np.empty((len(grid), 3, grid.tile_size_px, grid.tile_size_px), np.uint8)
    for block in plan_blocks(grid, downsample):
        args = (block.x_l0, block.y_l0, grid.level, block.width, block.height)
        if factor is None:
            region = clock.time("read and decode", slide.read_region, *args)
            cut = clock.time(
                "cut and resize",
                cut_tiles,
                region,
                block.offsets,
                grid.read_size_px,
                grid.tile_size_px,
            )
        else:
            image = clock.time("read and decode", slide.read_region_image, *args)
            region = clock.time("cut and resize", lambda im: np.asarray(im.reduce(factor)), image)
            cut = clock.time(
                "cut and resize",
                cut_tiles,
                region,
                block.offsets // factor,
                grid.tile_size_px,
                grid.tile_size_px,
            )
        tiles[block.indices] = cut
    return tiles


@torch.inference_mode()
def profile_encoding(clock: Clock, tiles: np.ndarray, bundle, batch_size: int, store) -> TileQC:
    settings = DeviceSettings.auto("cpu")
    module = prepare_module(bundle, settings, engine=resolve_engine("auto", settings.device))
    module(engine_input(module, torch.from_numpy(tiles[:batch_size]), bundle.config))  # warm
    qc = TileQC.empty(len(tiles))
    for start in range(0, len(tiles), batch_size):
        batch = tiles[start : start + batch_size]
        idx = np.arange(start, start + len(batch))
        clock.time("tile QC", qc.measure, batch, idx)
        x = clock.time("normalise", engine_input, module, torch.from_numpy(batch), bundle.config)
        out = clock.time("encoder", lambda t: module(t).float().numpy(), x)
        clock.time("stage features", store.write, idx, out)
    return qc


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--slide", type=Path)
    src.add_argument("--synthetic", help="WIDTHxHEIGHT of a synthetic 0.25 um/px slide")
    p.add_argument("--model", type=Path, default=ROOT / "model")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="pathssl-profile-"))
    slide_path = args.slide
    if args.synthetic:
        from synthetic_slide import write_synthetic_slide

        w, h = (int(v) for v in args.synthetic.lower().split("x"))
        slide_path = write_synthetic_slide(tmp / f"synthetic_{w}x{h}.tif", w, h)
    bundle = load_bundle(args.model)
    clock = Clock()
    slide, grid, downsample = profile_planning(clock, slide_path, bundle)
    tiles = profile_reading(clock, slide, grid, downsample)
    store = FeatureStore(tmp / "features.raw", len(grid), bundle.config.embedding_dim)
    qc = profile_encoding(clock, tiles, bundle, args.batch_size, store)
    features = store.finish()
    options = EmbedOptions(engine="auto")
    plan = plan_slide(slide_path, bundle, options)
    embedded = EmbeddedTiles(np.asarray(features), [], qc, "", "")
    with staged_outputs(tmp / "outputs") as stage:
        outputs = _slide_outputs(
            slide_path.name, plan, plan.grid, embedded,
            embedding=features.mean(axis=0), bundle=bundle,
        )  # fmt: skip
        clock.time("outputs", write_slide_outputs, stage, options.layout, outputs)
    slide.close()
    t0 = time.perf_counter()
    embed_slide(slide_path, tmp / "e2e", bundle, options)
    end_to_end_s = time.perf_counter() - t0
    n = len(grid)
    total = sum(clock.seconds.values())
    report = {
        "slide": str(slide_path),
        "model": bundle.config.name,
        "architecture": bundle.config.architecture,
        "input_size_px": bundle.config.input_size_px,
        "target_mpp": bundle.config.target_mpp,
        "tiles": n,
        "torch_threads": torch.get_num_threads(),
        "stages_s": {k: round(v, 4) for k, v in clock.seconds.items()},
        "stages_sum_s": round(total, 3),
        "end_to_end_s": round(end_to_end_s, 3),
    }
    print(f"{slide_path.name}: {n} tiles, {bundle.config.name} ({bundle.config.architecture}, "
          f"{bundle.config.input_size_px} px at {bundle.config.target_mpp} um/px)")  # fmt: skip
    print(f"{'stage':<18} {'s':>8} {'ms/tile':>8} {'share':>6}")
    for stage, s in clock.seconds.items():
        print(f"{stage:<18} {s:8.3f} {1000 * s / max(n, 1):8.3f} {s / total:6.1%}")
    print(f"{'sum of stages':<18} {total:8.3f}; end to end {end_to_end_s:.3f} s")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
