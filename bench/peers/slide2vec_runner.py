"""slide2vec: hs2p tissue segmentation and tiling, then its embedding loop, with the shared
ResNet-18 registered as a slide2vec tile encoder (the bundle's tile side as its input_size and
its um/px as its supported spacing, fp32, as slide2vec's presets are declared: slide2vec tiles
at the preset's spacing and size, reading the level within its 5 % tolerance or resizing from a
finer one); tile features written to --out as slide2vec does."""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _common import bundle_tiling, load_resnet18, report, runner_arguments


def main() -> None:
    args = runner_arguments(__doc__)
    os.environ["PATHSSL_PEER_BUNDLE"] = str(args.bundle.resolve())
    tile_px, mpp = bundle_tiling(args.bundle)

    import slide2vec
    from slide2vec import ExecutionOptions, Model, PreprocessingConfig
    from slide2vec.encoders.base import TorchTileEncoder
    from slide2vec.encoders.registry import register_encoder

    @register_encoder(
        "pathssl-resnet18",
        encode_dim=512,
        input_size=tile_px,
        supports_variable_input_size=False,
        supported_spacing_um=mpp,
        precision="fp32",
        source="local pathssl bundle",
    )
    class PathsslResnet18(TorchTileEncoder):
        def __init__(self, *, output_variant: str | None = None) -> None:
            module, mean, std = load_resnet18(Path(os.environ["PATHSSL_PEER_BUNDLE"]))
            super().__init__(
                module,
                encode_dim=512,
                input_size=tile_px,
                mean=tuple(mean),
                std=tuple(std),
                output_variant=output_variant,
            )

        def encode_tiles(self, batch):
            return self._model(batch)

    model = Model.from_preset("pathssl-resnet18", device="cpu")
    embedded = model.embed_slide(
        args.slide,
        preprocessing=PreprocessingConfig(),
        execution=ExecutionOptions(
            output_dir=args.out, batch_size=args.batch_size, precision="fp32"
        ),
    )
    report("slide2vec", slide2vec.__version__, embedded.tile_embeddings)


if __name__ == "__main__":
    main()
