"""pathssl against slide2vec, lazyslide and TIAToolbox on the same slide, weights and CPU.

    python bench/peer_comparison.py --slide syn.tif --bundle model \
        --python slide2vec=PEERS/s2v/bin/python --python lazyslide=PEERS/lazy/bin/python \
        --python tiatoolbox=PEERS/tia/bin/python [--rounds 2] [--json OUT.json [--resume]]

Every tool embeds the whole slide from the file on disk to features on disk, each with its
own tissue detection, tiling, reading and output format, and the same ResNet-18 weights
(the bundle's safetensors in timm's resnet18, ImageNet normalisation, batch 64, fp32, each
tool's default reading settings) at the bundle's tile size and µm/px (`input_size_px`,
`target_mpp` of its config.json: the shipped model/ is 112 px at 1.0 µm/px; a copy with
224 and 0.5 gives the 224 px comparison). Each peer runs in its own virtual
environment through `bench/peers/<tool>_runner.py`; pathssl runs `pathssl embed` with each
of its engines. Rounds alternate the tools so that a slower spell of this shared machine
falls on all of them. Tools find different amounts of tissue, so the comparison is in tiles
per second of wall clock (and CPU seconds per 1,000 tiles), medians over rounds, and
pathssl's ratio to each peer. --resume adds rounds to an existing --json (same slide and
tiling), continuing the alternation, so a long comparison can run as short invocations.
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
    version = None if name.startswith("pathssl") else result.get("version")
    return {"tool": name, "version": version, "tiles": tiles, "wall_s": wall, "cpu_s": cpu}


def _arguments() -> argparse.Namespace:
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
    ap.add_argument("--resume", action="store_true", help="add rounds to an existing --json")
    return ap.parse_args()


def _commands(args: argparse.Namespace, work: Path) -> dict[str, tuple[list[str], Path]]:
    """Every tool's command line and fresh output folder, pathssl's engines first."""
    slide, bundle = args.slide.resolve(), args.bundle.resolve()
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
    return commands


def _summary(commands: dict, runs: list[dict[str, object]]) -> dict[str, dict[str, object]]:
    summary = {}
    for name in commands:
        mine = [r for r in runs if r["tool"] == name]
        summary[name] = {
            "version": mine[0].get("version"),
            "tiles": mine[0]["tiles"],
            "tiles_per_s_per_round": [round(r["tiles"] / r["wall_s"], 2) for r in mine],
            "tiles_per_s": statistics.median(r["tiles"] / r["wall_s"] for r in mine),
            "cpu_s_per_1000_tiles": statistics.median(1000 * r["cpu_s"] / r["tiles"] for r in mine),
        }
    return summary


def _print_table(summary: dict[str, dict[str, object]]) -> None:
    first = next(iter(summary))
    ours = summary[first]["tiles_per_s"]
    print(f"\n| tool | tiles | tiles/s per round | CPU s per 1,000 tiles | {first} vs tool |")
    print("|---|---|---|---|---|")
    for name, s in summary.items():
        per_round = ", ".join(f"{x:.1f}" for x in s["tiles_per_s_per_round"])
        print(
            f"| {name} | {s['tiles']:,} | {per_round} | "
            f"{s['cpu_s_per_1000_tiles']:.0f} | {ours / s['tiles_per_s']:.2f}× |"
        )


def main() -> None:
    args = _arguments()
    config = json.loads((args.bundle / "config.json").read_text())
    setup = {
        "slide": args.slide.name,
        "bundle": config["name"],
        "tile_px": config["input_size_px"],
        "mpp": config["target_mpp"],
    }
    runs: list[dict[str, object]] = []
    if args.resume and args.json and args.json.exists():
        previous = json.loads(args.json.read_text())
        if previous.get("setup") != setup:
            sys.exit(f"{args.json}: made with {previous.get('setup')}, not {setup}")
        runs = previous["runs"]
    first_round = 1 + max((int(r["round"]) for r in runs), default=-1)
    print(f"{setup}: rounds {first_round}..{first_round + args.rounds - 1}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="peer-comparison-"))
    commands = _commands(args, work)
    try:
        for round_index in range(first_round, first_round + args.rounds):
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
                if args.json:  # after every run: an interrupted comparison keeps what it did
                    args.json.write_text(json.dumps({"setup": setup, "runs": runs}, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    summary = _summary(commands, runs)
    _print_table(summary)
    if args.json:
        record = {"setup": setup, "runs": runs, "summary": summary}
        args.json.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
