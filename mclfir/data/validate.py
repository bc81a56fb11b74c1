"""``mclfir data validate``: decide whether a catalog may be used, and clean it for the next stage.

The command runs the image file checks (:mod:`mclfir.data.image_checks`), the Great
Expectations suites (:mod:`mclfir.data.expectations`) and the duplicate-photo check
(:mod:`mclfir.data.duplicates`), adds the problems that ``prepare`` found, and applies the policy:

- stop (exit 1): a required column is missing, an id is duplicated, a path leaves the dataset
  root, or fewer than ``data.min_images`` usable images remain;
- set aside (exit 0): a missing, undecodable, blank or changed image file leaves the catalog.
  An empty or unknown value removes only that image's label for that attribute. Unrecoverable
  label rows are counted;
- guard (exit 0): identical photos with different labels stay, with the attributes in conflict
  listed in ``eval_exclude``; values with fewer than ``data.min_images_per_value`` images are listed.

It always writes the JSON report and the Data Docs. It writes the validated catalog and the
set-aside table only when it exits 0, and removes stale ones otherwise, so a failed validation
leaves nothing that the next stage could use.
"""

import argparse
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mclfir import paths
from mclfir.config import load_data_config
from mclfir.data.catalog import HASH_COLUMN, ID_COLUMN, METADATA_KEY, Catalog, write_catalog
from mclfir.data.problems import Problem, has_stop, problems_frame, summarize

_logger = logging.getLogger(__name__)

DEFAULT_GX_DIR = "data/gx"
VALIDATED_NAME = "catalog.parquet"
SET_ASIDE_NAME = "set_aside.parquet"
PROBLEMS_SUFFIX = ".problems.parquet"


@dataclass
class LoadedCatalog:
    """A catalog read without requiring its columns, so that missing ones can be reported."""

    frame: pd.DataFrame
    attributes: list[str]
    source: str
    root: str
    extra: dict[str, Any]


@dataclass
class ValidationResult:
    """Everything validation found, and the cleaned catalog when the data may be used."""

    passed: bool
    problems: list[Problem]
    report: dict[str, Any]
    validated: Catalog | None = None
    set_aside: pd.DataFrame = field(default_factory=pd.DataFrame)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``mclfir data validate``."""
    parser.add_argument("--catalog", required=True, help="catalog to validate (.parquet, written by `mclfir data prepare`)")
    parser.add_argument("--report", required=True, help="JSON report to write")
    parser.add_argument("--out", default=None, help=f"validated catalog to write when validation passes (default: {VALIDATED_NAME} beside the report)")
    parser.add_argument("--set-aside", default=None, help=f"table of set-aside rows to write when validation passes (default: {SET_ASIDE_NAME} beside the report)")
    parser.add_argument("--root", default=None, help="dataset folder (default: the root stored in the catalog); a relative path is taken from the project root")
    parser.add_argument("--gx-dir", default=DEFAULT_GX_DIR, help="folder of the Great Expectations context and its Data Docs (default: %(default)s)")
    parser.add_argument("--problems", default=None, help=f"problems table of prepare (default: <catalog stem>{PROBLEMS_SUFFIX} beside the catalog, when present)")
    parser.add_argument("--min-images", type=int, default=None, help="minimum number of usable images (default: data.min_images in params.yaml)")
    parser.add_argument("--min-images-per-value", type=int, default=None, help="images a value needs to be used for evaluation (default: data.min_images_per_value in params.yaml)")
    parser.add_argument("--workers", type=int, default=None, help="processes for the image checks (default: number of CPUs)")


def run(args: argparse.Namespace) -> int:
    """Validate the catalog, write the report and, when it passes, the outputs; return the exit status."""
    report_path = paths.resolve(args.report)
    out = paths.resolve(args.out) if args.out else report_path.parent / VALIDATED_NAME
    set_aside_path = paths.resolve(args.set_aside) if args.set_aside else report_path.parent / SET_ASIDE_NAME

    config = load_data_config()
    min_images = config.min_images if args.min_images is None else args.min_images
    min_images_per_value = config.min_images_per_value if args.min_images_per_value is None else args.min_images_per_value

    try:
        result = validate_catalog(
            paths.resolve(args.catalog),
            root=paths.resolve(args.root) if args.root else None,
            gx_dir=paths.resolve(args.gx_dir),
            problems_path=paths.resolve(args.problems) if args.problems else None,
            min_images=min_images,
            min_images_per_value=min_images_per_value,
            workers=args.workers,
        )
    except FileNotFoundError as error:
        _logger.error("%s", error)
        return 1
    write_outputs(result, report_path, out, set_aside_path)

    for line in format_summary(result, report_path):
        print(line)
    return 0 if result.passed else 1


def validate_catalog(
    catalog_path: Path,
    root: Path | None = None,
    gx_dir: Path | None = None,
    problems_path: Path | None = None,
    min_images: int = 100,
    min_images_per_value: int = 10,
    workers: int | None = None,
) -> ValidationResult:
    """Run every check on the catalog at ``catalog_path`` and apply the policy (see the module docstring).

    ``root`` defaults to the catalog's stored root, ``gx_dir`` to ``data/gx`` under the project
    root, and ``problems_path`` to prepare's problems table beside the catalog (read when present).
    """
    from mclfir.data import expectations
    from mclfir.data.duplicates import EVAL_EXCLUDE_COLUMN, find_conflicting_duplicates
    from mclfir.data.image_checks import check_images

    started = time.perf_counter()
    gx_dir = gx_dir or paths.resolve(DEFAULT_GX_DIR)
    loaded, load_problem = _load(catalog_path)
    if loaded is None:
        return _failed_before_checks(catalog_path, load_problem, started)

    root = root or paths.resolve(loaded.root)
    prepare_problems, problems_source = _read_prepare_problems(catalog_path, problems_path)
    frame = loaded.frame
    attributes = loaded.attributes
    problems: list[Problem] = list(prepare_problems)
    if not root.is_dir():
        problems.append(Problem("dataset_root_missing", "stop", f"Dataset root not found: {root}. Pass --root with the dataset folder.", file=str(root)))

    image_result = check_images(frame, root, workers=workers)
    problems += image_result.problems

    # Labels are checked on the images that will be kept, so a label row without a usable image
    # is reported once (as that image's problem), not again for each of its values.
    set_aside_ids = _set_aside_ids(problems, attributes) | _ids_without_hash(frame)
    values = expectations.values_long_view(frame, attributes)
    values = values[~values[ID_COLUMN].isin(set_aside_ids)].reset_index(drop=True)
    counts = expectations.value_counts_table(values)

    checks = expectations.build_checks(frame, values, counts, attributes, min_images, min_images_per_value)
    suite_run = expectations.run_checks(checks, gx_dir)
    # A file that is missing also has no content hash; report it once, as the missing file.
    missing_files = {problem.image_id for problem in image_result.problems if problem.check == "missing_image"}
    problems += [
        problem for problem in expectations.problems_from_outcomes(suite_run.outcomes)
        if not (problem.check == "missing_content_hash" and problem.image_id in missing_files)
    ]

    set_aside_ids = _set_aside_ids(problems, attributes)
    usable = _clean_labels(frame[~frame[ID_COLUMN].astype(str).isin(set_aside_ids)] if ID_COLUMN in frame.columns else frame.iloc[0:0], attributes)
    if len(usable) < min_images:
        problems.append(Problem(
            "too_few_images", "stop",
            f"Only {len(usable)} usable images remain after setting {len(frame) - len(usable)} aside; data.min_images is {min_images}.",
            value=str(len(usable)),
        ))

    duplicates_summary: dict[str, Any] = {}
    if HASH_COLUMN in usable.columns and all(name in usable.columns for name in attributes):
        eval_exclude, guard_problems, duplicates_summary = find_conflicting_duplicates(usable, attributes)
        usable[EVAL_EXCLUDE_COLUMN] = eval_exclude
        problems += guard_problems

    problems = _deduplicate(problems, attributes)
    passed = not has_stop(problems)
    validated = Catalog(usable.reset_index(drop=True), attributes, loaded.source, loaded.root, dict(loaded.extra)) if passed else None
    report = _build_report(
        catalog_path, root, loaded, problems, problems_source, image_result.summary(), suite_run, duplicates_summary,
        counts, usable, {"min_images": min_images, "min_images_per_value": min_images_per_value}, passed, started,
    )
    set_aside = problems_frame([problem for problem in problems if problem.action == "set_aside"])
    return ValidationResult(passed, problems, report, validated, set_aside)


def _load(catalog_path: Path) -> tuple[LoadedCatalog | None, Problem | None]:
    """Read the catalog's table and metadata; return a stop problem instead when it cannot be read."""
    if not catalog_path.is_file():
        return None, Problem("catalog_missing", "stop", f"Catalog not found: {catalog_path}. Create it with `mclfir data prepare`.", file=str(catalog_path))
    try:
        table = pq.read_table(catalog_path)
    except (pa.ArrowInvalid, OSError) as error:
        return None, Problem("catalog_unreadable", "stop", f"Catalog is not a readable Parquet file ({error}); rerun `mclfir data prepare`.", file=str(catalog_path))

    raw_metadata = (table.schema.metadata or {}).get(METADATA_KEY)
    if raw_metadata is None:
        return None, Problem("catalog_metadata_missing", "stop", "Catalog has no 'mclfir' Parquet metadata, so its attributes are unknown; write it with `mclfir data prepare`.", file=str(catalog_path))
    metadata = json.loads(raw_metadata)

    frame = table.to_pandas()
    attributes = list(metadata.get("attributes", []))
    for name in attributes:
        if name in frame.columns:
            frame[name] = frame[name].map(lambda values: [] if values is None else [str(value) for value in values])
    extra = {key: value for key, value in metadata.items() if key not in ("attributes", "source", "root")}
    return LoadedCatalog(frame, attributes, str(metadata.get("source", "")), str(metadata.get("root", "")), extra), None


def _read_prepare_problems(catalog_path: Path, problems_path: Path | None) -> tuple[list[Problem], str]:
    path = problems_path or catalog_path.with_name(catalog_path.stem + PROBLEMS_SUFFIX)
    if not path.is_file():
        if problems_path is not None:
            raise FileNotFoundError(f"Problems table not found: {path}. Pass the file that `mclfir data prepare` wrote, or leave out --problems.")
        return [], ""

    frame = pd.read_parquet(path)
    problems = []
    for record in frame.to_dict("records"):
        row = record.get("row")
        problems.append(Problem(
            check=str(record["check"]),
            action=record["action"],
            message=str(record.get("message", "")),
            file=str(record.get("file") or ""),
            row=None if row is None or pd.isna(row) else int(row),
            image_id=str(record.get("image_id") or ""),
            column=str(record.get("column") or ""),
            value=str(record.get("value") or ""),
        ))
    _logger.info("Read %d problems found by prepare from %s", len(problems), path)
    return problems, str(path)


def _set_aside_ids(problems: list[Problem], attributes: list[str]) -> set[str]:
    """Return the ids of images that leave the catalog: set-aside problems not about one attribute's label."""
    return {
        problem.image_id
        for problem in problems
        if problem.action == "set_aside" and problem.image_id and problem.column not in attributes
    }


def _ids_without_hash(frame: pd.DataFrame) -> set[str]:
    if HASH_COLUMN not in frame.columns or ID_COLUMN not in frame.columns:
        return set()
    return set(frame.loc[frame[HASH_COLUMN].isna(), ID_COLUMN].astype(str))


def _clean_labels(frame: pd.DataFrame, attributes: list[str]) -> pd.DataFrame:
    """Return a copy of ``frame`` with empty and unknown values removed from every attribute list."""
    from mclfir.data.expectations import classify_value

    cleaned = frame.copy()
    for attribute in attributes:
        if attribute in cleaned.columns:
            cleaned[attribute] = cleaned[attribute].map(lambda values: [value for value in values if classify_value(value) == "valid"])
    return cleaned


def _deduplicate(problems: list[Problem], attributes: list[str]) -> list[Problem]:
    """Drop a problem that an earlier one already reports for the same image and row (prepare's come first).

    Prepare and validate name an image's id column differently (``id`` and ``image_id``), so for
    image problems the column only counts when it is an attribute.
    """
    seen = set()
    kept = []
    for problem in problems:
        if problem.image_id:
            key = (problem.check, problem.image_id, problem.row, problem.column if problem.column in attributes else "")
        else:
            key = (problem.check, problem.file, problem.row, problem.column, problem.value)
        if key in seen:
            continue
        seen.add(key)
        kept.append(problem)
    return kept


def _failed_before_checks(catalog_path: Path, problem: Problem, started: float) -> ValidationResult:
    report = {
        "catalog": str(catalog_path),
        "passed": False,
        "problems": [asdict(problem)],
        "elapsed_s": round(time.perf_counter() - started, 2),
    }
    return ValidationResult(False, [problem], report)


def _build_report(
    catalog_path: Path,
    root: Path,
    loaded: LoadedCatalog,
    problems: list[Problem],
    problems_source: str,
    images_summary: dict,
    suite_run: Any,
    duplicates_summary: dict,
    counts: pd.DataFrame,
    usable: pd.DataFrame,
    thresholds: dict[str, int],
    passed: bool,
    started: float,
) -> dict[str, Any]:
    by_check: dict[str, dict[str, Any]] = {}
    for problem in problems:
        entry = by_check.setdefault(problem.check, {"action": problem.action, "count": 0})
        entry["count"] += 1

    labelled = {name: int(usable[name].map(len).gt(0).sum()) for name in loaded.attributes if name in usable.columns}
    return {
        "catalog": str(catalog_path),
        "root": str(root),
        "source": loaded.source,
        "attributes": loaded.attributes,
        "thresholds": thresholds,
        "passed": passed,
        "counts": {
            "images": int(len(loaded.frame)),
            "usable_images": int(len(usable)),
            "set_aside_images": int(len(loaded.frame) - len(usable)),
            "labelled_images_per_attribute": labelled,
            "values_per_attribute": {name: int((counts["attribute"] == name).sum()) for name in loaded.attributes},
            "problems": len(problems),
            "problems_by_check": by_check,
        },
        "prepare_problems": problems_source,
        "images": images_summary,
        "duplicates": duplicates_summary,
        "expectations": {
            "success": suite_run.success,
            "results": [asdict(outcome) for outcome in suite_run.outcomes],
        },
        "data_docs": str(suite_run.data_docs) if suite_run.data_docs else "",
        "problems": [asdict(problem) for problem in problems],
        "elapsed_s": round(time.perf_counter() - started, 2),
    }


def write_outputs(result: ValidationResult, report_path: Path, out: Path, set_aside_path: Path) -> None:
    """Write the report always, and the validated catalog and set-aside table only when validation passed."""
    report_path.parent.mkdir(parents=True, exist_ok=True)
    result.report["outputs"] = {"catalog": str(out), "set_aside": str(set_aside_path)} if result.passed else {}
    report_path.write_text(json.dumps(result.report, indent=2, default=_json_default), encoding="utf-8")
    _logger.info("Wrote validation report to %s", report_path)

    if not result.passed:
        for stale in (out, set_aside_path):
            if stale.exists():
                stale.unlink()
                _logger.info("Removed %s, because validation failed", stale)
        return

    write_catalog(result.validated, out)
    _cast_list_column(out, "eval_exclude")
    set_aside_path.parent.mkdir(parents=True, exist_ok=True)
    result.set_aside.to_parquet(set_aside_path, index=False)
    _logger.info("Wrote %d set-aside rows to %s", len(result.set_aside), set_aside_path)


def _cast_list_column(path: Path, column: str) -> None:
    """Store ``column`` as a list of strings even when every list is empty (Arrow would infer list<null>)."""
    table = pq.read_table(path)
    if column not in table.column_names:
        return
    index = table.column_names.index(column)
    table = table.set_column(index, pa.field(column, pa.list_(pa.string())), table.column(column).cast(pa.list_(pa.string())))
    pq.write_table(table, path)


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


def format_summary(result: ValidationResult, report_path: Path) -> list[str]:
    """Return the lines that the command prints: counts, one line per kind of problem, and the outcome."""
    report = result.report
    counts = report.get("counts", {})
    lines = []
    if counts:
        lines.append(
            f"Catalog {report['catalog']}: {counts['images']} images, {counts['usable_images']} usable, "
            f"{counts['set_aside_images']} set aside, {counts['problems']} problems."
        )
    lines += summarize(result.problems)

    images = report.get("images", {})
    converted = images.get("converted_to_rgb", {})
    if converted.get("count"):
        lines.append(f"[report] images converted to RGB: {converted['count']} (modes {images.get('modes')})")
    odd = images.get("size_differs_from_most_common", {})
    if odd.get("count"):
        examples = ", ".join(example["path"] for example in odd["examples"][:5])
        lines.append(f"[report] images not of size {images.get('most_common_size')}: {odd['count']} ({examples})")
    duplicates = report.get("duplicates", {})
    if duplicates:
        lines.append(
            f"[report] identical photos: {duplicates['groups']} groups, {duplicates['images_in_groups']} images; "
            f"groups with conflicting labels: {duplicates['conflicting_groups']}"
        )

    if report.get("data_docs"):
        lines.append(f"Data Docs: {report['data_docs']}")
    lines.append(f"Report: {report_path}")
    if result.passed:
        lines.append("Passed: the validated catalog may be used.")
    else:
        lines.append("Failed: fix the problems marked [stop] and run prepare and validate again.")
    return lines
