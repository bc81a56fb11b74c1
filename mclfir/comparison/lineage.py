"""Lineage files of the comparison pipeline: what an increment's joint training and evaluation read.

Joint training at an increment trains every attribute of the increment and its ancestors, and
every evaluation scores those same attributes. Both read the ancestors' split files and the plan,
so a stage that declared all of ``data/splits`` and all of ``increments`` as dependencies would
rerun for every increment whenever a new one is appended. Each increment gets a small JSON file
instead: its lineage (increment -> attributes, oldest first) and the sha256 of each split file the
lineage reads. The stages depend on that file, which changes only when their own inputs do.
"""

import json
from pathlib import Path
from typing import Any

from mclfir.data.catalog import hash_file
from mclfir.data.increments import IncrementPlan


def lineage_record(plan: IncrementPlan, increment: str, splits_dir: Path) -> dict[str, Any]:
    """Return the lineage of ``increment`` and the sha256 of every split file it reads under ``splits_dir``.

    Raises FileNotFoundError naming the first missing split file and the stage that writes it.
    """
    lineage = plan.lineage_attributes(increment)
    splits_sha256 = {}
    for name, attributes in lineage.items():
        for attribute in attributes:
            path = Path(splits_dir) / name / f"{attribute}.parquet"
            if not path.is_file():
                raise FileNotFoundError(
                    f"Split file {path} of attribute {attribute!r} (increment {name!r}) is missing. "
                    f"Run `dvc repro split@{name}` first."
                )
            splits_sha256[f"{name}/{attribute}.parquet"] = hash_file(path)
    return {"increment": increment, "lineage": lineage, "splits_sha256": splits_sha256}


def write_lineage(record: dict[str, Any], out: Path) -> Path:
    """Write ``record`` as indented JSON to ``out``, in plan order, so that equal lineages give equal bytes."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return out
