"""CTransPath as CHIEF publishes it (CHIEF_CTransPath.pth): timm's Swin-T/4 (window 7) whose
patch embedding is a convolutional stem (two 3x3 stride-2 convolutions with batch norm and
ReLU, then a 1x1 convolution to 96 channels); 768-d average-pooled features.

The checkpoint was saved with timm 0.5.4 (downsampling at the end of a stage, persistent
relative-position-index and attention-mask buffers): old_swin_to_timm maps it onto the current
timm Swin with timm's own checkpoint filter (layout "swin-timm-0.5"). CHIEF's preprocessing:
resize to 224 px, ImageNet mean and std; tiles of 256 px at 10x (1 um/px) as CHIEF tiles slides,
i.e. 224 px at 256/224 um/px.
"""

from __future__ import annotations

from pathssl.encoder.presets import Preset, register


@register
def preset() -> Preset:
    return Preset(
        name="ctranspath",
        description="CTransPath Swin-T with a convolutional stem, as CHIEF publishes it "
        "(CHIEF_CTransPath.pth); the tile encoder of the CHIEF slide encoder",
        architecture="swin_tiny_patch4_window7_224",
        timm_kwargs={"embed_layer": "CTransPathConvStem"},
        embedding_dim=768,
        input_size_px=224,
        target_mpp=1.0 * 256 / 224,
        layout="swin-timm-0.5",
        source_url="https://github.com/hms-dbmi/CHIEF (weights: request access, Google Drive)",
    )
