"""Tests of the backbone, the attribute head and the multi-head model (tiny timm models)."""

import huggingface_hub
import pytest
import safetensors.torch
import timm
import torch

from mclfir.config import ModelConfig, load_model_config
from mclfir.model import AttributeHead, MultiHeadModel, build_backbone

TINY = dict(backbone="resnet10t", feature_index=3, image_size=[32, 32], embed_dim=16, attention_dim=8)


def tiny_config(**overrides) -> ModelConfig:
    return ModelConfig(**{**TINY, **overrides})


def tiny_model() -> MultiHeadModel:
    torch.manual_seed(0)
    model = MultiHeadModel(tiny_config())
    model.add_increment("inc0", ["category", "gender"])
    model.add_increment("inc1", ["colour"])
    return model


# Backbone


def test_backbone_tiny_shape():
    backbone, channels = build_backbone(tiny_config())
    features = backbone(torch.rand(2, 3, 32, 32))
    assert channels == 256
    assert features.shape == (2, 256, 2, 2)
    assert backbone.reduction == 16


def test_backbone_resnet50_stage3_224():
    backbone, channels = build_backbone(ModelConfig(backbone="resnet50", feature_index=3, image_size=[224, 224]))
    with torch.no_grad():
        features = backbone(torch.rand(1, 3, 224, 224))
    assert channels == 1024
    assert features.shape == (1, 1024, 14, 14)
    assert not hasattr(backbone.body, "layer4")


def test_backbone_image_size_from_timm():
    backbone, _ = build_backbone(tiny_config(image_size=None))
    expected = timm.data.resolve_model_data_config(timm.create_model("resnet10t"))["input_size"][1:]
    assert backbone.image_size == tuple(expected)
    assert backbone.image_size != (32, 32)


def test_backbone_invalid_feature_index():
    with pytest.raises(ValueError, match="feature_index 9"):
        build_backbone(tiny_config(feature_index=9))


def test_backbone_unknown_model():
    with pytest.raises(ValueError, match="no_such_net"):
        build_backbone(tiny_config(backbone="no_such_net"))


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_backbone_loads_weights_path(tmp_path, suffix):
    torch.manual_seed(123)
    source = timm.create_model("resnet10t")
    for module in source.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
    source_state = source.state_dict()
    weights_file = tmp_path / f"resnet10t{suffix}"
    if suffix == ".safetensors":
        safetensors.torch.save_file(source_state, str(weights_file))
    else:
        torch.save(source_state, weights_file)

    backbone, _ = build_backbone(tiny_config(weights_path=str(weights_file)))

    loaded = backbone.body.state_dict()
    assert loaded, "backbone has no tensors"
    for key, value in loaded.items():
        assert torch.equal(value, source_state[key]), key
    random_backbone, _ = build_backbone(tiny_config())
    assert not torch.equal(random_backbone.body.state_dict()["conv1.0.weight"], source_state["conv1.0.weight"])


def test_backbone_weights_of_other_model(tmp_path):
    weights_file = tmp_path / "other.pth"
    torch.save({"encoder.weight": torch.zeros(3, 3)}, weights_file)
    with pytest.raises(RuntimeError, match="Invalid backbone weights file"):
        build_backbone(tiny_config(weights_path=str(weights_file)))


def test_backbone_weights_path_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="model.weights_path"):
        build_backbone(tiny_config(weights_path=str(tmp_path / "absent.pth")))


def test_backbone_pretrained_offline_error(tmp_path, monkeypatch):
    if not huggingface_hub.constants.HF_HUB_OFFLINE:
        pytest.skip("HF_HUB_OFFLINE is not set, so this run may reach the hub")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))

    with pytest.raises(RuntimeError, match="model.weights_path") as error:
        build_backbone(tiny_config(pretrained=True))

    assert "HF_HUB_OFFLINE" in str(error.value)


# Config


def test_model_config_from_params():
    cfg = load_model_config({"model": {"backbone": "resnet50", "image_size": [224, 224], "pretrained": True}})
    assert cfg.backbone == "resnet50"
    assert cfg.image_size == [224, 224]
    assert cfg.pretrained is True
    assert cfg.embed_dim == 128


@pytest.mark.parametrize("image_size", [[224], [0, 10], [12.5, 10]])
def test_model_config_invalid_image_size(image_size):
    with pytest.raises(ValueError, match="model.image_size"):
        ModelConfig(image_size=image_size)


# Head


def test_head_shapes_and_norm():
    torch.manual_seed(0)
    head = AttributeHead(in_channels=12, attributes=["a", "b", "c"], embed_dim=5, attention_dim=4)
    features = torch.randn(6, 12, 3, 2)
    attribute_index = torch.tensor([0, 1, 2, 0, 1, 2])

    embeddings = head(features, attribute_index)

    assert embeddings.shape == (6, 5)
    assert torch.allclose(embeddings.norm(dim=1), torch.ones(6), atol=1e-5)


def test_head_attention_sums_to_one():
    torch.manual_seed(0)
    head = AttributeHead(in_channels=12, attributes=["a", "b"], embed_dim=5, attention_dim=4)
    features = torch.randn(3, 12, 3, 2)
    attribute_vectors = head.attribute_embedding(torch.tensor([0, 1, 0]))

    attention = head.spatial_attention(features, attribute_vectors)

    assert attention.shape == (3, 6)
    assert torch.allclose(attention.sum(dim=1), torch.ones(3), atol=1e-5)
    assert (attention >= 0).all()


def test_head_depends_on_attribute():
    torch.manual_seed(0)
    head = AttributeHead(in_channels=12, attributes=["a", "b"], embed_dim=5, attention_dim=4)
    features = torch.randn(1, 12, 3, 2).repeat(2, 1, 1, 1)

    embeddings = head(features, torch.tensor([0, 1]))

    assert not torch.allclose(embeddings[0], embeddings[1])


def test_head_gradients_reach_every_parameter():
    torch.manual_seed(0)
    head = AttributeHead(in_channels=12, attributes=["a", "b"], embed_dim=5, attention_dim=4)
    features = torch.randn(4, 12, 3, 2, requires_grad=True)

    embeddings = head(features, torch.tensor([0, 1, 1, 0]))
    (embeddings[:, 0].sum() + embeddings[:, 1].pow(2).sum()).backward()

    for name, parameter in head.named_parameters():
        assert parameter.grad is not None, name
        assert parameter.grad.abs().sum() > 0, name
    assert features.grad.abs().sum() > 0


def test_head_rejects_empty_attributes():
    with pytest.raises(ValueError, match="at least one attribute"):
        AttributeHead(in_channels=4, attributes=[], embed_dim=2)


# Multi-head model


def test_model_forward_shape_and_norm():
    model = tiny_model()
    embeddings = model(torch.rand(4, 3, 80, 60), ["category", "colour", "gender", "colour"])
    assert embeddings.shape == (4, 16)
    assert torch.allclose(embeddings.norm(dim=1), torch.ones(4), atol=1e-5)


def test_model_routes_rows_to_heads():
    model = tiny_model().eval()
    features = model.features(torch.rand(5, 3, 32, 32))
    attributes = ["colour", "category", "colour", "gender", "category"]

    with torch.no_grad():
        routed = model.embed(features, attributes)
        expected = torch.stack(
            [model.head_embed(features[row : row + 1], model.head_for(name), [name])[0] for row, name in enumerate(attributes)]
        )

    assert torch.allclose(routed, expected, atol=1e-6)
    assert not torch.allclose(routed[0], model.head_embed(features[:1], "inc0", ["category"])[0])


def test_model_routing_gradients_follow_rows():
    model = tiny_model()
    features = model.features(torch.rand(3, 3, 32, 32))
    embeddings = model.embed(features, ["category", "colour", "gender"])

    embeddings[1].sum().backward()

    assert model.heads["inc1"].embed_proj.weight.grad.abs().sum() > 0
    inc0_grad = model.heads["inc0"].embed_proj.weight.grad
    assert inc0_grad is None or not inc0_grad.any()


def test_model_head_for_and_properties():
    model = tiny_model()
    assert model.head_for("colour") == "inc1"
    assert model.head_for("gender") == "inc0"
    assert model.attributes == ["category", "gender", "colour"]
    assert model.increments == {"inc0": ["category", "gender"], "inc1": ["colour"]}
    with pytest.raises(KeyError, match="season"):
        model.head_for("season")


def test_add_increment_keeps_backbone_and_heads():
    model = tiny_model()
    backbone = model.backbone
    old_head = model.heads["inc0"]
    before = {name: (parameter, parameter.detach().clone()) for name, parameter in model.named_parameters()}

    model.add_increment("inc2", ["season", "usage"])

    assert model.backbone is backbone
    assert model.heads["inc0"] is old_head
    after = dict(model.named_parameters())
    for name, (parameter, value) in before.items():
        assert after[name] is parameter, name
        assert torch.equal(after[name], value), name
    assert any(name.startswith("heads.inc2.") for name in after)
    assert model.head_for("usage") == "inc2"


def test_add_increment_rejects_served_attribute():
    model = tiny_model()
    with pytest.raises(ValueError, match="colour"):
        model.add_increment("inc2", ["season", "colour"])
    assert "inc2" not in model.increments


def test_add_increment_rejects_duplicate_name():
    model = tiny_model()
    with pytest.raises(ValueError, match="inc1"):
        model.add_increment("inc1", ["season"])


def test_head_embed_rejects_foreign_attribute():
    model = tiny_model()
    features = model.features(torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError, match="colour"):
        model.head_embed(features, "inc0", ["colour"])


def test_embed_checks_batch_length():
    model = tiny_model()
    features = model.features(torch.rand(2, 3, 32, 32))
    with pytest.raises(ValueError, match="2 rows"):
        model.embed(features, ["colour"])


def test_preprocess_uint8_matches_float():
    model = tiny_model().eval()
    pixels = torch.randint(0, 256, (2, 3, 80, 60), dtype=torch.uint8)

    from_uint8 = model.preprocess(pixels)
    from_float = model.preprocess(pixels.float() / 255)

    assert from_uint8.shape == (2, 3, 32, 32)
    assert torch.allclose(from_uint8, from_float)


def test_structure_round_trip():
    model = tiny_model()
    structure = model.structure()

    rebuilt = MultiHeadModel.from_structure(tiny_config(), structure)

    assert rebuilt.increments == model.increments
    assert rebuilt.attributes == model.attributes
    assert list(rebuilt.state_dict()) == list(model.state_dict())


def test_from_structure_rejects_inconsistent_attributes():
    structure = {"increments": {"inc0": ["a"]}, "attributes": ["a", "b"]}
    with pytest.raises(ValueError, match="Invalid model structure"):
        MultiHeadModel.from_structure(tiny_config(), structure)


def test_model_bf16_autocast_step():
    model = tiny_model().to(memory_format=torch.channels_last)
    images = torch.rand(4, 3, 80, 60)

    with torch.autocast("cpu", dtype=torch.bfloat16):
        embeddings = model(images, ["category", "colour", "gender", "colour"])
    embeddings.sum().backward()

    assert embeddings.dtype == torch.float32
    assert torch.isfinite(model.heads["inc1"].embed_proj.weight.grad).all()
