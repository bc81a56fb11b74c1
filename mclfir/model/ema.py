"""EMA teacher: an exponential moving average of the student, used as a frozen teacher.

The average is kept by ``timm.utils.ModelEmaV3`` (parameters and buffers, in place). This
wrapper adds a frozen module that stays in eval mode and a step counter that is saved. Before
each update it checks that teacher and student have the same tensors, because timm pairs them
by position only. After a new increment it takes over the new head from the student.
"""

import copy
import logging
from typing import Any

import torch
from timm.utils import ModelEmaV3
from torch import nn

from mclfir.model.multihead import MultiHeadModel

_logger = logging.getLogger(__name__)


class EmaTeacher(nn.Module):
    """Frozen EMA copy of a :class:`MultiHeadModel`; call :meth:`update` after every optimizer step.

    ``decay`` is the weight of the old teacher per update. As in timm's ``ModelEmaV3``, an update
    with ``step`` <= 1 copies the student (decay 0), and ``use_warmup`` ramps the decay up with the step.
    """

    def __init__(self, model: MultiHeadModel, decay: float, use_warmup: bool = False):
        super().__init__()
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"Invalid EMA decay {decay}; use a value between 0 and 1.")
        self.ema = ModelEmaV3(model, decay=decay, use_warmup=use_warmup)
        self.step = 0
        _freeze(self.ema.module)

    @property
    def module(self) -> MultiHeadModel:
        """The teacher model (frozen, eval mode)."""
        return self.ema.module

    @property
    def decay(self) -> float:
        return self.ema.decay

    def train(self, mode: bool = True) -> "EmaTeacher":
        """Keep the teacher in eval mode whatever ``mode`` is."""
        super().train(False)
        return self

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.module(*args, **kwargs)

    @torch.no_grad()
    def update(self, model: MultiHeadModel, step: int | None = None) -> None:
        """Move the teacher towards ``model``; ``step`` is the optimizer step just taken (counted from 1).

        Without ``step`` the update counts itself. Raises ValueError when the student has other
        tensors than the teacher (call :meth:`sync_structure` after ``add_increment``).
        """
        self._check_keys(model)
        self.step = self.step + 1 if step is None else int(step)
        self.ema.update(model, step=self.step)

    @torch.no_grad()
    def sync_structure(self, model: MultiHeadModel) -> list[str]:
        """Copy the heads that ``model`` has and the teacher lacks; return their increment names.

        The teacher keeps its averaged weights for the backbone and its existing heads.
        """
        teacher = self.module
        teacher_increments = teacher.increments
        student_increments = model.increments
        if list(student_increments)[: len(teacher_increments)] != list(teacher_increments) or any(
            student_increments[name] != attributes for name, attributes in teacher_increments.items()
        ):
            raise ValueError(
                f"Cannot sync the EMA teacher: its heads {teacher_increments} are not the first heads of the "
                f"student {student_increments}. Build a new EmaTeacher from the student instead."
            )

        added = [name for name in student_increments if name not in teacher_increments]
        for name in added:
            teacher.add_increment(name, student_increments[name])
            teacher.heads[name] = copy.deepcopy(model.heads[name])
        _freeze(teacher)

        if added:
            _logger.info("EMA teacher took over the new heads %s from the student", added)
        self._check_keys(model)
        return added

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Return ``{"module": teacher state_dict, "step": int, "decay": float}`` (plain data)."""
        return {"module": self.module.state_dict(), "step": self.step, "decay": float(self.decay)}

    def load_state_dict(self, state_dict: dict[str, Any], strict: bool = True, assign: bool = False) -> Any:
        """Load a state written by :meth:`state_dict`; the teacher must already have the same heads."""
        missing_fields = {"module", "step"} - set(state_dict)
        if missing_fields:
            raise KeyError(f"Invalid EMA state: missing fields {sorted(missing_fields)}; expected 'module' and 'step'.")
        result = self.module.load_state_dict(state_dict["module"], strict=strict)
        self.step = int(state_dict["step"])
        _freeze(self.module)
        return result

    def _check_keys(self, model: nn.Module) -> None:
        teacher_keys = list(self.module.state_dict())
        student_keys = list(model.state_dict())
        if teacher_keys == student_keys:
            return

        teacher_key_set = set(teacher_keys)
        student_key_set = set(student_keys)
        missing = [key for key in student_keys if key not in teacher_key_set]
        extra = [key for key in teacher_keys if key not in student_key_set]
        raise ValueError(
            "EMA teacher and student have different tensors "
            f"(in the student only: {missing[:5]}{' ...' if len(missing) > 5 else ''}; "
            f"in the teacher only: {extra[:5]}{' ...' if len(extra) > 5 else ''}"
            f"{'; same names in another order' if not missing and not extra else ''}). "
            "Call sync_structure(model) after add_increment, or build the teacher from this student."
        )


def _freeze(module: nn.Module) -> None:
    """Turn off gradients of ``module`` and keep it in eval mode, also when ``module.train()`` is called."""
    module.requires_grad_(False)
    module.eval()
    module.train = _stay_in_eval.__get__(module)


def _stay_in_eval(self: nn.Module, mode: bool = True) -> nn.Module:
    return nn.Module.train(self, False)
