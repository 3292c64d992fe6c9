"""`pathssl evaluate` (probes on labelled tiles), `benchmark` (the visible benchmark) and
`make-dev-tasks`."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from pathssl.errors import PathsslError

log = logging.getLogger("pathssl")


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
                seeds=tuple(range(args.seeds)),
                image_mpp=args.image_mpp,
                compare=compare,
                resize_whole=args.resize_whole,
                compare_random=not args.no_random_baseline,
            )
            results[dataset.name] = res
            print(format_cross_validation(dataset.name, res))
            continue
        res = evaluate_bundle(
            dataset,
            model_dir,
            compare_random=not args.no_random_baseline,
            fractions=tuple(args.fractions),
            seeds=tuple(range(args.seeds)),
            image_mpp=args.image_mpp,
            compare=compare,
            resize_whole=args.resize_whole,
        )
        results[dataset.name] = res
        print(format_table(dataset.name, res))
    if args.output:
        from pathssl.atomic import staged_outputs

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


def _add_benchmark(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "benchmark",
        help="the visible benchmark: candidate, random twin and anchor side by side",
        description="Grouped cross-validation over every labelled set of SHARED/labelled and "
        "MoNuSeg's organ of origin: logistic probe on tile features, balanced accuracy of the "
        "predictions pooled over folds, 95 %% group-bootstrap intervals; the candidate bundle, "
        "its random twin and the anchor bundle in one run, and whether the candidate meets "
        "the bar for a new default (issue #23).",
    )
    p.add_argument("--model", type=Path, default=None, help="candidate bundle (default: model/)")
    p.add_argument(
        "--anchor", type=Path, required=True, help="anchor bundle (ImageNet MobileNetV2)"
    )
    p.add_argument(
        "--compare", action="append", default=[], metavar="NAME=BUNDLE", help="more bundles"
    )
    p.add_argument(
        "--shared",
        type=Path,
        default=Path("../shared/data"),
        help="shared data folder (default: %(default)s)",
    )
    p.add_argument("--folds", type=int, default=5, help="folds over groups (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=3, help="fold draws (default: %(default)s)")
    p.add_argument("--boot", type=int, default=2000, help="bootstrap draws (default: %(default)s)")
    p.add_argument("--output", type=Path, default=None, help="write the results as JSON")
    p.add_argument("--plot", type=Path, default=None, help="write a PNG of the table")
    p.set_defaults(func=_run_benchmark)


def _named_bundles(items: list[str], taken: set[str]) -> dict[str, Path]:
    named = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or name in taken or name in named:
            raise PathsslError(f"--compare {item!r}: expected NAME=BUNDLE with a new NAME")
        named[name] = Path(path)
    return named


def _run_benchmark(args: argparse.Namespace) -> int:
    import json

    from pathssl.encoder.bundle import resolve_model_dir
    from pathssl.evaluation import visible_benchmark as vb
    from pathssl.evaluation.visible_tasks import visible_tasks

    if args.folds < 2 or args.repeats < 1 or args.boot < 100:
        raise PathsslError("--folds 2+, --repeats 1+ and --boot 100+ are needed")
    model_dir = resolve_model_dir(args.model)
    compare = _named_bundles(args.compare, {"candidate", "anchor", vb.TWIN})
    encoders = [
        vb.bundle_encoder("candidate", model_dir),
        vb.twin_encoder(model_dir),
        vb.bundle_encoder("anchor", args.anchor),
        *(vb.bundle_encoder(name, path) for name, path in compare.items()),
    ]
    results = vb.run_visible_benchmark(
        visible_tasks(args.shared),
        encoders,
        folds=args.folds,
        repeats=args.repeats,
        n_boot=args.boot,
    )
    results["done_when"] = vb.done_when(results, "anchor")
    print(vb.format_benchmark(results))
    print(f"bar for a new default met: {results['done_when']['met']} ({results['done_when']})")
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(results, indent=2) + "\n")
    if args.plot:
        from pathssl.evaluation.benchmark_plot import write_plot

        write_plot(results, args.plot)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's commands."""
    _add_evaluate(sub)
    _add_benchmark(sub)
    _add_dev_tasks(sub)
