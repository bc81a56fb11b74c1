"""Training strategies: what an increment starts from, what it trains on and what anchors it.

Every strategy uses the same data, doublet sampler, backbone, heads, InfoNCE loss, evaluation and
metrics. A strategy only switches parts of the training loop on or off:

- ``mclfir``: continual training with an EMA teacher. The student starts from the parent
  increment, trains the new attributes, and is pulled towards the EMA teacher's backbone features
  and earlier heads' embeddings. The teacher is updated after every optimizer step.
- ``finetune``: the same sequential multi-head training with no teacher and no EMA.
- ``lwf``: Learning without Forgetting (Li and Hoiem, 2016). The teacher is a frozen copy of the
  parent increment's student; only the earlier heads' embeddings are distilled.
- ``joint``: the static reference. Each increment starts from the initial model and trains every
  attribute seen so far, with the same epochs and pairs per attribute as the other strategies.
"""

from dataclasses import dataclass

# Sources of the distillation teacher.
TEACHER_EMA = "ema"
TEACHER_PARENT = "parent"


@dataclass(frozen=True)
class Strategy:
    """Switches of the training loop that make up one strategy."""

    name: str
    # Keep an EMA of the student, update it after every step and save it in the checkpoint.
    keeps_ema: bool
    # Distillation teacher from the second increment on: TEACHER_EMA, TEACHER_PARENT or None.
    teacher: str | None
    # Distil the teacher's backbone feature map into the student's.
    distill_features: bool
    # Distil the teacher's earlier heads' embeddings into the student's.
    distill_heads: bool
    # Start each increment from the initial model and train every attribute seen so far.
    from_scratch: bool


STRATEGIES: dict[str, Strategy] = {
    "mclfir": Strategy("mclfir", keeps_ema=True, teacher=TEACHER_EMA, distill_features=True, distill_heads=True, from_scratch=False),
    "finetune": Strategy("finetune", keeps_ema=False, teacher=None, distill_features=False, distill_heads=False, from_scratch=False),
    "lwf": Strategy("lwf", keeps_ema=False, teacher=TEACHER_PARENT, distill_features=False, distill_heads=True, from_scratch=False),
    "joint": Strategy("joint", keeps_ema=False, teacher=None, distill_features=False, distill_heads=False, from_scratch=True),
}
DEFAULT_STRATEGY = "mclfir"


def get_strategy(name: str) -> Strategy:
    """Return the strategy called ``name``; raise ValueError listing the known names otherwise."""
    try:
        return STRATEGIES[name]
    except KeyError:
        raise ValueError(f"Unknown training strategy {name!r} (train.strategy); use one of {', '.join(STRATEGIES)}.") from None
