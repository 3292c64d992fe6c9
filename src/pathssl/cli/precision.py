"""`check-precision`: measure a reduced precision (BF16) of the OpenVINO engine against f32
for one bundle, and record whether `--engine openvino-bf16` may run it."""

from __future__ import annotations

import argparse
from pathlib import Path

from pathssl.errors import PathsslError


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's commands."""
    p = sub.add_parser(
        "check-precision",
        help="measure BF16 against f32 for a bundle (features and a linear probe)",
        description="Embeds every tile of the visible benchmark's tasks with the OpenVINO "
        "engine in f32 and in the reduced precision, and writes precision-check.json into the "
        "bundle: each tile's feature cosine to f32 and the linear probe's balanced accuracy in "
        "both. `--engine openvino-bf16` runs the bundle only where this record accepted it "
        "(cosine >= 0.995 on every tile, probe within 0.005).",
    )
    p.add_argument("--model", type=Path, default=None, help="bundle (default: model/)")
    p.add_argument("--precision", choices=["bf16"], default="bf16", help="(default: bf16)")
    p.add_argument(
        "--shared",
        type=Path,
        default=Path("../shared/data"),
        help="shared data folder (default: %(default)s)",
    )
    p.add_argument("--folds", type=int, default=5, help="folds over groups (default: %(default)s)")
    # 10 draws: with 3, one tile's prediction in one draw moves the mean by 0.005 (measured)
    p.add_argument("--repeats", type=int, default=10, help="fold draws (default: %(default)s)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from pathssl.encoder.bundle import resolve_model_dir
    from pathssl.encoder.openvino_engine import cpu_has_bf16, openvino_version
    from pathssl.encoder.precision_check import write_check
    from pathssl.evaluation.precision import check_precision
    from pathssl.evaluation.visible_tasks import visible_tasks

    if not openvino_version():
        raise PathsslError("check-precision: openvino is not installed (pip install openvino)")
    if not cpu_has_bf16():
        raise PathsslError(
            "check-precision: this CPU has no BF16 instructions (AVX512_BF16 or AMX), so BF16 "
            "cannot be measured here; run it on a CPU that has them"
        )
    if args.folds < 2 or args.repeats < 1:
        raise PathsslError("--folds 2+ and --repeats 1+ are needed")
    model_dir = resolve_model_dir(args.model)
    tasks = visible_tasks(args.shared)
    record = check_precision(
        model_dir, args.precision, tasks, folds=args.folds, repeats=args.repeats
    )
    path = write_check(model_dir, args.precision, record)
    verdict = "accepted" if record["accepted"] else "REFUSED"
    print(f"{args.precision} {verdict} for {record['model']}: {record['why']}; written to {path}")
    return 0
