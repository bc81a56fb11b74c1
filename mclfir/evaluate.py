"""Evaluation of one increment's checkpoint: retrieval mAP of every attribute seen so far.

For each attribute served after increment NAME, the rows of its split table
(``data/splits/<increment that introduced it>/<attribute>.parquet``) in the evaluation split are
divided by role: ``query`` rows are ranked against ``candidate`` rows, and ``excluded`` rows are
left out. Each image goes through the backbone once; its feature map then feeds the head of
every attribute that uses the image. Figures (mAP, mAP@k, chance and value-balanced mAP, in
percent; see :mod:`mclfir.metrics`) go to ``metrics/increments/<NAME>.json``, for the student,
the EMA teacher, or both.

``mclfir evaluate --aggregate`` then builds ``metrics/continual.json`` and the plots from the
per-increment files (see :mod:`mclfir.continual`).

Torch and the metrics are imported inside functions so that ``mclfir --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol, Sequence

import numpy as np
from tqdm import tqdm

from mclfir.config import EVAL_SPLITS, EVAL_WHICH, PARAMS_FILE, load_eval_config, load_params
from mclfir.paths import project_root, resolve

if TYPE_CHECKING:
    import torch

    from mclfir.metrics import RetrievalMetrics

_logger = logging.getLogger(__name__)

EVAL_ROLES = ("query", "candidate")
MODELS = ("student", "ema")

# Maps image ids and one attribute to embeddings [n, D].
EmbedFn = Callable[[Sequence[str], str], "np.ndarray | torch.Tensor"]


class Embedder(Protocol):
    """A model split into a shared backbone pass and per-attribute heads, like ``MultiHeadModel``."""

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Map uint8 RGB images ``[B, 3, H0, W0]`` as stored to feature maps ``[B, C, h, w]``, resizing and normalising them."""

    def embed(self, features: torch.Tensor, attributes: Sequence[str]) -> torch.Tensor:
        """Map feature maps ``[B, C, h, w]`` and one attribute per row to embeddings ``[B, D]``."""


class ImageSource(Protocol):
    """Images by id, such as :class:`mclfir.data.image_cache.ImageCache`."""

    def read(self, image_ids: Sequence[str]) -> torch.Tensor:
        """Return the images of ``image_ids`` as uint8 ``[B, H0, W0, 3]``."""


@dataclass(frozen=True)
class AttributeRows:
    """The evaluation rows of one attribute: query and candidate image ids with their value strings."""

    attribute: str
    query_ids: list[str]
    query_values: np.ndarray
    candidate_ids: list[str]
    candidate_values: np.ndarray


@dataclass(frozen=True)
class AttributeEmbeddings:
    """Query embeddings ``[Q, D]`` and candidate embeddings ``[C, D]`` of one attribute, with values."""

    query_emb: np.ndarray
    query_values: np.ndarray
    candidate_emb: np.ndarray
    candidate_values: np.ndarray

    def save(self, path: Path) -> Path:
        """Write the arrays to ``path`` (``.npz``) as ``query_emb``, ``query_values``, ``cand_emb``, ``cand_values``."""
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(
            path,
            query_emb=self.query_emb,
            query_values=self.query_values.astype(str),
            cand_emb=self.candidate_emb,
            cand_values=self.candidate_values.astype(str),
        )
        return path


# --- Evaluation rows ---------------------------------------------------------------------------


def split_table_path(splits_dir: Path, increment: str, attribute: str) -> Path:
    """Return the split table of ``attribute``, stored under the increment that introduced it."""
    return Path(splits_dir) / increment / f"{attribute}.parquet"


def eval_rows(frame: Any, attribute: str, split: str) -> AttributeRows:
    """Select the query and candidate rows of ``split`` from one attribute's split table."""
    in_split = frame[frame["split"] == split]
    unknown_roles = sorted(set(in_split["role"]) - {*EVAL_ROLES, "excluded"})
    if unknown_roles:
        raise ValueError(
            f"Split table of {attribute!r} has unknown roles {unknown_roles} in split {split!r}; "
            "expected query, candidate or excluded. Recreate it with `mclfir data split`."
        )

    queries = in_split[in_split["role"] == "query"]
    candidates = in_split[in_split["role"] == "candidate"]
    return AttributeRows(
        attribute=attribute,
        query_ids=queries["image_id"].astype(str).tolist(),
        query_values=queries["value"].astype(str).to_numpy(dtype=object),
        candidate_ids=candidates["image_id"].astype(str).tolist(),
        candidate_values=candidates["value"].astype(str).to_numpy(dtype=object),
    )


# --- Images ------------------------------------------------------------------------------------


class FileImageSource:
    """Images decoded from their files under the dataset root, for runs without an image cache.

    Every image is decoded at one size ``(height, width)``, by default the size of the first
    image read, so that a batch stacks into one tensor.
    """

    def __init__(self, root: Path, paths: Mapping[str, str], size: tuple[int, int] | None = None) -> None:
        self.root = Path(root)
        self.paths = dict(paths)
        self.size = size

    def read(self, image_ids: Sequence[str]) -> torch.Tensor:
        import torch
        from PIL import Image

        from mclfir.data.image_cache import decode_image

        files = []
        for image_id in image_ids:
            if image_id not in self.paths:
                raise KeyError(f"Image id {image_id!r} has no path in the split tables; recreate them with `mclfir data split`.")
            files.append(self.root / self.paths[image_id])

        if self.size is None:
            with Image.open(files[0]) as first:
                self.size = (first.height, first.width)
        height, width = self.size
        arrays = [decode_image(path, width, height)[0] for path in files]
        return torch.from_numpy(np.stack(arrays))


# --- Embedding ---------------------------------------------------------------------------------


def resolve_device(name: str) -> torch.device:
    """Return the torch device for ``name``; ``auto`` picks CUDA when available, else the CPU."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def embed_attributes(
    model: Embedder,
    images: ImageSource,
    image_ids: Mapping[str, Sequence[str]],
    batch_size: int = 256,
    device: str | torch.device = "cpu",
) -> dict[str, np.ndarray]:
    """Embed each attribute's images, running the backbone once per distinct image.

    ``image_ids`` maps an attribute to the ids to embed (ids may repeat across attributes).
    Returns attribute -> float32 ``[len(ids), D]`` in the order of its ids. The model receives
    uint8 RGB ``[B, 3, H0, W0]`` as stored, because ``MultiHeadModel.features`` resizes and
    normalises its input itself.
    """
    import torch

    unique_ids = np.array(sorted({str(image_id) for ids in image_ids.values() for image_id in ids}), dtype=object)
    # Per attribute: the rows of unique_ids it needs, sorted, and the output row of each.
    needed = {}
    for attribute, ids in image_ids.items():
        positions = np.searchsorted(unique_ids, np.asarray(ids, dtype=object).astype(str))
        order = np.argsort(positions, kind="stable")
        needed[attribute] = (positions[order], order)

    outputs: dict[str, np.ndarray | None] = {attribute: None for attribute in image_ids}
    device = torch.device(device)
    with torch.inference_mode():
        for start in tqdm(range(0, len(unique_ids), batch_size), desc="embed images", unit="batch", leave=False):
            stop = min(start + batch_size, len(unique_ids))
            batch = images.read(unique_ids[start:stop].tolist()).to(device).permute(0, 3, 1, 2)  # [B, 3, H0, W0]
            features = model.features(batch)  # [B, C, h, w]

            for attribute, (positions, order) in needed.items():
                low, high = np.searchsorted(positions, [start, stop])
                if low == high:
                    continue
                rows = torch.as_tensor(positions[low:high] - start, device=features.device)
                embeddings = model.embed(features[rows], [attribute] * int(high - low)).float().cpu().numpy()
                if outputs[attribute] is None:
                    outputs[attribute] = np.empty((len(order), embeddings.shape[1]), dtype=np.float32)
                outputs[attribute][order[low:high]] = embeddings

    return {attribute: _empty_if_none(output) for attribute, output in outputs.items()}


def _empty_if_none(output: np.ndarray | None) -> np.ndarray:
    return np.zeros((0, 0), dtype=np.float32) if output is None else output


def lookup_embed_fn(image_ids: Mapping[str, Sequence[str]], embeddings: Mapping[str, np.ndarray]) -> EmbedFn:
    """Return an :data:`EmbedFn` that looks up embeddings computed by :func:`embed_attributes`."""
    rows_of = {
        attribute: {str(image_id): row for row, image_id in enumerate(ids)} for attribute, ids in image_ids.items()
    }

    def embed(ids: Sequence[str], attribute: str) -> np.ndarray:
        rows = [rows_of[attribute][str(image_id)] for image_id in ids]
        return embeddings[attribute][rows]

    return embed


def model_embed_fn(model: Embedder, images: ImageSource, batch_size: int = 256, device: str | torch.device = "cpu") -> EmbedFn:
    """Return an :data:`EmbedFn` that runs ``model`` on the images of one attribute at a time."""

    def embed(ids: Sequence[str], attribute: str) -> np.ndarray:
        return embed_attributes(model, images, {attribute: ids}, batch_size, device)[attribute]

    return embed


# --- Metrics -----------------------------------------------------------------------------------


def evaluate_attribute(embed_fn: EmbedFn, rows: AttributeRows, k: int = 10) -> tuple[RetrievalMetrics, AttributeEmbeddings]:
    """Embed one attribute's queries and candidates with ``embed_fn`` and compute its retrieval figures.

    An attribute without queries or without candidates in the split gets NaN figures and a warning.
    """
    from mclfir.metrics import RetrievalMetrics, retrieval_metrics

    query_emb = _embed_rows(embed_fn, rows.query_ids, rows.attribute)
    candidate_emb = _embed_rows(embed_fn, rows.candidate_ids, rows.attribute)

    if query_emb is not None and candidate_emb is not None:
        metrics = retrieval_metrics(query_emb, rows.query_values, candidate_emb, rows.candidate_values, k=k)
    else:
        _logger.warning(
            "Attribute %s has %d queries and %d candidates in this split; its figures are NaN",
            rows.attribute, len(rows.query_ids), len(rows.candidate_ids),
        )
        nan = float("nan")
        metrics = RetrievalMetrics(nan, nan, nan, nan, k, 0, len(rows.query_ids), len(rows.candidate_ids), 0)
        dim = next((emb.shape[1] for emb in (query_emb, candidate_emb) if emb is not None), 0)
        if query_emb is None:
            query_emb = np.zeros((0, dim), dtype=np.float32)
        if candidate_emb is None:
            candidate_emb = np.zeros((0, dim), dtype=np.float32)

    embeddings = AttributeEmbeddings(query_emb, rows.query_values, candidate_emb, rows.candidate_values)
    return metrics, embeddings


def _embed_rows(embed_fn: EmbedFn, image_ids: Sequence[str], attribute: str) -> np.ndarray | None:
    """Return float32 ``[n, D]`` embeddings of ``image_ids``, or None when there are none."""
    from mclfir.metrics import as_array

    if not image_ids:
        return None
    return as_array(embed_fn(image_ids, attribute)).astype(np.float32, copy=False)


def evaluate_model(
    model: Embedder,
    images: ImageSource,
    attribute_rows: Sequence[AttributeRows],
    k: int = 10,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
) -> tuple[dict[str, RetrievalMetrics], dict[str, AttributeEmbeddings]]:
    """Evaluate every attribute with one backbone pass over the union of their images."""
    image_ids = {rows.attribute: [*rows.query_ids, *rows.candidate_ids] for rows in attribute_rows}
    embeddings = embed_attributes(model, images, image_ids, batch_size, device)
    embed_fn = lookup_embed_fn(image_ids, embeddings)

    metrics, exported = {}, {}
    for rows in attribute_rows:
        figures, exported[rows.attribute] = evaluate_attribute(embed_fn, rows, k)
        metrics[rows.attribute] = figures
        _logger.info(
            "%s: mAP %.2f%% (chance %.2f%%, balanced %.2f%%, mAP@%d %.2f%%) over %d queries and %d candidates",
            rows.attribute, figures.map, figures.chance, figures.balanced, k, figures.map_at_k, figures.queries, figures.candidates,
        )
    return metrics, exported


def summarise(metrics: Mapping[str, RetrievalMetrics]) -> dict[str, Any]:
    """Return per-attribute figures and their plain means over attributes (NaN written as null)."""
    from mclfir.continual import to_json_number

    attributes = {}
    for attribute, figures in metrics.items():
        plain = figures.to_dict()
        for key, value in plain.items():
            if isinstance(value, float):
                plain[key] = to_json_number(value)
        attributes[attribute] = plain

    mean = {}
    for key in ("map", "map_at_k", "chance", "balanced"):
        values = np.array([getattr(figures, key) for figures in metrics.values()], dtype=np.float64)
        values = values[~np.isnan(values)]
        mean[key] = to_json_number(float(values.mean())) if values.size else None
    return {"mean": mean, "attributes": attributes}


# --- One increment -----------------------------------------------------------------------------


def plan_until(increment: str, params: dict[str, Any]) -> dict[str, list[str]]:
    """Return the increments whose attributes are served after ``increment`` (its lineage), oldest first."""
    from mclfir.data.increments import load_plan

    return load_plan(params).lineage_attributes(increment)


def read_increment_rows(
    lineage: Mapping[str, Sequence[str]], splits_dir: Path, split: str
) -> tuple[list[AttributeRows], dict[str, str], str]:
    """Read the evaluation rows of every attribute in ``lineage``.

    Returns the rows, image id -> path (relative to the dataset root) and the dataset root,
    which every split table must share.
    """
    from mclfir.data.split import read_split

    attribute_rows, paths, roots = [], {}, set()
    for increment, attributes in lineage.items():
        for attribute in attributes:
            path = split_table_path(splits_dir, increment, attribute)
            table = read_split(path)
            if table.attribute != attribute:
                raise ValueError(f"{path} contains attribute {table.attribute!r}, expected {attribute!r}; recreate it with `mclfir data split`.")

            rows = eval_rows(table.frame, attribute, split)
            attribute_rows.append(rows)
            evaluated = table.frame[table.frame["role"].isin(EVAL_ROLES) & (table.frame["split"] == split)]
            paths.update(zip(evaluated["image_id"].astype(str), evaluated["path"].astype(str)))
            roots.add(table.root)
            _logger.info("%s: %d queries and %d candidates in split %s (%s)", attribute, len(rows.query_ids), len(rows.candidate_ids), split, path)

    if len(roots) > 1:
        raise ValueError(f"The split tables under {splits_dir} name different dataset roots {sorted(roots)}; recreate them from one catalog.")
    return attribute_rows, paths, roots.pop() if roots else ""


def open_images(cache_dir: Path | None, root: str, paths: Mapping[str, str]) -> ImageSource:
    """Return the image cache in ``cache_dir``, or decode files under ``root`` when ``cache_dir`` is None."""
    if cache_dir is not None:
        from mclfir.data.image_cache import ImageCache

        if not Path(cache_dir).is_dir():
            raise FileNotFoundError(
                f"Image cache folder not found: {cache_dir}. Build it with `mclfir data cache`, "
                "or pass --no-cache to decode the image files instead."
            )
        return ImageCache(cache_dir)
    _logger.info("No image cache given; decoding image files under %s", resolve(root))
    return FileImageSource(resolve(root), paths)


def load_eval_model(checkpoint: Path, which: str, device: torch.device, attributes: Sequence[str]) -> Embedder:
    """Load the student or EMA model of ``checkpoint`` in eval mode and check that it serves ``attributes``."""
    from mclfir.model.checkpoint import load_model

    model = load_model(checkpoint, which=which, device=device)
    model.eval()
    missing = [attribute for attribute in attributes if attribute not in model.attributes]
    if missing:
        raise ValueError(
            f"The {which} model in {checkpoint} does not serve attributes {missing} (it serves {model.attributes}); "
            "evaluate the checkpoint of the increment that introduced them or a later one."
        )
    return model


def checkpoint_has_ema(checkpoint: Path) -> bool:
    """Return whether ``checkpoint`` contains EMA weights."""
    from mclfir.model.checkpoint import load_checkpoint

    return bool(load_checkpoint(checkpoint).get("ema"))


def evaluate_increment(
    increment: str,
    *,
    params: dict[str, Any] | None = None,
    checkpoint: Path | None = None,
    splits_dir: Path = Path("data/splits"),
    cache_dir: Path | None = Path("data/cache"),
    out: Path | None = None,
    export_dir: Path | None = None,
    split: str | None = None,
    which: str | None = None,
    k: int | None = None,
    batch_size: int | None = None,
    device: str | None = None,
) -> dict[str, Any]:
    """Evaluate the checkpoint of ``increment`` on every attribute seen so far and write the metrics JSON.

    Options left as None take their value from the ``eval`` section of ``params``. Returns the
    written content: ``increment``, ``split``, ``k``, ``attributes``, ``checkpoint`` and, per
    evaluated model (``student``, ``ema``), ``{"mean": {...}, "attributes": {attribute: {...}}}``.
    With ``export_dir``, the first model's embeddings go to ``<export_dir>/<attribute>.npz``
    and, with both models, the EMA's to ``<export_dir>/ema/<attribute>.npz``.
    """
    params = load_params() if params is None else params
    config = load_eval_config(params)
    split = split or config.split
    which = which or config.which
    k = config.k if k is None else k
    batch_size = config.batch_size if batch_size is None else batch_size
    if k < 1 or batch_size < 1:
        raise ValueError(f"Invalid k {k} or batch size {batch_size}: both must be positive (eval.k, eval.batch_size).")
    torch_device = resolve_device(device or config.device)
    checkpoint = resolve(checkpoint or f"models/{increment}/checkpoint.pt")
    out = resolve(out or f"metrics/increments/{increment}.json")

    lineage = plan_until(increment, params)
    attributes = [attribute for group in lineage.values() for attribute in group]
    attribute_rows, paths, root = read_increment_rows(lineage, resolve(splits_dir), split)
    images = open_images(resolve(cache_dir) if cache_dir is not None else None, root, paths)

    result: dict[str, Any] = {"increment": increment, "split": split, "k": k, "attributes": attributes, "checkpoint": _display_path(checkpoint)}
    models = MODELS if which == "both" else (which,)
    for index, model_name in enumerate(models):
        started = time.perf_counter()
        if model_name == "ema" and which == "both" and not checkpoint_has_ema(checkpoint):
            _logger.info("%s has no EMA weights (its strategy keeps none); evaluated the student only", checkpoint)
            continue
        model = load_eval_model(checkpoint, model_name, torch_device, attributes)
        metrics, embeddings = evaluate_model(model, images, attribute_rows, k, batch_size, torch_device)
        result[model_name] = summarise(metrics)
        _logger.info("Evaluated the %s model of %s on %s in %.1f s", model_name, increment, torch_device, time.perf_counter() - started)

        if export_dir is not None:
            folder = resolve(export_dir) if index == 0 else resolve(export_dir) / model_name
            for attribute, arrays in embeddings.items():
                arrays.save(folder / f"{attribute}.npz")
            _logger.info("Wrote %s embeddings of %d attributes to %s", model_name, len(embeddings), folder)
        del model

    write_json(result, out)
    return result


def _display_path(path: Path) -> str:
    """Return ``path`` relative to the project root when it lies inside, so metrics files do not name the machine."""
    try:
        return path.relative_to(project_root()).as_posix()
    except ValueError:
        return str(path)


def write_json(content: Mapping[str, Any], out: Path) -> Path:
    """Write ``content`` as indented JSON (no NaN, which JSON lacks), creating the folder."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(content, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    _logger.info("Wrote %s", out)
    return out


def aggregate_report(
    params: dict[str, Any] | None = None,
    last_increment: str | None = None,
    which: str | None = None,
    increments_dir: Path = Path("metrics/increments"),
    train_dir: Path = Path("metrics/train"),
    report_path: Path = Path("metrics/continual.json"),
    plots_dir: Path = Path("plots"),
) -> dict[str, Any]:
    """Build ``metrics/continual.json`` and the plots for the lineage of ``last_increment`` (default: the plan's last)."""
    from mclfir.continual import aggregate
    from mclfir.data.increments import load_plan

    params = load_params() if params is None else params
    which = which or load_eval_config(params).report_model
    last_increment = last_increment or load_plan(params).order[-1]
    lineage = plan_until(last_increment, params)
    return aggregate(lineage, resolve(increments_dir), resolve(train_dir), resolve(report_path), resolve(plots_dir), which)


# --- Command line ------------------------------------------------------------------------------


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``mclfir evaluate``."""
    parser.add_argument("--increment", help="increment whose checkpoint to evaluate; with --aggregate, the last increment reported (default: the plan's last)")
    parser.add_argument("--aggregate", action="store_true", help="build metrics/continual.json and the plots from every increment's metrics instead of evaluating")
    parser.add_argument("--which", choices=EVAL_WHICH, help="model to evaluate (default: eval.which); with --aggregate, student or ema (default: eval.report_model)")
    parser.add_argument("--split", choices=EVAL_SPLITS, help="evaluation split (default: eval.split)")
    parser.add_argument(
        "--export-embeddings",
        metavar="DIR",
        help="write <DIR>/<attribute>.npz with query and candidate embeddings and values; with --which both, the EMA's go to <DIR>/ema/",
    )
    parser.add_argument("--checkpoint", help="checkpoint to evaluate (default: models/<increment>/checkpoint.pt)")
    parser.add_argument("--splits-dir", default="data/splits", help="folder of the split tables (default: %(default)s)")
    parser.add_argument("--cache", default="data/cache", help="image cache folder (default: %(default)s)")
    parser.add_argument("--no-cache", action="store_true", help="decode the image files under the dataset root instead of reading the cache")
    parser.add_argument("--out", help="metrics file to write (default: metrics/increments/<increment>.json)")
    parser.add_argument("--batch-size", type=int, help="images per forward pass (default: eval.batch_size)")
    parser.add_argument("--k", type=int, help="cut-off of mAP@k (default: eval.k)")
    parser.add_argument("--device", help="torch device, or auto for CUDA when available (default: eval.device)")
    parser.add_argument("--strategy", help="training strategy of the checkpoint, for the MLflow run's tag (default: train.strategy)")
    parser.add_argument("--parent-run-file", help="file holding the MLflow parent run id (default: the pipeline's)")
    parser.add_argument("--params", default=PARAMS_FILE, help="parameters file (default: %(default)s in the project root)")


def run(args: argparse.Namespace) -> int:
    """Evaluate one increment, or aggregate the continual report, inside an MLflow run; print a summary."""
    from mclfir.data.increments import PlanError, load_plan
    from mclfir.stage_runs import evaluate_run, log_evaluation, log_report

    try:
        params = load_params(args.params)
        if args.aggregate:
            if args.which == "both":
                raise ValueError("--aggregate reports one model; use --which student or --which ema.")
            with evaluate_run(args.increment, params, kind="report", strategy=args.strategy, parent_file=args.parent_run_file):
                report = aggregate_report(params, args.increment, args.which)
                log_report(report)
            print(_format_report(report))
            return 0

        if not args.increment:
            raise ValueError("--increment is required unless --aggregate is given.")
        plan = load_plan(params)
        plan.get(args.increment)  # raises PlanError naming the known increments
        increment_index = plan.order.index(args.increment)
        with evaluate_run(args.increment, params, strategy=args.strategy, parent_file=args.parent_run_file):
            result = evaluate_increment(
                args.increment,
                params=params,
                checkpoint=args.checkpoint,
                splits_dir=Path(args.splits_dir),
                cache_dir=None if args.no_cache else Path(args.cache),
                out=args.out,
                export_dir=args.export_embeddings,
                split=args.split,
                which=args.which,
                k=args.k,
                batch_size=args.batch_size,
                device=args.device,
            )
            log_evaluation(result, increment_index)
    except (FileNotFoundError, ValueError, KeyError, PlanError) as error:
        _logger.error("%s", error)
        return 1

    for line in _format_result(result):
        print(line)
    return 0


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _format_result(result: Mapping[str, Any]) -> list[str]:
    lines = []
    for model_name in MODELS:
        if model_name not in result:
            continue
        for attribute, figures in result[model_name]["attributes"].items():
            lines.append(
                f"{result['increment']} {model_name} {attribute}: mAP {_percent(figures['map'])} "
                f"(chance {_percent(figures['chance'])}, balanced {_percent(figures['balanced'])}, "
                f"mAP@{result['k']} {_percent(figures['map_at_k'])}), {figures['queries']} queries, {figures['candidates']} candidates"
            )
        lines.append(f"{result['increment']} {model_name} mean mAP {_percent(result[model_name]['mean']['map'])}")
    return lines


def _format_report(report: Mapping[str, Any]) -> str:
    return (
        f"{report['model']} after {report['increment_names'][-1]}: final mAP {_percent(report['final_map'])}, "
        f"forgetting {_percent(report['forgetting'])}, BWT {_percent(report['bwt'])}"
    )
