"""Print a Markdown table of per-attribute retrieval quality after the last increment.

Columns: the trained model's mAP, value-balanced mAP and mAP@k (from ``metrics/continual.json``),
and the chance mAP of a random ranking. The last column is the mAP of untrained features, from
the JSON that ``bench/untrained_floor.py`` writes: the better of 16x12 grey pixels and an RGB
colour histogram.

Run: ``.venv/bin/python bench/quality_table.py --report metrics/continual.json --floor metrics/untrained_floor.json``
"""

import argparse
import json
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", default="metrics/continual.json", help="continual report of the full run")
    parser.add_argument("--floor", default="metrics/untrained_floor.json", help="untrained-feature figures")
    args = parser.parse_args()

    report = json.loads(Path(args.report).read_text())
    floor = json.loads(Path(args.floor).read_text())
    last_row = report["R"][-1]

    print("| attribute | mAP | balanced mAP | mAP@k | chance mAP | untrained floor (feature) |")
    print("|---|---:|---:|---:|---:|---:|")
    for attribute in [name for group in report["increments"] for name in group]:
        best_kind = max(floor[attribute], key=lambda kind: floor[attribute][kind]["map"])
        print(
            f"| {attribute} | {last_row[attribute]:.1f} | {report['balanced'][attribute]:.1f} "
            f"| {report['map_at_k'][attribute]:.1f} | {report['chance'][attribute]:.1f} "
            f"| {floor[attribute][best_kind]['map']:.1f} ({best_kind}) |"
        )
    print(f"\nfinal mAP {report['final_map']:.2f}, forgetting {report['forgetting']:.2f}, BWT {report['bwt']:.2f}")


if __name__ == "__main__":
    main()
