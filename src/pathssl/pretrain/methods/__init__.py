"""Self-supervised methods, one file each, declared in a small registry.

Losses, heads and momentum utilities come from `lightly`; what a method owns here is which
views it needs, how its networks are wired, and which encoder is exported.
"""

from __future__ import annotations

from collections.abc import Callable

from pathssl.pretrain.methods.base import SSLMethod

METHODS: dict[str, Callable[..., SSLMethod]] = {}


def register(name: str) -> Callable[[type[SSLMethod]], type[SSLMethod]]:
    def wrap(cls: type[SSLMethod]) -> type[SSLMethod]:
        cls.name = name
        METHODS[name] = cls
        return cls

    return wrap


from pathssl.pretrain.methods import barlow, byol, dino, moco, simclr  # noqa: E402

_ = (barlow, byol, dino, moco, simclr)
__all__ = ["METHODS", "SSLMethod", "register"]
