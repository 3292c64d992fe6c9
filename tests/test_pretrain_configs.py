"""Every shipped pretraining config loads, names a registered method and points at files
that exist, so that a documented command does not fail on a stale config."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from pathssl.pretrain.config import PretrainConfig
from pathssl.pretrain.methods import METHODS

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs" / "pretrain").glob("*.yaml"))


def test_the_configs_are_found() -> None:
    assert len(CONFIGS) >= 8


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_a_shipped_config_loads(path: Path) -> None:
    cfg = PretrainConfig.from_yaml(path)
    assert cfg.method in METHODS
    accepted = inspect.signature(METHODS[cfg.method]).parameters
    assert set(cfg.method_kwargs) <= set(accepted), set(cfg.method_kwargs) - set(accepted)
    if cfg.manifest is not None:
        assert (ROOT / cfg.manifest).is_file(), cfg.manifest
    assert all(m > 0 for m in cfg.target_mpps)
    assert 0 <= cfg.warmup_steps < cfg.steps
    assert cfg.freeze_backbone_steps < cfg.steps
