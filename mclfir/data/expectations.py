"""The Great Expectations suites of a catalog, and the problems read from their results.

Three tables are validated, each as a pandas dataframe asset of one file-based GX context:

- ``images``: one row per catalog image (attribute lists joined with ``|``). Required
  columns exist; ``image_id`` is present and unique; every image has a SHA-256 content hash;
  no path leaves the dataset root; at least ``data.min_images`` rows.
- ``values``: the long view, one row per (image, attribute, value), of the images that pass
  the image file checks. Per attribute, every value is in the set of values observed for it,
  less empty strings and unknown markers such as ``NA``. Every value is at least one
  character long.
- ``value_counts``: one row per (attribute, value) of the usable images, with its image
  count. Every count is at least ``data.min_images_per_value``.

Each expectation carries ``meta.check`` and ``meta.action``. A failed expectation becomes one
:class:`~mclfir.data.problems.Problem` per unexpected row, with that check and action. Its
``row`` is the image's line in the source label file (``source_row``).
Expectations whose ``meta.action`` is ``report`` only document the data in the Data Docs.
Great Expectations is imported inside the functions, because its import takes about 3 s.
"""

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from mclfir.data.catalog import BASE_COLUMNS, HASH_COLUMN, ID_COLUMN, PATH_COLUMN, ROW_COLUMN
from mclfir.data.problems import Problem

_logger = logging.getLogger(__name__)

DATASOURCE_NAME = "mclfir_catalog"
BATCH_DEFINITION_NAME = "whole_table"
ATTRIBUTE_COLUMN = "attribute"
VALUE_COLUMN = "value"
COUNT_COLUMN = "images"
# Markers that mean "no value" in label files, compared after stripping and lowercasing.
# Fashion Product Images writes NA. "none" is left out, because it is a real value in some
# attribute vocabularies (for example a collar type).
UNKNOWN_MARKERS = frozenset({"na", "n/a", "nan", "null", "unknown", "?"})
# A path that is absolute, has a drive letter, or has a ".." component can leave the root.
OUTSIDE_ROOT_PATTERN = r"(?:^/|^\\|^[A-Za-z]:|(?:^|[/\\])\.\.(?:[/\\]|$))"
SHA256_PATTERN = r"^[0-9a-f]{64}$"
# Checks whose expectation only documents the data: problems for them come from elsewhere.
REPORT = "report"


def classify_value(value: str) -> str:
    """Return ``"empty"``, ``"unknown"`` or ``"valid"`` for one raw attribute value."""
    stripped = value.strip()
    if not stripped:
        return "empty"
    if stripped.lower() in UNKNOWN_MARKERS:
        return "unknown"
    return "valid"


@dataclass
class TableCheck:
    """One dataframe asset with its expectations and the columns that identify an unexpected row."""

    name: str
    frame: pd.DataFrame
    expectations: list[Any]
    index_columns: list[str] = field(default_factory=list)


@dataclass
class ExpectationOutcome:
    """The result of one expectation, flattened for the report."""

    table: str
    type: str
    kwargs: dict
    meta: dict
    success: bool
    result: dict
    exception: str = ""


@dataclass
class SuiteRun:
    """Every expectation's outcome and the Data Docs index page."""

    outcomes: list[ExpectationOutcome]
    data_docs: Path | None
    success: bool


def values_long_view(frame: pd.DataFrame, attributes: list[str]) -> pd.DataFrame:
    """Return one row per (image, attribute, value): columns image_id, source_row, path, attribute, value.

    Attribute columns absent from ``frame`` are skipped (the missing column is reported by
    the ``images`` suite). An empty value list gives no row.
    """
    parts = []
    for attribute in attributes:
        if attribute not in frame.columns:
            continue
        part = pd.DataFrame({
            ID_COLUMN: frame[ID_COLUMN].astype(str) if ID_COLUMN in frame.columns else "",
            ROW_COLUMN: frame[ROW_COLUMN] if ROW_COLUMN in frame.columns else pd.NA,
            PATH_COLUMN: frame[PATH_COLUMN] if PATH_COLUMN in frame.columns else "",
            ATTRIBUTE_COLUMN: attribute,
            VALUE_COLUMN: frame[attribute],
        })
        parts.append(part.explode(VALUE_COLUMN).dropna(subset=[VALUE_COLUMN]))

    columns = [ID_COLUMN, ROW_COLUMN, PATH_COLUMN, ATTRIBUTE_COLUMN, VALUE_COLUMN]
    if not parts:
        return pd.DataFrame(columns=columns)
    long = pd.concat(parts, ignore_index=True)[columns]
    long[VALUE_COLUMN] = long[VALUE_COLUMN].astype(str)
    return long


def value_counts_table(values: pd.DataFrame) -> pd.DataFrame:
    """Return the image count of each (attribute, value) among the valid values of ``values``."""
    valid = values[values[VALUE_COLUMN].map(classify_value) == "valid"]
    counts = valid.groupby([ATTRIBUTE_COLUMN, VALUE_COLUMN])[ID_COLUMN].nunique()
    return counts.rename(COUNT_COLUMN).reset_index()


def images_table(frame: pd.DataFrame, attributes: list[str]) -> pd.DataFrame:
    """Return the catalog with each attribute's value list joined by ``|``, so every cell is a scalar."""
    table = frame.copy()
    for attribute in attributes:
        if attribute in table.columns:
            table[attribute] = table[attribute].map(lambda values: "|".join(map(str, values)))
    return table


def build_checks(
    frame: pd.DataFrame,
    values: pd.DataFrame,
    counts: pd.DataFrame,
    attributes: list[str],
    min_images: int,
    min_images_per_value: int,
) -> list[TableCheck]:
    """Return the three table checks of a catalog (see the module docstring)."""
    images = images_table(frame, attributes)
    return [
        TableCheck("images", images, _image_expectations(attributes, min_images), [c for c in (ID_COLUMN, ROW_COLUMN, PATH_COLUMN) if c in images.columns]),
        TableCheck("values", values, _value_expectations(values, attributes), [ID_COLUMN, ROW_COLUMN, PATH_COLUMN, ATTRIBUTE_COLUMN]),
        TableCheck("value_counts", counts, _count_expectations(min_images_per_value), [ATTRIBUTE_COLUMN, VALUE_COLUMN]),
    ]


def _image_expectations(attributes: list[str], min_images: int) -> list[Any]:
    import great_expectations as gx

    expect = gx.expectations
    stop = {"action": "stop"}
    expectations: list[Any] = [
        expect.ExpectColumnToExist(column=column, meta={"check": "missing_column", **stop})
        for column in (*BASE_COLUMNS, *attributes)
    ]
    expectations += [
        expect.ExpectTableRowCountToBeBetween(min_value=min_images, meta={"check": "too_few_images", "action": REPORT}),
        expect.ExpectColumnValuesToNotBeNull(column=ID_COLUMN, meta={"check": "id_missing", **stop}),
        expect.ExpectColumnValuesToBeUnique(column=ID_COLUMN, meta={"check": "duplicate_id", **stop}),
        expect.ExpectColumnValuesToNotBeNull(column=PATH_COLUMN, meta={"check": "path_missing", **stop}),
        expect.ExpectColumnValuesToNotMatchRegex(column=PATH_COLUMN, regex=OUTSIDE_ROOT_PATTERN, meta={"check": "path_outside_root", **stop}),
        expect.ExpectColumnValuesToNotBeNull(column=HASH_COLUMN, meta={"check": "missing_content_hash", "action": "set_aside"}),
        expect.ExpectColumnValuesToMatchRegex(column=HASH_COLUMN, regex=SHA256_PATTERN, meta={"check": "invalid_content_hash", "action": "set_aside"}),
    ]
    return expectations


def _value_expectations(values: pd.DataFrame, attributes: list[str]) -> list[Any]:
    import great_expectations as gx
    from great_expectations.expectations.row_conditions import Column

    expectations = []
    for attribute in attributes:
        observed = values.loc[values[ATTRIBUTE_COLUMN] == attribute, VALUE_COLUMN].unique()
        value_set = sorted(value for value in observed if classify_value(value) == "valid")
        condition = Column(ATTRIBUTE_COLUMN) == attribute
        expectations += [
            gx.expectations.ExpectColumnValuesToBeInSet(
                column=VALUE_COLUMN, value_set=value_set, row_condition=condition,
                meta={"check": "invalid_value", "action": "set_aside", "attribute": attribute},
            ),
            # Empty values also fail the set check above, which is where their problems come from.
            gx.expectations.ExpectColumnValueLengthsToBeBetween(
                column=VALUE_COLUMN, min_value=1, row_condition=condition,
                meta={"check": "empty_value", "action": REPORT, "attribute": attribute},
            ),
        ]
    return expectations


def _count_expectations(min_images_per_value: int) -> list[Any]:
    import great_expectations as gx

    return [
        gx.expectations.ExpectColumnValuesToBeBetween(
            column=COUNT_COLUMN, min_value=min_images_per_value,
            meta={"check": "rare_value", "action": "guard"},
        ),
    ]


def run_checks(checks: list[TableCheck], gx_dir: Path) -> SuiteRun:
    """Run every table check through a checkpoint of the file-based GX context at ``gx_dir``.

    The datasource, assets and batch definitions are created on the first run and reused after
    it. Suites, validation definitions and checkpoints are replaced on every run, because the
    value sets come from the data. Each checkpoint updates the Data Docs.
    """
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    # GX logs every store and datasource load at INFO; keep its warnings and errors only.
    gx_logger = logging.getLogger("great_expectations")
    if gx_logger.level == logging.NOTSET:
        gx_logger.setLevel(logging.WARNING)

    gx_dir = Path(gx_dir)
    context = gx.get_context(mode="file", context_root_dir=str(gx_dir))
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    context.variables.save()
    datasource = _get_or_add_datasource(context)

    outcomes: list[ExpectationOutcome] = []
    for check in checks:
        _logger.info("Validating table %r (%d rows, %d expectations)", check.name, len(check.frame), len(check.expectations))
        checkpoint = _replace_checkpoint(context, datasource, check)
        result = checkpoint.run(batch_parameters={"dataframe": check.frame})
        for run_result in result.run_results.values():
            outcomes += [_outcome(check.name, item) for item in run_result.results]

    docs = gx_dir / "uncommitted" / "data_docs" / "local_site" / "index.html"
    return SuiteRun(outcomes, docs if docs.is_file() else None, all(outcome.success for outcome in outcomes))


def _get_or_add_datasource(context: Any) -> Any:
    try:
        return context.data_sources.get(DATASOURCE_NAME)
    except KeyError:
        return context.data_sources.add_pandas(DATASOURCE_NAME)


def _replace_checkpoint(context: Any, datasource: Any, check: TableCheck) -> Any:
    import great_expectations as gx

    if check.name in datasource.get_asset_names():
        asset = datasource.get_asset(check.name)
    else:
        asset = datasource.add_dataframe_asset(check.name)
    try:
        batch_definition = asset.get_batch_definition(BATCH_DEFINITION_NAME)
    except KeyError:
        batch_definition = asset.add_batch_definition_whole_dataframe(BATCH_DEFINITION_NAME)

    name = f"mclfir_{check.name}"
    suite = context.suites.add_or_update(gx.ExpectationSuite(name=name, expectations=check.expectations))
    validation = context.validation_definitions.add_or_update(gx.ValidationDefinition(name=name, data=batch_definition, suite=suite))

    result_format: dict[str, Any] = {"result_format": "COMPLETE"}
    if check.index_columns:
        result_format["unexpected_index_column_names"] = check.index_columns
    checkpoint = gx.Checkpoint(
        name=name,
        validation_definitions=[validation],
        actions=[gx.checkpoint.UpdateDataDocsAction(name="update_data_docs")],
        result_format=result_format,
    )
    return context.checkpoints.add_or_update(checkpoint)


def _outcome(table: str, item: Any) -> ExpectationOutcome:
    config = item.expectation_config
    exception = ""
    if item.exception_info and item.exception_info.get("raised_exception"):
        exception = str(item.exception_info.get("exception_message", ""))
    kwargs = {key: value for key, value in config.kwargs.items() if key != "batch_id"}
    if "row_condition" in kwargs and hasattr(kwargs["row_condition"], "dict"):
        kwargs["row_condition"] = kwargs["row_condition"].dict()
    return ExpectationOutcome(
        table=table,
        type=config.type,
        kwargs=kwargs,
        meta=dict(config.meta or {}),
        success=bool(item.success),
        result=dict(item.result or {}),
        exception=exception,
    )


def problems_from_outcomes(outcomes: list[ExpectationOutcome]) -> list[Problem]:
    """Return one problem per unexpected row (or missing column) of every failed expectation."""
    problems: list[Problem] = []
    for outcome in outcomes:
        check = outcome.meta.get("check", outcome.type)
        action = outcome.meta.get("action", REPORT)
        if outcome.success or action == REPORT:
            continue
        if outcome.exception and outcome.type != "expect_column_to_exist":
            # A missing column makes other expectations on it raise; the missing column is the problem.
            _logger.debug("Expectation %s on %s raised: %s", outcome.type, outcome.table, outcome.exception)
            continue

        if outcome.type == "expect_column_to_exist":
            column = outcome.kwargs.get("column", "")
            problems.append(Problem(check, action, f"Required column {column!r} is missing from the catalog; rerun `mclfir data prepare`.", column=column))
        elif check == "invalid_value":
            problems += _value_problems(outcome)
        elif check == "rare_value":
            problems += _rare_value_problems(outcome)
        else:
            problems += _row_problems(outcome, check, action)
    return problems


_MESSAGES = {
    "id_missing": "Image has no id.",
    "duplicate_id": "Image id appears in more than one row; make ids unique in the label file.",
    "path_missing": "Image has no path.",
    "path_outside_root": "Image path points outside the dataset root; fix the id or path in the label file.",
    "missing_content_hash": "Image has no content hash, because its file was not found when the catalog was prepared.",
    "invalid_content_hash": "Content hash is not a SHA-256 hex digest; rerun `mclfir data prepare`.",
}


def _row_problems(outcome: ExpectationOutcome, check: str, action: str) -> list[Problem]:
    column = outcome.kwargs.get("column", "")
    message = _MESSAGES.get(check, f"Row fails {outcome.type}.")
    return [
        Problem(check, action, message, row=_row(entry.get(ROW_COLUMN)), image_id=_text(entry.get(ID_COLUMN)),
                column=column, value=_text(entry.get(column)))
        for entry in _entries(outcome)
    ]


def _value_problems(outcome: ExpectationOutcome) -> list[Problem]:
    attribute = outcome.meta.get("attribute", "")
    problems = []
    for entry in _entries(outcome):
        value = _text(entry.get(VALUE_COLUMN))
        kind = classify_value(value)
        if kind == "empty":
            check, message = "empty_value", f"Empty {attribute} value; the image is left out of {attribute} only."
        else:
            check, message = "unknown_value", f"Unknown {attribute} value {value!r}; the image is left out of {attribute} only."
        problems.append(Problem(check, "set_aside", message, row=_row(entry.get(ROW_COLUMN)),
                                image_id=_text(entry.get(ID_COLUMN)), column=attribute, value=value))
    return problems


def _rare_value_problems(outcome: ExpectationOutcome) -> list[Problem]:
    minimum = outcome.kwargs.get("min_value")
    return [
        Problem("rare_value", "guard", f"Value has {entry.get(COUNT_COLUMN, '?')} images, fewer than data.min_images_per_value = {minimum}; it is not used for evaluation.",
                column=_text(entry.get(ATTRIBUTE_COLUMN)), value=_text(entry.get(VALUE_COLUMN)))
        for entry in _entries(outcome)
    ]


def _entries(outcome: ExpectationOutcome) -> list[dict]:
    entries = outcome.result.get("unexpected_index_list") or []
    return [entry if isinstance(entry, dict) else {"index": entry} for entry in entries]


def _text(value: Any) -> str:
    return "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)


def _row(value: Any) -> int | None:
    try:
        return None if value is None or pd.isna(value) else int(value)
    except (TypeError, ValueError):
        return None
