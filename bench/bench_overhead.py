"""Benchmark of the orchestration overhead: the continual flow against the training functions called directly.

Both paths do the same work on a subsample of the real data: initialise the model, train every
increment of the plan, evaluate every increment and aggregate the report, with the same seeds.

- direct: one Python process calls ``init_model``, ``train_increment``, ``evaluate_increment``
  and ``aggregate_report``, writing to ``models_direct/`` and ``metrics_direct/``; no DVC,
  MLflow or Prefect.
- flow: ``python -m flows.continual --no-register``, the path of ``make run``: Prefect tasks,
  one ``dvc repro`` subprocess per stage, one ``mclfir`` process per stage with its MLflow run.

The data stages run once before either path and are not timed. Registration is timed on its
own (``mclfir registry register``). The project is a ``git clone`` of the committed state, so
commit first. Run from the project root with the dataset named by MCLFIR_DATA_ROOT::

    .venv/bin/python bench/bench_overhead.py --work /tmp/mclfir-overhead --max-images 3000 --epochs 1
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

PROJECT = Path(__file__).resolve().parent.parent
DATA_TARGETS = ["split", "plan", "cache"]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", required=True, help="empty folder for the cloned project and its outputs")
    parser.add_argument("--max-images", type=int, default=3000, help="data.max_images of the subsample (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=1, help="train.epochs (default: %(default)s)")
    parser.add_argument("--direct", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args()


def run_direct() -> dict:
    """Run the pipeline's functions in this process (the project is MCLFIR_PROJECT_ROOT); return the wall time and final mAP."""
    from mclfir.config import load_params
    from mclfir.data.increments import load_plan
    from mclfir.evaluate import aggregate_report, evaluate_increment
    from mclfir.init_model import init_model
    from mclfir.train import TrainPaths, train_increment

    started = time.perf_counter()
    params = load_params()
    paths = TrainPaths(models_dir="models_direct", metrics_dir="metrics_direct/train")
    init_model(Path("models_direct/init/checkpoint.pt"), params)

    increments = load_plan(params).order
    for increment in increments:
        train_increment(increment, params=params, paths=paths)
    for increment in increments:
        evaluate_increment(
            increment,
            params=params,
            checkpoint=Path(f"models_direct/{increment}/checkpoint.pt"),
            out=Path(f"metrics_direct/increments/{increment}.json"),
        )
    report = aggregate_report(
        params,
        increments_dir=Path("metrics_direct/increments"),
        train_dir=Path("metrics_direct/train"),
        report_path=Path("metrics_direct/continual.json"),
        plots_dir=Path("plots_direct"),
    )
    return {"in_process_s": round(time.perf_counter() - started, 2), "final_map": report["final_map"]}


def _timed(command: list[str], cwd: Path, env: dict[str, str], log: Path) -> float:
    started = time.perf_counter()
    with log.open("w") as handle:
        completed = subprocess.run(command, cwd=cwd, env=env, stdout=handle, stderr=subprocess.STDOUT)
    if completed.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed with exit status {completed.returncode}; see {log}")
    return round(time.perf_counter() - started, 2)


def main() -> int:
    args = parse_args()
    if args.direct:
        print(json.dumps(run_direct()))
        return 0

    work = Path(args.work).resolve()
    if work.exists() and any(work.iterdir()):
        raise SystemExit(f"--work {work} is not empty; pass a new folder.")
    project = work / "project"
    subprocess.run(["git", "clone", "--quiet", str(PROJECT), str(project)], check=True)
    for name in ("dvc.lock", "metrics", "plots"):
        target = project / name
        shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["data"]["max_images"] = args.max_images
    params["train"]["epochs"] = args.epochs
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    bin_dir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": bin_dir + os.pathsep + os.environ["PATH"],
        "MCLFIR_PROJECT_ROOT": str(project),
        "PREFECT_HOME": str(work / "prefect-home"),
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    dvc = str(Path(bin_dir) / "dvc")
    data_s = _timed([dvc, "repro", *DATA_TARGETS], project, env, work / "data.log")

    direct_started = time.perf_counter()
    direct = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--work", str(work), "--direct"],
        cwd=project, env=env, capture_output=True, text=True,
    )
    direct_s = round(time.perf_counter() - direct_started, 2)
    (work / "direct.log").write_text(direct.stdout + direct.stderr)
    if direct.returncode != 0:
        raise SystemExit(f"The direct run failed; see {work / 'direct.log'}")
    direct_result = json.loads(direct.stdout.strip().splitlines()[-1])

    flow_s = _timed([sys.executable, "-m", "flows.continual", "--no-register"], project, env, work / "flow.log")
    register_s = _timed([str(Path(bin_dir) / "mclfir"), "registry", "register"], project, env, work / "register.log")

    flow_report = json.loads((project / "metrics/continual.json").read_text())
    result = {
        "max_images": args.max_images,
        "epochs": args.epochs,
        "data_stages_s": data_s,
        "direct_s": direct_s,
        "direct_in_process_s": direct_result["in_process_s"],
        "flow_s": flow_s,
        "overhead_fraction": round((flow_s - direct_s) / direct_s, 4),
        "register_s": register_s,
        "final_map_direct": direct_result["final_map"],
        "final_map_flow": flow_report["final_map"],
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
