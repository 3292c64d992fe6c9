"""The `pathssl` command line. Expected failures print one line; --debug shows tracebacks."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pathssl.errors import PathsslError

if TYPE_CHECKING:
    from pathssl.pipeline import EmbedOptions

log = logging.getLogger("pathssl")


def add_embedding_arguments(p: argparse.ArgumentParser) -> None:
    """The options `pathssl embed` and the container's process.py share."""
    p.add_argument(
        "--model",
        type=Path,
        default=None,
        help="model bundle (default: /opt/ml/model, then the bundled model/)",
    )
    p.add_argument(
        "--mpp",
        type=float,
        default=None,
        help="level-0 microns per pixel; overrides (and replaces missing) metadata",
    )
    p.add_argument(
        "--batch-size", type=int, default=64, help="tiles per encoder forward pass (default: 64)"
    )
    p.add_argument(
        "--no-gpu-decode",
        dest="gpu_decode",
        action="store_false",
        help="on a GPU, read JPEG-tiled slides with OpenSlide on the CPU instead of decoding "
        "their tiles on the GPU (default: decode on the GPU)",
    )
    p.add_argument(
        "--engine",
        choices=["auto", "pytorch", "openvino"],
        default="auto",
        help="what runs the encoder: auto = OpenVINO on a CPU where it is installed (1.6x "
        "PyTorch for the bundled model, same features within 1e-5), else PyTorch "
        "(default: auto)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="reading processes (default: cores - 1 with a GPU, none on a CPU)",
    )
    p.add_argument(
        "--read-threads",
        type=int,
        default=None,
        help="reading threads when there are no reading processes (default: cores, up to 4)",
    )


def embedding_options(args: argparse.Namespace, **more: object) -> EmbedOptions:
    """EmbedOptions from the shared options (add_embedding_arguments) and `more`."""
    from pathssl.pipeline import EmbedOptions

    return EmbedOptions(
        mpp=args.mpp,
        batch_size=args.batch_size,
        engine=args.engine,
        gpu_decode=args.gpu_decode,
        num_workers=args.workers,
        read_threads=args.read_threads,
        **more,
    )


def _add_embed(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("embed", help="embed whole-slide images: tiles, feature map, slide vector")
    p.add_argument("paths", nargs="+", type=Path, help="slide files or folders of slides")
    p.add_argument("--output", "-o", type=Path, required=True, help="one folder per slide here")
    add_embedding_arguments(p)
    p.add_argument(
        "--tissue-mask",
        type=Path,
        default=None,
        help="tissue mask image covering the slide (non-zero = tissue)",
    )
    p.add_argument(
        "--min-tissue",
        type=float,
        default=0.25,
        help="minimum tissue fraction of a kept tile (default 0.25)",
    )
    p.add_argument(
        "--drop-flagged",
        action="store_true",
        help="leave tiles flagged by tile QC (marker ink, out of focus) out of every output; "
        "by default they are kept and flagged in features.h5, run.json and the preview",
    )
    p.add_argument(
        "--keep-ink",
        action="store_true",
        help="do not exclude marker ink from tissue (for stains with green or blue "
        "components, e.g. Masson's trichrome, which the ink rules would take for ink)",
    )
    p.add_argument(
        "--max-tiles",
        type=int,
        default=None,
        help="cap per slide, by even deterministic subsampling",
    )
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    p.add_argument("--compile", action="store_true", help="torch.compile the encoder")
    p.add_argument(
        "--augmentations",
        type=int,
        default=0,
        metavar="K",
        help="also store K augmented copies of every tile's features (slide SSL)",
    )
    p.add_argument("--no-resume", action="store_true", help="recompute complete slides")
    p.set_defaults(func=_run_embed)


def _run_embed(args: argparse.Namespace) -> int:
    from pathssl.runtime import configure_openmp

    configure_openmp()  # before PyTorch loads
    from pathssl.encoder.bundle import load_bundle
    from pathssl.pipeline import embed_slides

    if args.tissue_mask is not None and len(args.paths) != 1:
        raise PathsslError("--tissue-mask goes with exactly one slide")
    bundle = load_bundle(args.model)
    _log_model(bundle)
    options = embedding_options(
        args,
        tissue_mask=args.tissue_mask,
        min_tissue_fraction=args.min_tissue,
        exclude_ink=not args.keep_ink,
        drop_flagged=args.drop_flagged,
        max_tiles=args.max_tiles,
        device=args.device,
        compile=args.compile,
        augmentations=args.augmentations,
    )
    reports = embed_slides(args.paths, args.output, bundle, options, resume=not args.no_resume)
    failed = [r for r in reports if r.status == "failed"]
    done = sum(r.status == "complete" for r in reports)
    locked = sum(r.status == "skipped" and r.error is not None for r in reports)
    skipped = sum(r.status == "skipped" for r in reports) - locked
    print(
        f"{done} embedded, {skipped} skipped (complete), "
        + (f"{locked} skipped (held by another process), " if locked else "")
        + f"{len(failed)} failed; summary in {args.output / 'summary.json'}"
    )
    flagged = sum(r.qc_flagged for r in reports)
    if flagged:
        dropped = sum(r.qc_dropped for r in reports)
        print(f"tile QC: {flagged} tiles flagged (ink or blur), {dropped} dropped; see run.json")
    for r in failed:
        print(f"FAILED {r.error}", file=sys.stderr)
    return 1 if failed else 0


def _log_model(bundle) -> None:
    from pathssl.embedding import DeviceSettings

    log.info("device %s", DeviceSettings.auto().describe())
    for line in bundle.describe():
        (log.warning if line.startswith("WARNING") else log.info)(line)


def _print_bundle(path: Path, config) -> None:
    print(f"wrote {path} ({config.name}, {config.embedding_dim}-d, sha256 {config.weights_sha256})")


def _add_import(sub: argparse._SubParsersAction) -> None:
    from pathssl.encoder.presets import PRESETS

    p = sub.add_parser(
        "import-weights",
        help="turn a downloaded public checkpoint into a model bundle",
        description="Presets: "
        + "; ".join(f"{name}: {PRESETS[name].description}" for name in sorted(PRESETS)),
    )
    p.add_argument(
        "--preset", required=True, choices=sorted(PRESETS), help="which published model it is"
    )
    p.add_argument(
        "--checkpoint",
        type=Path,
        required=True,
        help="the downloaded weights (.safetensors, or .bin/.pth read as tensors only)",
    )
    p.add_argument("--output", type=Path, required=True, help="bundle folder to write")
    p.set_defaults(func=_run_import)


def _run_import(args: argparse.Namespace) -> int:
    from pathssl.encoder.import_weights import import_weights

    config = import_weights(args.preset, args.checkpoint, args.output)
    _print_bundle(args.output, config)
    return 0


def _add_init_model(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("init-model", help="write an UNTRAINED (random) bundle of a timm model")
    p.add_argument("--architecture", required=True, help="timm model name, e.g. resnet18")
    p.add_argument("--output", type=Path, required=True, help="bundle folder to write")
    p.add_argument("--input-size", type=int, default=224, help="tile side in pixels (default: 224)")
    p.add_argument("--mpp", type=float, default=0.5, help="tile resolution in um/px (default: 0.5)")
    p.add_argument("--seed", type=int, default=0, help="weight initialisation seed (default: 0)")
    p.set_defaults(func=_run_init_model)


def _run_init_model(args: argparse.Namespace) -> int:
    from pathssl.encoder.export import random_bundle

    config = random_bundle(
        args.output, args.architecture, args.input_size, args.mpp, seed=args.seed
    )
    print(f"wrote {args.output} ({config.name}, UNTRAINED, sha256 {config.weights_sha256})")
    return 0


def _add_resume_arguments(p: argparse.ArgumentParser) -> None:
    """--no-resume and --stop-after of the training commands."""
    p.add_argument("--no-resume", action="store_true", help="ignore an existing checkpoint")
    p.add_argument(
        "--stop-after",
        type=int,
        default=None,
        help="end this invocation after N steps (checkpointed; resume later)",
    )


def _add_pretrain(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pretrain",
        help="self-supervised pretraining of a tile encoder",
        description="Self-supervised pretraining of a tile encoder on slides and images. "
        "Methods (config key `method`): simclr (SimCLR), dino (DINO), byol (BYOL), "
        "moco (MoCo v2), barlow (Barlow Twins), on any timm backbone (`architecture`). "
        "configs/pretrain/corpus.yaml is the bundled model's recipe; the run resumes from "
        "its last checkpoint unless --no-resume.",
    )
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        help="YAML config (configs/pretrain/*.yaml; default: built-in SimCLR defaults)",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set steps=50 --set method=dino",
    )
    _add_resume_arguments(p)
    p.set_defaults(func=_run_pretrain)


def _run_pretrain(args: argparse.Namespace) -> int:
    from pathssl.pretrain.config import PretrainConfig
    from pathssl.pretrain.trainer import pretrain

    cfg = PretrainConfig.from_yaml(args.config, args.overrides)
    out = pretrain(cfg, resume=not args.no_resume, stop_after_steps=args.stop_after)
    print(f"checkpoints in {out / 'checkpoints'}; log in {out / 'log.csv'}")
    return 0


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="training checkpoint -> model bundle for `embed`")
    p.add_argument("checkpoint", type=Path, help="a `pathssl pretrain` checkpoint (.pt)")
    p.add_argument("--output", type=Path, required=True, help="bundle folder to write")
    p.add_argument(
        "--name", default=None, help="model name in config.json (default: method-arch-steps)"
    )
    p.set_defaults(func=_run_export)


def _run_export(args: argparse.Namespace) -> int:
    from pathssl.pretrain.export import export_checkpoint

    config = export_checkpoint(args.checkpoint, args.output, args.name)
    _print_bundle(args.output, config)
    return 0


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="linear probe and kNN on labelled tiles (image folders)")
    p.add_argument("datasets", nargs="+", type=Path, help="image-folder datasets")
    p.add_argument(
        "--model", type=Path, default=None, help="model bundle (default: the bundled model/)"
    )
    p.add_argument(
        "--no-random-baseline",
        action="store_true",
        help="skip the randomly initialised twin of the same architecture",
    )
    p.add_argument(
        "--fractions",
        type=float,
        nargs="+",
        default=[0.01, 0.1, 1.0],
        help="fractions of the training labels to probe with (default: %(default)s)",
    )
    p.add_argument(
        "--seeds",
        type=int,
        default=5,
        help="repeat with seeds 0..N-1 (label subsets, seeded splits); mean and spread "
        "are reported (default: %(default)s)",
    )
    p.add_argument(
        "--image-mpp",
        type=float,
        default=None,
        help="microns per pixel of the dataset's images: tile them at the encoder's "
        "resolution and average (default: the dataset's dataset.json, else resize whole)",
    )
    p.add_argument(
        "--resize-whole",
        action="store_true",
        help="ignore dataset.json: centre-crop and resize each image whole, as "
        "pathssl.load_encoder's preprocess does",
    )
    p.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="NAME=BUNDLE",
        help="also evaluate another model bundle under NAME (e.g. previous=old/model)",
    )
    p.add_argument(
        "--folds",
        type=int,
        default=None,
        metavar="K",
        help="cross-validate instead: pool train and test, stratified K folds (leave-one-out "
        "when K >= the number of images), probes on all the other folds' labels (--fractions "
        "does not apply), repeated over --seeds; for small sets, where one split tests only "
        "a handful of images",
    )
    p.add_argument("--output", type=Path, default=None, help="write the results as JSON")
    p.set_defaults(func=_run_evaluate)


def _run_evaluate(args: argparse.Namespace) -> int:
    import json

    from pathssl.encoder.bundle import resolve_model_dir
    from pathssl.evaluation.tiles import evaluate_bundle, format_table

    model_dir = resolve_model_dir(args.model)
    compare = {}
    for item in args.compare:
        name, sep, path = item.partition("=")
        if not sep or not name or name in ("trained", "random"):
            raise PathsslError(f"--compare {item!r}: expected NAME=BUNDLE (not trained/random)")
        compare[name] = Path(path)
    results = {}
    for dataset in args.datasets:
        if args.folds is not None:
            from pathssl.evaluation.cross_validation import (
                cross_validate_bundle,
                format_cross_validation,
            )

            res = cross_validate_bundle(
                dataset,
                model_dir,
                args.folds,
                tuple(range(args.seeds)),
                args.image_mpp,
                compare,
                args.resize_whole,
                not args.no_random_baseline,
            )
            results[dataset.name] = res
            print(format_cross_validation(dataset.name, res))
            continue
        res = evaluate_bundle(
            dataset,
            model_dir,
            not args.no_random_baseline,
            tuple(args.fractions),
            tuple(range(args.seeds)),
            args.image_mpp,
            compare,
            args.resize_whole,
        )
        results[dataset.name] = res
        print(format_table(dataset.name, res))
    if args.output:
        from pathssl.outputs.atomic import staged_outputs

        with staged_outputs(args.output.parent) as stage:
            payload = {"model": str(model_dir), "tasks": results}
            stage.path(args.output.name).write_text(json.dumps(payload, indent=2) + "\n")
    return 0


def _add_dev_tasks(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("make-dev-tasks", help="build evaluation tasks from ../shared/data")
    p.add_argument(
        "--shared",
        type=Path,
        default=Path("../shared/data"),
        help="the shared data folder (default: ../shared/data)",
    )
    p.add_argument("--output", type=Path, required=True, help="folder for the task folders")
    p.set_defaults(func=_run_dev_tasks)


def _run_dev_tasks(args: argparse.Namespace) -> int:
    from pathssl.evaluation.dev_tasks import build_dev_tasks

    counts = build_dev_tasks(args.shared, args.output)
    for task, by_class in counts.items():
        print(f"{task}: {by_class}")
    return 0


def _add_slide_ssl(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train-slide-encoder", help="slide-level SSL (Giga-SSL) on embedded slides")
    p.add_argument("embeddings", type=Path, help="folder of `pathssl embed` outputs")
    p.add_argument("--output", type=Path, required=True, help="run folder (checkpoints, log)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="e.g. --set steps=300 --set tiles_per_view=256",
    )
    _add_resume_arguments(p)
    p.set_defaults(func=_run_slide_ssl)

    p = sub.add_parser("export-slide-encoder", help="add a trained slide encoder to a bundle")
    p.add_argument("checkpoint", type=Path, help="a `train-slide-encoder` checkpoint")
    p.add_argument("--bundle", type=Path, required=True, help="model bundle to add it to")
    p.set_defaults(func=_run_export_slide)

    p = sub.add_parser("evaluate-slides", help="slide-level linear evaluation (ROC-AUC)")
    p.add_argument("embeddings", type=Path, help="folder of `pathssl embed` outputs")
    p.add_argument("labels", type=Path, help="CSV with columns slide,label")
    p.add_argument(
        "--slide-encoder",
        type=Path,
        default=None,
        help="bundle with slide_encoder.json (compared with mean pooling)",
    )
    p.add_argument("--output", type=Path, default=None, help="JSON results")
    p.add_argument("--plot", type=Path, default=None, help="learning-curve PNG")
    p.set_defaults(func=_run_evaluate_slides)

    p = sub.add_parser("make-slide-cohort", help="synthetic cohorts from real tissue tiles")
    p.add_argument(
        "--task",
        choices=["segregated", "clustered", "composition"],
        required=True,
        help="what tells the two classes apart (README, Slide embeddings without labels)",
    )
    p.add_argument("--slides", type=int, default=200, help="slides in the cohort (default: 200)")
    p.add_argument(
        "--augmentations",
        type=int,
        default=4,
        help="augmented feature copies per slide (default: 4)",
    )
    p.add_argument(
        "--pool-size", type=int, default=16, help="real tiles per tissue type (default: 16)"
    )
    p.add_argument(
        "--model", type=Path, default=None, help="model bundle (default: the bundled model/)"
    )
    p.add_argument("--shared", type=Path, default=None, help="../shared/data, if present")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--output", type=Path, required=True, help="cohort folder to write")
    p.set_defaults(func=_run_cohort)


def _run_slide_ssl(args: argparse.Namespace) -> int:
    import dataclasses

    import yaml

    from pathssl.slide_ssl.train import SlideSSLConfig, train_slide_encoder

    values = {"embeddings": str(args.embeddings), "output": str(args.output)}
    for item in args.overrides:
        key, _, value = item.partition("=")
        values[key] = yaml.safe_load(value)
    known = {f.name for f in dataclasses.fields(SlideSSLConfig)}
    if set(values) - known:
        raise PathsslError(f"unknown keys {sorted(set(values) - known)}; known: {sorted(known)}")
    out = train_slide_encoder(SlideSSLConfig(**values), not args.no_resume, args.stop_after)
    print(f"checkpoints in {out / 'checkpoints'}; log in {out / 'log.csv'}")
    return 0


def _run_export_slide(args: argparse.Namespace) -> int:
    from pathssl.slide_ssl.bundle import export_slide_encoder

    record = export_slide_encoder(args.checkpoint, args.bundle)
    print(f"added slide encoder to {args.bundle} (sha256 {record['weights_sha256']})")
    return 0


def _run_evaluate_slides(args: argparse.Namespace) -> int:
    from pathssl.slide_ssl.evaluate import (
        evaluate_slides,
        format_slide_table,
        plot_learning_curves,
        write_json,
    )

    results = evaluate_slides(args.embeddings, args.labels, args.slide_encoder)
    print(format_slide_table(args.embeddings.name, results))
    if args.output:
        write_json(args.output, results)
    if args.plot:
        plot_learning_curves({args.embeddings.name: results}, args.plot)
    return 0


def _run_cohort(args: argparse.Namespace) -> int:
    from pathssl.encoder.bundle import load_bundle
    from pathssl.slide_ssl.cohorts import build_cohort, default_pools, embed_pool

    root = Path(__file__).resolve().parents[2]
    a, b = default_pools(args.shared, root / "tests" / "data" / "CMU-1-Small-Region.svs")
    bundle = load_bundle(args.model)
    pools = [embed_pool(bundle, a, args.augmentations), embed_pool(bundle, b, args.augmentations)]
    labels = build_cohort(pools, args.task, args.slides, args.output, args.seed, args.pool_size)
    print(f"{args.slides} slides in {args.output}; labels in {labels}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from pathssl import __version__

    parser = argparse.ArgumentParser(prog="pathssl", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("--version", action="version", version=f"pathssl {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_embed(sub)
    _add_import(sub)
    _add_init_model(sub)
    _add_pretrain(sub)
    _add_export(sub)
    _add_evaluate(sub)
    _add_dev_tasks(sub)
    _add_slide_ssl(sub)
    for command in sub.choices.values():  # --debug also after the subcommand
        command.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks"
        )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        return args.func(args)
    except PathsslError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
