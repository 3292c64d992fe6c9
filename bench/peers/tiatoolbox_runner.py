"""TIAToolbox: DeepFeatureExtractor in WSI mode (its automatic tissue mask, patches of the
bundle's tile side at its um/px, stride one tile; TIAToolbox reads the nearest level and
resizes when no level has that mpp) with the shared ResNet-18 as a TIAToolbox model
(normalisation in its forward, as TIAToolbox's own backbones take 0-255 NHWC batches); zarr
written to --out."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _common import bundle_tiling, load_resnet18, report, runner_arguments


def main() -> None:
    args = runner_arguments(__doc__)

    import numpy as np
    import tiatoolbox
    import torch
    import zarr
    from tiatoolbox.models import DeepFeatureExtractor, IOPatchPredictorConfig
    from tiatoolbox.models.architecture.vanilla import _infer_batch
    from tiatoolbox.models.models_abc import ModelABC

    module, mean, std = load_resnet18(args.bundle)
    tile_px, mpp = bundle_tiling(args.bundle)

    class SharedResnet18(ModelABC):
        def __init__(self) -> None:
            super().__init__()
            self.net = module
            self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1) * 255)
            self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1) * 255)

        def forward(self, imgs: torch.Tensor) -> torch.Tensor:
            return self.net((imgs - self.mean) / self.std)

        @staticmethod
        def infer_batch(model: torch.nn.Module, batch_data: torch.Tensor, device: str):
            return [_infer_batch(model=model, batch_data=batch_data, device=device)]

    ioconfig = IOPatchPredictorConfig(
        input_resolutions=[{"units": "mpp", "resolution": mpp}],
        patch_input_shape=(tile_px, tile_px),
        stride_shape=(tile_px, tile_px),
    )
    extractor = DeepFeatureExtractor(
        model=SharedResnet18(), batch_size=args.batch_size, verbose=False
    )
    output = extractor.run(
        images=[args.slide],
        patch_mode=False,
        ioconfig=ioconfig,
        device="cpu",
        save_dir=args.out / "tiatoolbox",
        output_type="zarr",
        auto_get_mask=True,
        overwrite=True,
    )
    path = next(iter(output.values())) if isinstance(output, dict) else output
    store = zarr.open(str(path), mode="r")
    features = np.asarray(store["features"])
    report("tiatoolbox", tiatoolbox.__version__, features.reshape(features.shape[0], -1))


if __name__ == "__main__":
    main()
