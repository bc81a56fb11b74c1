"""The increment plan: which attributes each training increment introduces, and in what order.

``params.yaml`` stores the plan under ``increments``, a mapping from increment name to
``{attributes: [...], parent: <name or "init">}``. The mapping's order is the training order,
and each parent must come earlier in it, so the plan has no cycles. ``init`` is the freshly
initialised model. Each attribute is introduced by exactly one increment, and an increment
serves its own attributes plus those of its ancestors.

The ``mclfir data plan`` command checks the plan against the validated catalog and writes it,
with per-attribute image and value counts, to a JSON file.
"""

import argparse
import copy
import json
import logging
import os
import re
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mclfir.config import PARAMS_FILE, load_params
from mclfir.data.catalog import Catalog, read_catalog
from mclfir.paths import resolve

_logger = logging.getLogger(__name__)

INIT = "init"
INCREMENTS_KEY = "increments"
_INCREMENT_KEYS = ("attributes", "parent")
# Increment names become folder names and DVC ``foreach`` keys, and attribute names become file names.
_INCREMENT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
_ATTRIBUTE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_NUMBERED_NAME = re.compile(r"^inc(\d+)$")


class PlanError(ValueError):
    """An invalid increment plan, or a plan that does not match the catalog."""


@dataclass(frozen=True)
class Increment:
    """One training increment: the attributes it introduces and the increment it starts from."""

    name: str
    attributes: tuple[str, ...]
    parent: str


@dataclass(frozen=True)
class IncrementPlan:
    """Validated increments in training order (every parent before its children)."""

    increments: tuple[Increment, ...]

    @property
    def order(self) -> list[str]:
        """Increment names in training order."""
        return [increment.name for increment in self.increments]

    @property
    def attributes(self) -> list[str]:
        """Every attribute of the plan, in the order the increments introduce them."""
        return [attribute for increment in self.increments for attribute in increment.attributes]

    def get(self, name: str) -> Increment:
        """Return the increment called ``name``, or raise PlanError listing the known names."""
        for increment in self.increments:
            if increment.name == name:
                return increment
        raise PlanError(
            f"Unknown increment {name!r}. The plan in params.yaml defines: {', '.join(self.order)}. "
            f"Use one of these names or add the increment under '{INCREMENTS_KEY}'."
        )

    def parent_of(self, name: str) -> str:
        """Return the parent increment's name, or ``init`` for an increment that starts from scratch."""
        return self.get(name).parent

    def lineage(self, name: str) -> list[str]:
        """Return ``name`` and its ancestors, oldest first (``init`` left out)."""
        chain = [name]
        parent = self.parent_of(name)
        while parent != INIT:
            chain.append(parent)
            parent = self.parent_of(parent)
        return chain[::-1]

    def lineage_attributes(self, name: str) -> dict[str, list[str]]:
        """Return increment -> attributes for ``name`` and its ancestors, oldest first."""
        return {ancestor: list(self.get(ancestor).attributes) for ancestor in self.lineage(name)}

    def attributes_seen_until(self, name: str) -> list[str]:
        """Return the attributes served after training ``name``: its own and its ancestors', oldest first."""
        return [attribute for ancestor in self.lineage(name) for attribute in self.get(ancestor).attributes]

    def increment_of(self, attribute: str) -> str:
        """Return the name of the increment that introduces ``attribute``."""
        for increment in self.increments:
            if attribute in increment.attributes:
                return increment.name
        raise PlanError(
            f"Attribute {attribute!r} is not in the increment plan. Planned attributes: "
            f"{', '.join(self.attributes)}. Add it with `append_increment` or under '{INCREMENTS_KEY}' in params.yaml."
        )

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Return the plan as the plain mapping that ``params.yaml`` holds."""
        return {
            increment.name: {"attributes": list(increment.attributes), "parent": increment.parent}
            for increment in self.increments
        }


def parse_plan(section: Any) -> IncrementPlan:
    """Validate the ``increments`` section of ``params.yaml`` and return it as a plan.

    Raises PlanError naming the increment, the offending value and the fix.
    """
    if not isinstance(section, dict) or not section:
        raise PlanError(
            f"Missing or empty '{INCREMENTS_KEY}' section in params.yaml (found {section!r}). Add a mapping like "
            f"'{INCREMENTS_KEY}: {{inc0: {{attributes: [gender], parent: {INIT}}}}}'."
        )

    increments: list[Increment] = []
    introduced_by: dict[str, str] = {}
    for name, entry in section.items():
        increment = _parse_increment(name, entry, [earlier.name for earlier in increments], section)

        for attribute in increment.attributes:
            if attribute in introduced_by:
                raise PlanError(
                    f"Increment {name!r} introduces attribute {attribute!r}, which increment "
                    f"{introduced_by[attribute]!r} already introduces. Remove it from one of the two."
                )
            introduced_by[attribute] = name

        increments.append(increment)

    return IncrementPlan(tuple(increments))


def _parse_increment(name: Any, entry: Any, earlier: list[str], section: dict[str, Any]) -> Increment:
    if not isinstance(name, str) or not _INCREMENT_NAME.match(name) or name == INIT:
        raise PlanError(
            f"Invalid increment name {name!r}. Use letters, digits, '_' or '-', starting with a letter, "
            f"and not the reserved name {INIT!r}."
        )
    if not isinstance(entry, dict):
        raise PlanError(f"Increment {name!r} must be a mapping with 'attributes' and 'parent', found {entry!r}.")

    unknown_keys = sorted(str(key) for key in entry if key not in _INCREMENT_KEYS)
    if unknown_keys:
        raise PlanError(
            f"Increment {name!r} has unknown keys {unknown_keys}. The allowed keys are {list(_INCREMENT_KEYS)}."
        )

    attributes = _parse_attributes(name, entry.get("attributes"))
    parent = _parse_parent(name, entry.get("parent"), earlier, section)
    return Increment(name, attributes, parent)


def _parse_attributes(name: str, attributes: Any) -> tuple[str, ...]:
    if not isinstance(attributes, list) or not attributes:
        raise PlanError(
            f"Increment {name!r} must list at least one attribute under 'attributes', found {attributes!r}."
        )

    for attribute in attributes:
        if not isinstance(attribute, str) or not _ATTRIBUTE_NAME.match(attribute):
            raise PlanError(
                f"Increment {name!r} has invalid attribute name {attribute!r}. Use the catalog's column name "
                "(letters, digits, '_', '.' or '-')."
            )

    repeated = sorted(attribute for attribute, count in Counter(attributes).items() if count > 1)
    if repeated:
        raise PlanError(f"Increment {name!r} lists attributes {repeated} more than once. List each once.")
    return tuple(attributes)


def _parse_parent(name: str, parent: Any, earlier: list[str], section: dict[str, Any]) -> str:
    if parent is None:
        previous = earlier[-1] if earlier else INIT
        raise PlanError(f"Increment {name!r} has no 'parent'. Set it to an earlier increment or {INIT!r} (e.g. {previous!r}).")
    if parent == INIT or parent in earlier:
        return parent

    if parent == name:
        problem = "is its own parent"
    elif parent in section:
        problem = f"has parent {parent!r}, which comes later in the plan (a parent must be trained first, so cycles are impossible)"
    else:
        problem = f"has unknown parent {parent!r}"
    choices = ", ".join([INIT, *earlier])
    raise PlanError(f"Increment {name!r} {problem}. Set 'parent' to one of: {choices}.")


def load_plan(params: dict[str, Any] | None = None) -> IncrementPlan:
    """Return the validated increment plan of ``params`` (``params.yaml`` of the project when None)."""
    params = load_params() if params is None else params
    return parse_plan(params.get(INCREMENTS_KEY))


def check_against_catalog(plan: IncrementPlan, catalog: Catalog) -> None:
    """Raise PlanError when the plan names attributes that the catalog lacks, and warn about unlabelled ones."""
    unknown = [
        f"{attribute!r} (increment {increment.name!r})"
        for increment in plan.increments
        for attribute in increment.attributes
        if attribute not in catalog.attributes
    ]
    if unknown:
        raise PlanError(
            f"The increment plan names attributes that the catalog lacks: {', '.join(unknown)}. "
            f"Catalog attributes: {', '.join(catalog.attributes)}. Fix the names under '{INCREMENTS_KEY}' in "
            "params.yaml, or add the column to the dataset and rerun `mclfir data prepare`."
        )

    for attribute in plan.attributes:
        if not catalog.frame[attribute].map(len).any():
            _logger.warning("Attribute %r of increment %r has no labelled image in the catalog.", attribute, plan.increment_of(attribute))


def append_increment(
    params_path: str | Path,
    attributes: list[str],
    parent: str | None = None,
    name: str | None = None,
) -> str:
    """Append an increment to the plan in ``params_path``, keeping the file's comments, and return its name.

    The parent defaults to the last increment, and the name to ``inc<N>`` with N one above the
    highest number used so far. The new plan is validated before the file is rewritten.
    """
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    params_path = resolve(params_path)
    yaml = _round_trip_yaml(YAML)
    with params_path.open(encoding="utf-8") as handle:
        document = yaml.load(handle)

    plan = parse_plan(document.get(INCREMENTS_KEY) if isinstance(document, dict) else None)
    parent = plan.order[-1] if parent is None else parent
    name = _next_increment_name(plan) if name is None else name
    if name in plan.order:
        raise PlanError(f"Increment {name!r} already exists in {params_path}. Choose another name.")

    entry = CommentedMap()
    entry["attributes"] = CommentedSeq(attributes)
    entry["parent"] = parent
    parse_plan({**plan.to_dict(), name: {"attributes": list(attributes), "parent": parent}})

    section = document[INCREMENTS_KEY]
    _move_trailing_comment(section, entry)
    section[name] = entry
    _write_atomically(params_path, lambda handle: yaml.dump(document, handle))
    _logger.info("Appended increment %s (attributes %s, parent %s) to %s", name, ", ".join(attributes), parent, params_path)
    return name


def _round_trip_yaml(yaml_class: type) -> Any:
    yaml = yaml_class(typ="rt")
    yaml.preserve_quotes = True
    # Match the layout of params.yaml: two-space mappings, list dashes indented under their key.
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 4096
    return yaml


def _move_trailing_comment(section: Any, entry: Any) -> None:
    """Move the comment lines that follow the plan's last value (e.g. the next section's heading) below ``entry``.

    ruamel.yaml attaches such lines to the last scalar before them, so without this move the new
    increment would be written between the next section's comment and the section itself. An
    end-of-line comment on that scalar stays where it is.
    """
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    node = section
    while True:
        if isinstance(node, CommentedMap) and node:
            key, slot = list(node.keys())[-1], 2
        elif isinstance(node, CommentedSeq) and node:
            key, slot = len(node) - 1, 0
        else:
            return
        child = node[key]
        if isinstance(child, (CommentedMap, CommentedSeq)) and child:
            node = child
            continue
        break

    tokens = node.ca.items.get(key)
    if not tokens or tokens[slot] is None:
        return
    token = tokens[slot]
    own_line, newline, following_lines = token.value.partition("\n")
    if not following_lines:
        return

    moved = copy.copy(token)
    moved.value = "\n" + following_lines
    token.value = own_line + newline
    entry.ca.items["parent"] = [None, None, moved, None]


def _next_increment_name(plan: IncrementPlan) -> str:
    numbers = [int(match.group(1)) for match in map(_NUMBERED_NAME.match, plan.order) if match]
    return f"inc{max(numbers) + 1 if numbers else len(plan.order)}"


def _write_atomically(path: Path, write: Any) -> None:
    handle = tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=path.parent, prefix=f".{path.name}.", delete=False)
    try:
        with handle:
            write(handle)
        shutil.copymode(path, handle.name)
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


def describe_plan(plan: IncrementPlan, catalog: Catalog) -> dict[str, Any]:
    """Return the plan in training order with image and value counts per attribute.

    ``images`` counts images with at least one value. ``value_counts`` maps each value to its
    number of images, most frequent first, and an image with several values counts once for each.
    """
    increments = []
    for increment in plan.increments:
        attributes = {attribute: _attribute_counts(catalog, attribute) for attribute in increment.attributes}
        increments.append(
            {
                "name": increment.name,
                "parent": increment.parent,
                "attributes_seen": plan.attributes_seen_until(increment.name),
                "attributes": attributes,
            }
        )
    return {"order": plan.order, "increments": increments}


def _attribute_counts(catalog: Catalog, attribute: str) -> dict[str, Any]:
    value_lists = catalog.frame[attribute]
    counter: Counter[str] = Counter(value for values in value_lists for value in set(values))
    ranked = sorted(counter.items(), key=lambda item: (-item[1], item[0]))
    return {
        "images": int(value_lists.map(len).gt(0).sum()),
        "values": len(counter),
        "value_counts": dict(ranked),
    }


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``mclfir data plan``."""
    parser.add_argument(
        "--catalog",
        default="data/validated/catalog.parquet",
        help="validated catalog (Parquet) to check the plan against (default: %(default)s)",
    )
    parser.add_argument(
        "--out",
        default="data/increments/plan.json",
        help="JSON file to write the plan to (default: %(default)s)",
    )
    parser.add_argument(
        "--params",
        default=PARAMS_FILE,
        help="parameters file holding the 'increments' section (default: %(default)s in the project root)",
    )


def run(args: argparse.Namespace) -> int:
    """Check the plan against the catalog, write it with its counts, and print one line per increment."""
    try:
        plan = load_plan(load_params(args.params))
        catalog = read_catalog(resolve(args.catalog))
        check_against_catalog(plan, catalog)
    except (PlanError, FileNotFoundError) as error:
        _logger.error("%s", error)
        return 1

    description = describe_plan(plan, catalog)
    out = resolve(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(description, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    for entry in description["increments"]:
        counts = ", ".join(
            f"{attribute} ({counts['values']} values, {counts['images']} images)"
            for attribute, counts in entry["attributes"].items()
        )
        print(f"{entry['name']} <- {entry['parent']}: {counts}")
    print(f"Wrote the plan of {len(plan.order)} increments to {out}")
    return 0
