"""lazyslide: find_tissues -> tile_tissues(the bundle's tile side at its um/px; lazyslide reads
the nearest level and resizes when no level has that mpp) -> feature_extraction with the
shared ResNet-18 and its normalisation; the WSIData (zarr) written to --out as lazyslide does."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _common import bundle_tiling, load_resnet18, report, runner_arguments


def main() -> None:
    args = runner_arguments(__doc__)

    import lazyslide as zs
    import torch
    from torchvision.transforms import v2
    from wsidata import open_wsi

    module, mean, std = load_resnet18(args.bundle)
    tile_px, mpp = bundle_tiling(args.bundle)
    transform = v2.Compose(
        [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]
    )
    wsi = open_wsi(args.slide, store=str(args.out / "slide.zarr"))
    zs.pp.find_tissues(wsi)
    zs.pp.tile_tissues(wsi, tile_px, mpp=mpp)
    features = zs.tl.feature_extraction(
        wsi,
        module,
        transform=transform,
        device="cpu",
        batch_size=args.batch_size,
        pbar=False,
        return_features=True,
    )
    wsi.write()
    report("lazyslide", zs.__version__, features)


if __name__ == "__main__":
    main()
