"""Identical photos (same content hash) in a catalog, and the labels on which they conflict.

Product catalogs reuse one photo for several products. When those products carry different
labels for an attribute, the photo is its own nearest neighbour with a different label, which
would count as a retrieval error no model can avoid. Every image of such a group is therefore
excluded from evaluation on that attribute (``eval_exclude``); it stays in the catalog. The
splits keep identical photos together, because they assign images by content hash.
"""

import logging
from collections import defaultdict

import pandas as pd

from mclfir.data.catalog import HASH_COLUMN, ID_COLUMN, ROW_COLUMN
from mclfir.data.problems import Problem

_logger = logging.getLogger(__name__)

EVAL_EXCLUDE_COLUMN = "eval_exclude"
_GROUPS_LISTED = 1000


def find_conflicting_duplicates(frame: pd.DataFrame, attributes: list[str]) -> tuple[pd.Series, list[Problem], dict]:
    """Find groups of identical photos and the attributes on which their labels differ.

    ``frame`` contains the usable images with cleaned labels (lists of valid values). Images
    without a label for an attribute take no part in that attribute's comparison.
    Returns the ``eval_exclude`` lists (indexed like ``frame``), one ``guard`` problem per image
    and conflicting attribute, and a summary for the report.
    """
    exclude: dict[int, list[str]] = defaultdict(list)
    problems: list[Problem] = []
    conflicting_groups: dict[str, int] = {attribute: 0 for attribute in attributes}
    listed: list[dict] = []
    conflicting_total = 0

    hashes = frame[HASH_COLUMN]
    sizes = hashes.map(hashes.value_counts())
    duplicated = frame[hashes.notna() & (sizes > 1)]
    groups = duplicated.groupby(HASH_COLUMN, sort=False)

    for content_hash, group in groups:
        conflicts = {}
        for attribute in attributes:
            labels = {tuple(sorted(values)) for values in group[attribute] if len(values) > 0}
            if len(labels) > 1:
                conflicts[attribute] = sorted("|".join(label) for label in labels)
        if not conflicts:
            continue

        conflicting_total += 1
        for attribute in conflicts:
            conflicting_groups[attribute] += 1
        for index, row in group.iterrows():
            exclude[index] += list(conflicts)
            problems += _conflict_problems(row, group, conflicts)
        if len(listed) < _GROUPS_LISTED:
            listed.append({"content_hash": content_hash, "image_ids": group[ID_COLUMN].astype(str).tolist(), "conflicts": conflicts})

    eval_exclude = pd.Series([exclude.get(index, []) for index in frame.index], index=frame.index, dtype=object)
    summary = {
        "groups": int(groups.ngroups),
        "images_in_groups": int(len(duplicated)),
        "conflicting_groups": conflicting_total,
        "conflicting_groups_per_attribute": conflicting_groups,
        "images_excluded_from_evaluation": int(sum(1 for values in eval_exclude if values)),
        # The first _GROUPS_LISTED conflicting groups; every conflicting image is also a guard problem.
        "conflicts": listed,
    }
    _logger.info(
        "Found %d groups of identical photos (%d images); labels conflict in %s",
        summary["groups"], summary["images_in_groups"], {name: count for name, count in conflicting_groups.items() if count},
    )
    return eval_exclude, problems, summary


def _conflict_problems(row: pd.Series, group: pd.DataFrame, conflicts: dict[str, list[str]]) -> list[Problem]:
    image_id = str(row[ID_COLUMN])
    others = ", ".join(str(other) for other in group[ID_COLUMN] if str(other) != image_id)
    return [
        Problem(
            "conflicting_duplicate",
            "guard",
            f"Same photo as id {others}, but {attribute} labels differ ({' vs '.join(labels)}); excluded from {attribute} evaluation.",
            row=None if pd.isna(row[ROW_COLUMN]) else int(row[ROW_COLUMN]),
            image_id=image_id,
            column=attribute,
            value="|".join(row[attribute]),
        )
        for attribute, labels in conflicts.items()
    ]
