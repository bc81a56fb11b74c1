"""Checkpoints: atomic save and safe load of training state, and rebuilding a model from one.

A checkpoint is a dict of plain values (dict, list, tuple, str, int, float, bool, None) and
tensors, so ``torch.load(..., weights_only=True)`` reads it without running pickled code.
Payload keys written by training: ``model`` (student state_dict), ``ema`` (``EmaTeacher.state_dict()``
or None), ``optimizer``, ``scheduler``, ``step``, ``epoch``, ``rng`` (:func:`capture_rng_state`),
``config`` (resolved config dict), ``structure`` (``MultiHeadModel.structure()``), ``increment``
and ``cost`` (``wall_s``, ``images_seen``, ``steps``).
"""

import dataclasses
import logging
import os
import pickle
import random
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mclfir.config import ModelConfig
from mclfir.model.multihead import MultiHeadModel

_logger = logging.getLogger(__name__)

_PLAIN_TYPES = (str, int, float, bool, type(None), torch.Tensor)


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Write ``payload`` to ``path`` atomically (temporary file in the same folder, then rename).

    Raises TypeError naming the first value that is not plain data or a tensor.
    """
    _check_plain(payload, "payload")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    handle = tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False)
    tmp_path = Path(handle.name)
    try:
        with handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise

    _logger.info("Saved checkpoint %s", path)
    return path


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` onto the CPU, with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint not found: {path}. Train the increment first, or check the path.")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise ValueError(
            f"Invalid checkpoint {path}: it contains objects other than tensors and plain data ({error}). "
            "Write checkpoints with save_checkpoint."
        ) from error
    if not isinstance(payload, dict):
        raise ValueError(f"Invalid checkpoint {path}: expected a dict at the top level, got {type(payload).__name__}.")
    return payload


def load_model(path: str | os.PathLike, which: str = "student", device: str | torch.device = "cpu") -> MultiHeadModel:
    """Rebuild the model saved in the checkpoint at ``path`` and load the student or EMA weights.

    The structure comes from ``payload["structure"]`` and the model config from
    ``payload["config"]`` (its ``model`` section). Pretrained weights are not fetched again because
    the checkpoint contains all weights. Returns the model in eval mode on ``device``.
    """
    if which not in ("student", "ema"):
        raise ValueError(f"Invalid which={which!r}; use 'student' or 'ema'.")
    payload = load_checkpoint(path)
    for key in ("structure", "config", "model"):
        if key not in payload:
            raise KeyError(f"Invalid checkpoint {path}: missing {key!r}. Write it with the training step of this project.")

    cfg = dataclasses.replace(model_config_from_payload(payload["config"]), pretrained=False, weights_path=None)
    model = MultiHeadModel.from_structure(cfg, payload["structure"])

    if which == "ema":
        if not payload.get("ema"):
            raise KeyError(f"Checkpoint {path} has no EMA weights (payload 'ema' is empty); load which='student'.")
        state_dict = payload["ema"]["module"]
    else:
        state_dict = payload["model"]
    model.load_state_dict(state_dict)

    return model.to(device).eval()


def model_config_from_payload(config: Mapping[str, Any]) -> ModelConfig:
    """Return the :class:`ModelConfig` stored in a checkpoint's ``config`` (full params or the model section)."""
    section = config.get("model", config)
    return ModelConfig.from_dict(dict(section))


def capture_rng_state() -> dict[str, Any]:
    """Return the torch, CUDA, numpy and Python RNG states as tensors and plain data."""
    numpy_state = np.random.get_state()
    python_state = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "kind": numpy_state[0],
            "keys": torch.from_numpy(numpy_state[1].astype(np.int64)),
            "pos": int(numpy_state[2]),
            "has_gauss": int(numpy_state[3]),
            "cached_gaussian": float(numpy_state[4]),
        },
        "python": {"version": python_state[0], "internal": list(python_state[1]), "gauss_next": python_state[2]},
    }


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Restore RNG states captured by :func:`capture_rng_state` (CUDA states only when CUDA is present)."""
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])

    numpy_state = state["numpy"]
    np.random.set_state(
        (
            numpy_state["kind"],
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["pos"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )

    python_state = state["python"]
    random.setstate((python_state["version"], tuple(python_state["internal"]), python_state["gauss_next"]))


def _check_plain(value: Any, where: str) -> None:
    # numpy scalars subclass float and int but do not load with weights_only=True.
    if isinstance(value, _PLAIN_TYPES) and not isinstance(value, np.generic):
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, (str, int)):
                raise TypeError(f"Invalid checkpoint key at {where}: {key!r} ({type(key).__name__}); use str or int keys.")
            _check_plain(item, f"{where}[{key!r}]")
        return
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_plain(item, f"{where}[{index}]")
        return
    raise TypeError(
        f"Invalid checkpoint value at {where}: {type(value).__name__} is not a tensor or plain data. "
        "Convert it (arrays to tensors, objects to dicts) before saving."
    )
