"""A ResNet-50 trunk (2048-d), e.g. Lunit's Barlow Twins/SwAV/MoCo v2 ResNet-50 checkpoints."""

from pathssl.encoder.presets import Preset, register


@register
def preset() -> Preset:
    return Preset(
        name="resnet50",
        description="ResNet-50 trunk, torchvision/timm key layout",
        architecture="resnet50",
        timm_kwargs={},
        embedding_dim=2048,
        source_url="https://github.com/lunit-io/benchmark-ssl-pathology/releases",
    )
