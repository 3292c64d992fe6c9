"""`pathssl pretrain --init BUNDLE`: any method continues from a model bundle, keeping its
architecture and preprocessing; student and teacher backbones start from its weights, heads
fresh; the parent is recorded through export; the backbone's learning-rate factor and
freezing; exact resume."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from test_pretrain import tiny_config
from test_training import assert_identical

from pathssl.encoder.bundle import EncoderConfig, build_module, load_bundle
from pathssl.encoder.export import save_bundle
from pathssl.errors import PathsslError
from pathssl.pretrain.build import build_method
from pathssl.pretrain.config import PretrainConfig
from pathssl.pretrain.export import export_checkpoint, parent_sha256
from pathssl.pretrain.init_bundle import resolve_init
from pathssl.pretrain.step import TileStep
from pathssl.pretrain.trainer import load_checkpoint, pretrain
from pathssl.training.distributed import DistEnv
from pathssl.training.schedules import set_hyperparameters

ENV = DistEnv()
MEAN, STD = (0.70, 0.50, 0.60), (0.20, 0.25, 0.15)  # not ImageNet's: visibly the bundle's


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory, cmu_slide: Path) -> Path:
    path = tmp_path_factory.mktemp("manifest") / "slides.csv"
    path.write_text(f"path,stain,mpp\n{cmu_slide},H&E,\n")
    return path


def make_bundle(out: Path, architecture: str, timm_kwargs: dict[str, Any], **extra: Any) -> Path:
    """A "trained" bundle: 32 px at 1 um/px, its own mean/std, weights (BatchNorm statistics
    included) that no seed of a run would draw."""
    config = EncoderConfig(
        **extra,
        name=f"parent-{architecture}",
        architecture=architecture,
        embedding_dim=0,
        input_size_px=32,
        target_mpp=1.0,
        mean=MEAN,
        std=STD,
        trained=True,
        provenance="test parent",
        timm_kwargs=timm_kwargs,
    )
    torch.manual_seed(1234)
    module = build_module(config).eval()
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if name.endswith(("running_mean", "running_var")):
                tensor.copy_(torch.rand_like(tensor) + 0.5)
        dim = module(torch.zeros(1, 3, 32, 32)).shape[-1]
    config = EncoderConfig(**{**config.to_dict(), "embedding_dim": int(dim)})
    save_bundle(module, config, out)
    return out


@pytest.fixture(scope="module")
def cnn_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("cnn") / "bundle", "test_resnet", {})


@pytest.fixture(scope="module")
def vit_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("vit") / "bundle", "test_vit", {"img_size": 32})


@pytest.fixture(scope="module")
def virchow_like_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """As `import-weights` makes for Virchow2: SwiGLU, class + mean patch token, own eps."""
    kwargs = {"img_size": 32, "mlp_layer": "SwiGLUPacked", "act_layer": "SiLU", "global_pool": ""}
    out = tmp_path_factory.mktemp("virchow") / "bundle"
    return make_bundle(out, "test_vit", kwargs, pooling="cls+mean", layer_norm_eps=1e-5)


def init_config(
    manifest: Path, out: Path, bundle: Path, method: str = "byol", **kw: Any
) -> PretrainConfig:
    """tiny_config without the keys a bundle owns (architecture, input_px, target_mpps),
    left to the bundle."""
    values = tiny_config(manifest, out, method).to_dict()
    for key in ("architecture", "input_px", "target_mpps"):
        values.pop(key)
    values.update(batch_size=4, steps=3, warmup_steps=1, checkpoint_every=1, init=str(bundle))
    values.update(kw)
    return PretrainConfig(**values)


def backbone_states(method: torch.nn.Module) -> list[dict[str, torch.Tensor]]:
    return [b.state_dict() for b in method.backbones()]


def heads_state(method: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every tensor outside the backbone and its momentum copies."""
    skip = ("backbone.", *(f"{name}." for name in method.backbone_copies))
    return {k: v for k, v in method.state_dict().items() if not k.startswith(skip)}


@pytest.mark.parametrize(
    ("kind", "method"),
    [("cnn", "byol"), ("cnn", "moco"), ("cnn", "dino"), ("vit", "byol"), ("vit", "moco")],
)
def test_step0_backbones_are_the_bundles(
    kind: str, method: str, manifest: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    bundle_dir = request.getfixturevalue(f"{kind}_bundle")
    bundle = load_bundle(bundle_dir)
    step = TileStep(init_config(manifest, tmp_path, bundle_dir, method), ENV)
    scratch = build_method(step.cfg)  # the same config, without the bundle's weights
    step.fresh_start()  # what the loop calls on a run without a checkpoint
    model = step.model
    assert len(model.backbones()) == 2  # the student and its teacher / key encoder
    for state in backbone_states(model):  # student and teacher: the bundle's, bit for bit
        assert_identical(state, bundle.module.state_dict(), f"{kind} {method} backbone")
    assert_identical(heads_state(model), heads_state(scratch), "heads")  # heads: fresh


def test_every_method_starts_from_the_bundle(cnn_bundle: Path, manifest: Path) -> None:
    from pathssl.pretrain.init_bundle import load_parent_weights
    from pathssl.pretrain.methods import METHODS

    expected = load_bundle(cnn_bundle).module.state_dict()
    for method in sorted(METHODS):
        cfg = resolve_init(init_config(manifest, Path("unused"), cnn_bundle, method))
        model = build_method(cfg)
        load_parent_weights(model, cfg)
        for state in backbone_states(model):
            assert_identical(state, expected, method)


def test_a_contradicting_value_is_a_one_line_error(cnn_bundle: Path, tmp_path: Path) -> None:
    def error(overrides: list[str], path: Path | None = None) -> str:
        with pytest.raises(PathsslError) as info:
            PretrainConfig.from_yaml(path, overrides, init=cnn_bundle)
        assert "\n" not in str(info.value)
        return str(info.value)

    msg = error(["architecture=resnet50"])
    assert "architecture resnet50 (config) vs test_resnet (bundle)" in msg
    assert str(cnn_bundle) in msg and "parent-test_resnet" in msg
    msg = error(["input_px=64", "std=[0.2, 0.2, 0.2]", "timm_kwargs.output_stride=8"])
    assert "input_px 64 (config) vs 32 (bundle)" in msg and "std [0.2, 0.2, 0.2]" in msg
    assert "timm_kwargs.output_stride" not in msg  # a key the bundle leaves unset may be added
    # a value the config file states is stated, even the default: resnet18 is not test_resnet
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("method: simclr\narchitecture: resnet18\n")
    assert "architecture resnet18 (config) vs test_resnet" in error([], recipe)
    assert "target_mpps[0] 0.5 (config) vs target_mpp 1.0" in error(["target_mpps=[0.5]"])
    # stating the bundle's own values is no contradiction; more fields of view may follow
    cfg = PretrainConfig.from_yaml(
        None, ["architecture=test_resnet", "target_mpps=[1.0, 2.0]"], init=cnn_bundle
    )
    assert cfg.architecture == "test_resnet" and cfg.target_mpps == [1.0, 2.0]
    # a recipe's value unset with null: the bundle's
    recipe.write_text("method: simclr\narchitecture: resnet18\ninput_px: 112\n")
    cfg = PretrainConfig.from_yaml(
        recipe, ["architecture=null", "input_px=~", "steps=5"], init=cnn_bundle
    )
    assert (cfg.architecture, cfg.input_px, cfg.steps) == ("test_resnet", 32, 5)
    with pytest.raises(PathsslError, match="architecture=None is not a string"):
        PretrainConfig.from_yaml(recipe, ["architecture=null"])  # no bundle: no null
    # optional keys are typed as their type, or null
    assert PretrainConfig.from_yaml(None, ["layer_norm_eps=1e-5"]).layer_norm_eps == 1e-5
    assert PretrainConfig.from_yaml(None, ["init=null"]).init is None


def test_cli_contradiction_prints_one_line(
    cnn_bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pathssl.cli import main

    assert main(["pretrain", "--init", str(cnn_bundle), "--set", "architecture=resnet50"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: --init")
    assert "resnet50 (config) vs test_resnet (bundle)" in err


def test_preprocessing_comes_from_the_bundle(
    vit_bundle: Path, manifest: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="pathssl"):
        cfg = PretrainConfig.from_yaml(
            None, [f"manifest={manifest}", "method=byol"], init=vit_bundle
        )
    lines = [r.getMessage() for r in caplog.records if "--init" in r.getMessage()]
    assert len(lines) == 1 and "continuing from bundle parent-test_vit" in lines[0]
    assert "architecture test_vit" in lines[0] and "input_px 32" in lines[0]
    assert cfg.architecture == "test_vit" and cfg.timm_kwargs == {"img_size": 32}
    assert cfg.input_px == 32 and cfg.target_mpps == [1.0]
    assert cfg.mean == list(MEAN) and cfg.std == list(STD)
    parent = load_bundle(vit_bundle)
    assert cfg.parent["weights_sha256"] == parent.weights_sha256
    assert resolve_init(cfg) == cfg  # idempotent
    step = TileStep(PretrainConfig(**{**cfg.to_dict(), "output": str(tmp_path)}), ENV)
    assert step.mean.flatten().tolist() == pytest.approx(MEAN)
    assert step.std.flatten().tolist() == pytest.approx(STD)
    assert {v.size_px for v in step.model.view_specs()} == {32}
    assert step.source.source_px == 32


def test_export_names_the_parent(cnn_bundle: Path, manifest: Path, tmp_path: Path) -> None:
    from pathssl.cli import main

    run = pretrain(init_config(manifest, tmp_path / "run", cnn_bundle, "byol", steps=2))
    parent = load_bundle(cnn_bundle)
    state = load_checkpoint(run / "checkpoints/last.pt")
    assert state["config"]["parent"]["weights_sha256"] == parent.weights_sha256
    assert yaml.safe_load((run / "config.yaml").read_text())["parent"] == state["config"]["parent"]
    out = tmp_path / "child"
    assert main(["export", str(run / "checkpoints/last.pt"), "--output", str(out)]) == 0
    child = load_bundle(out)
    assert parent_sha256(child.config) == parent.weights_sha256
    assert "parent-test_resnet" in child.config.provenance
    assert child.config.name == "parent-test_resnet-byol-2steps"
    assert (child.config.input_size_px, child.config.target_mpp) == (32, 1.0)
    assert (child.config.mean, child.config.std) == (MEAN, STD)
    assert yaml.safe_load((out / "training-config.yaml").read_text())["parent"]["name"] == (
        "parent-test_resnet"
    )
    assert parent_sha256(parent.config) is None  # a bundle trained from scratch has none
    # trained on: the exported teacher is no longer the parent
    assert child.weights_sha256 != parent.weights_sha256
    again = export_checkpoint(run / "checkpoints/last.pt", tmp_path / "again", name="child")
    assert again.name == "child" and parent_sha256(again) == parent.weights_sha256


def test_a_preset_style_vit_continues_and_exports(
    virchow_like_bundle: Path, manifest: Path, tmp_path: Path
) -> None:
    parent = load_bundle(virchow_like_bundle)
    assert parent.config.embedding_dim == 128  # class token + mean patch token, 64 each
    cfg = init_config(manifest, tmp_path / "run", virchow_like_bundle, "dino", steps=2)
    cfg = PretrainConfig(**{**cfg.to_dict(), "method_kwargs": {**cfg.method_kwargs, "n_local": 0}})
    run = pretrain(cfg)
    resolved = PretrainConfig(**load_checkpoint(run / "checkpoints/last.pt")["config"])
    assert (resolved.pooling, resolved.layer_norm_eps) == ("cls+mean", 1e-5)
    child = export_checkpoint(run / "checkpoints/last.pt", tmp_path / "child")
    loaded = load_bundle(tmp_path / "child")
    for key in ("architecture", "timm_kwargs", "pooling", "layer_norm_eps", "embedding_dim"):
        assert getattr(loaded.config, key) == getattr(parent.config, key), key
    assert parent_sha256(child) == parent.weights_sha256


def test_frozen_backbone_keeps_the_bundles_weights(
    cnn_bundle: Path, manifest: Path, tmp_path: Path
) -> None:
    cfg = init_config(manifest, tmp_path, cnn_bundle, "byol", freeze_backbone_steps=2)
    expected = load_bundle(cnn_bundle).module.state_dict()
    step0 = heads_state(build_method(resolve_init(cfg)))
    pretrain(cfg, stop_after_steps=2)
    model = build_method(resolve_init(cfg))
    model.load_state_dict(load_checkpoint(tmp_path / "checkpoints/last.pt")["model"])
    for state in backbone_states(model):  # student and teacher, statistics included
        assert_identical(state, expected, "frozen backbone")
    changed = [k for k, v in heads_state(model).items() if not torch.equal(v, step0[k])]
    assert any(k.startswith("projection.") for k in changed)
    assert any(k.startswith("prediction.") for k in changed)
    # step 3 is past the freeze: the backbone trains
    pretrain(cfg)
    model.load_state_dict(load_checkpoint(tmp_path / "checkpoints/last.pt")["model"])
    trained = model.backbone.state_dict()
    assert any(
        not torch.equal(trained[k], expected[k]) for k, _ in model.backbone.named_parameters()
    )


def test_init_lr_scale_scales_the_backbone_only(cnn_bundle: Path, manifest: Path) -> None:
    cfg = init_config(manifest, Path("unused"), cnn_bundle, "simclr", init_lr_scale=0.1)
    step = TileStep(cfg, ENV)
    set_hyperparameters(step.optimizer, {"lr": 0.5, "weight_decay": 0.2})
    backbone = {id(p) for p in step.model.backbone.parameters()}
    for group in step.optimizer.param_groups:
        inside = {id(p) in backbone for p in group["params"]}
        assert len(inside) == 1  # a group is all backbone or all head
        assert group["lr"] == pytest.approx(0.05 if inside == {True} else 0.5)
    with pytest.raises(PathsslError, match=r"init_lr_scale=0\.1 .* give --init BUNDLE"):
        TileStep(tiny_config(manifest, Path("unused"), "simclr", init_lr_scale=0.1), ENV)


def test_resume_with_init_is_exact(vit_bundle: Path, manifest: Path, tmp_path: Path) -> None:
    def cfg(out: Path) -> PretrainConfig:
        return init_config(
            manifest, out, vit_bundle, "moco", init_lr_scale=0.5, freeze_backbone_steps=1
        )

    whole = pretrain(cfg(tmp_path / "whole"), resume=False)
    split = pretrain(cfg(tmp_path / "split"), resume=False, stop_after_steps=1)
    assert load_checkpoint(split / "checkpoints/last.pt")["step"] == 1
    pretrain(cfg(tmp_path / "split"), resume=True)
    a = load_checkpoint(whole / "checkpoints/last.pt")
    b = load_checkpoint(split / "checkpoints/last.pt")
    assert a["step"] == b["step"] == 3
    for state in (a, b):
        state["config"].pop("output")
    assert_identical(a, b)  # model (teachers, memory bank), optimiser, RNG, config, parent
    # a checkpoint continues its own parent only
    with pytest.raises(PathsslError, match=r"started from bundle 'parent-test_vit'.* no bundle"):
        pretrain(tiny_config(manifest, split, "moco", steps=4), resume=True)
