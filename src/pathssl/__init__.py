"""pathssl: self-supervised learning for digital pathology."""

__version__ = "0.1.0"


def load_encoder(model_dir=None):
    """`(module, preprocess)` for a model bundle; see pathssl.encoder.bundle.load_encoder."""
    from pathssl.encoder.bundle import load_encoder as _load_encoder

    return _load_encoder(model_dir)


__all__ = ["__version__", "load_encoder"]
