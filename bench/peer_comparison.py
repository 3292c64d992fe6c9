"""pathssl against slide2vec, lazyslide and TIAToolbox on the same slide, weights and CPU.

    python bench/peer_comparison.py --slide syn2.tif --bundle m224 \
        --python slide2vec=PEERS/s2v/bin/python --python lazyslide=PEERS/lazy/bin/python \
        --python tiatoolbox=PEERS/tia/bin/python [--rounds 2]

Every tool embeds the whole slide from the file on disk to features on disk, each with its
own tissue detection, tiling, reading and output format, and the same ResNet-18 weights
(the bundle's safetensors in timm's resnet18, ImageNet normalisation, 224 px at 0.5 µm/px,
batch 64, fp32, each tool's default reading settings). Each peer runs in its own virtual
environment through `bench/peers/<tool>_runner.py`; pathssl runs `pathssl embed` with each
of its engines. Rounds alternate the tools so that a slower spell of this shared machine
falls on all of them. Tools find different amounts of tissue, so the comparison is in tiles
per second of wall clock (and CPU seconds per 1,000 tiles), medians over rounds, and
pathssl's ratio to each peer.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _pathssl_tiles(out: Path) -> tuple[int, int, bool]:
    import h5py
    import numpy as np

    (h5,) = out.glob("*/features.h5")
    with h5py.File(h5, "r") as f:
        features = np.asarray(f["features"])
    return int(features.shape[0]), int(features.shape[1]), bool(np.isfinite(features).all())


def run_tool(name: str, command: list[str], out: Path) -> dict[str, object]:
    """Run one tool once, from a fresh output folder; wall and CPU seconds of its process tree."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    cpu0, t0 = _children_cpu_s(), time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, cwd=out)  # side files there
    wall, cpu = time.perf_counter() - t0, _children_cpu_s() - cpu0
    if proc.returncode != 0:
        sys.exit(f"{name} failed ({proc.returncode}):\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    if name.startswith("pathssl"):
        tiles, dim, finite = _pathssl_tiles(out)
    else:
        line = next(x for x in proc.stdout.splitlines() if x.startswith("PEER-RESULT "))
        result = json.loads(line.removeprefix("PEER-RESULT "))
        tiles, dim, finite = result["tiles"], result["dim"], result["finite"]
    if dim != 512 or not finite or tiles == 0:
        sys.exit(f"{name}: {tiles} tiles of {dim}-d features, finite={finite}: not comparable")
    return {"tool": name, "tiles": tiles, "wall_s": wall, "cpu_s": cpu}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slide", type=Path, required=True)
    ap.add_argument("--bundle", type=Path, required=True, help="a resnet18 pathssl bundle")
    ap.add_argument(
        "--python",
        action="append",
        default=[],
        metavar="TOOL=PYTHON",
        help="a peer and its venv's python (slide2vec, lazyslide, tiatoolbox)",
    )
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--engines", default="openvino,pytorch", help="pathssl engines to run")
    ap.add_argument("--json", type=Path, default=None, help="also write every run here")
    args = ap.parse_args()

    slide, bundle = args.slide.resolve(), args.bundle.resolve()
    config = json.loads((bundle / "config.json").read_text())
    if (config["input_size_px"], config["target_mpp"]) != (224, 0.5):
        sys.exit(f"{bundle}: set input_size_px 224 and target_mpp 0.5, as the peers' runners tile")
    work = Path(tempfile.mkdtemp(prefix="peer-comparison-"))
    commands: dict[str, tuple[list[str], Path]] = {}
    for engine in args.engines.split(","):
        out = work / f"pathssl-{engine}"
        embed = ["-m", "pathssl.cli", "embed", str(slide), "--model", str(bundle)]
        options = ["--output", str(out), "--engine", engine, "--batch-size", "64"]
        commands[f"pathssl ({engine})"] = ([sys.executable, *embed, *options], out)
    for spec in args.python:
        tool, python = spec.split("=", 1)
        out = work / tool
        runner = HERE / "peers" / f"{tool}_runner.py"
        inputs = ["--slide", str(slide), "--bundle", str(bundle)]
        commands[tool] = (
            [python, str(runner), *inputs, "--out", str(out), "--batch-size", "64"],
            out,
        )

    runs: list[dict[str, object]] = []
    try:
        for round_index in range(args.rounds):
            order = list(commands) if round_index % 2 == 0 else list(reversed(commands))
            for name in order:
                command, out = commands[name]
                run = run_tool(name, command, out) | {"round": round_index}
                runs.append(run)
                print(
                    f"round {round_index}: {name}: {run['tiles']} tiles in {run['wall_s']:.1f} s "
                    f"({run['tiles'] / run['wall_s']:.1f} tiles/s), CPU {run['cpu_s']:.1f} s",
                    flush=True,
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)

    summary = {}
    for name in commands:
        mine = [r for r in runs if r["tool"] == name]
        summary[name] = {
            "tiles": mine[0]["tiles"],
            "tiles_per_s": statistics.median(r["tiles"] / r["wall_s"] for r in mine),
            "cpu_s_per_1000_tiles": statistics.median(1000 * r["cpu_s"] / r["tiles"] for r in mine),
        }
    ours = summary[next(iter(commands))]["tiles_per_s"]
    print(
        f"\n| tool | tiles | tiles/s (median of {args.rounds}) | CPU s per 1,000 tiles | "
        f"{next(iter(commands))} vs tool |"
    )
    print("|---|---|---|---|---|")
    for name, s in summary.items():
        print(
            f"| {name} | {s['tiles']:,} | {s['tiles_per_s']:.1f} | "
            f"{s['cpu_s_per_1000_tiles']:.0f} | {ours / s['tiles_per_s']:.2f}× |"
        )
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "summary": summary}, indent=2))


if __name__ == "__main__":
    main()
