"""Tests of the EMA teacher: averaging, freezing, key checks and taking over new heads."""

import copy
import io

import pytest
import torch

from mclfir.config import ModelConfig
from mclfir.model import EmaTeacher, MultiHeadModel

TINY = ModelConfig(backbone="resnet10t", feature_index=3, image_size=[32, 32], embed_dim=16, attention_dim=8)


def tiny_model() -> MultiHeadModel:
    torch.manual_seed(0)
    model = MultiHeadModel(TINY)
    model.add_increment("inc0", ["category", "gender"])
    return model


@torch.no_grad()
def perturb(model: torch.nn.Module, scale: float = 0.1) -> None:
    for parameter in model.parameters():
        parameter.add_(torch.randn_like(parameter) * scale)


def float_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {key: value for key, value in model.state_dict().items() if value.is_floating_point()}


def assert_states_equal(left: torch.nn.Module, right: torch.nn.Module) -> None:
    right_state = right.state_dict()
    for key, value in left.state_dict().items():
        assert torch.equal(value, right_state[key]), key


def test_decay_zero_copies_student():
    student = tiny_model()
    teacher = EmaTeacher(student, decay=0.0)
    perturb(student)

    teacher.update(student, step=10)

    assert_states_equal(teacher.module, student)


def test_decay_moves_teacher_partway():
    student = tiny_model()
    teacher = EmaTeacher(student, decay=0.9)
    frozen = copy.deepcopy(teacher.module)

    for step in range(10, 13):
        perturb(student)
        teacher.update(student, step=step)

    key = "heads.inc0.embed_proj.weight"
    teacher_value = teacher.module.state_dict()[key]
    assert not torch.allclose(teacher_value, frozen.state_dict()[key])
    assert not torch.allclose(teacher_value, student.state_dict()[key])
    assert teacher.step == 12


def test_decay_matches_formula():
    student = tiny_model()
    teacher = EmaTeacher(student, decay=0.9)
    before = {key: value.clone() for key, value in float_state(teacher.module).items()}
    perturb(student)

    teacher.update(student, step=5)

    after = float_state(teacher.module)
    for key, value in float_state(student).items():
        assert torch.allclose(after[key], 0.9 * before[key] + 0.1 * value, atol=1e-6), key


def test_update_counts_steps_without_step():
    student = tiny_model()
    teacher = EmaTeacher(student, decay=0.9)

    teacher.update(student)
    teacher.update(student)

    assert teacher.step == 2


def test_first_step_copies_student():
    student = tiny_model()
    teacher = EmaTeacher(student, decay=0.99)
    perturb(student)

    teacher.update(student, step=1)

    assert_states_equal(teacher.module, student)


def test_teacher_stays_in_eval():
    student = tiny_model()
    teacher = EmaTeacher(student, decay=0.9)

    student.train()
    teacher.train()
    teacher.module.train()

    assert student.training
    assert not teacher.training
    assert not any(module.training for module in teacher.module.modules())


def test_teacher_has_no_grads():
    student = tiny_model()
    teacher = EmaTeacher(student, decay=0.9)

    embeddings = teacher(torch.rand(2, 3, 32, 32), ["category", "gender"])

    assert not any(parameter.requires_grad for parameter in teacher.module.parameters())
    assert not embeddings.requires_grad
    assert all(parameter.requires_grad for parameter in student.parameters())


def test_update_rejects_other_structure():
    student = tiny_model()
    teacher = EmaTeacher(student, decay=0.9)
    student.add_increment("inc1", ["colour"])

    with pytest.raises(ValueError, match="sync_structure"):
        teacher.update(student, step=2)


def test_sync_structure_keeps_old_weights():
    student = tiny_model()
    teacher = EmaTeacher(student, decay=0.9)
    perturb(student)
    teacher.update(student, step=5)
    averaged = {key: value.clone() for key, value in teacher.module.state_dict().items()}

    student.add_increment("inc1", ["colour"])
    added = teacher.sync_structure(student)

    assert added == ["inc1"]
    assert teacher.module.increments == student.increments
    teacher_state = teacher.module.state_dict()
    for key, value in averaged.items():
        assert torch.equal(teacher_state[key], value), key
    assert_states_equal(teacher.module.heads["inc1"], student.heads["inc1"])
    assert teacher.module.heads["inc1"] is not student.heads["inc1"]
    assert not any(parameter.requires_grad for parameter in teacher.module.parameters())
    assert not teacher.module.heads["inc1"].training

    teacher.update(student, step=6)
    assert teacher.step == 6


def test_sync_structure_rejects_diverged_heads():
    student = tiny_model()
    teacher = EmaTeacher(student, decay=0.9)
    other = MultiHeadModel(TINY)
    other.add_increment("inc0", ["season"])

    with pytest.raises(ValueError, match="not the first heads"):
        teacher.sync_structure(other)


def test_state_dict_round_trip():
    student = tiny_model()
    teacher = EmaTeacher(student, decay=0.9)
    perturb(student)
    teacher.update(student, step=7)

    buffer = io.BytesIO()
    torch.save(teacher.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    restored = EmaTeacher(tiny_model(), decay=0.9)
    restored.load_state_dict(state)

    assert restored.step == 7
    assert state["decay"] == pytest.approx(0.9)
    assert_states_equal(restored.module, teacher.module)
    assert not any(parameter.requires_grad for parameter in restored.module.parameters())


def test_invalid_decay():
    with pytest.raises(ValueError, match="decay"):
        EmaTeacher(tiny_model(), decay=1.5)
