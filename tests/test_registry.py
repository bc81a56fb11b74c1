"""Tests of the model registry: registration, duplicate checkpoints, the promotion gate, overrides and pyfunc serving.

They run real MLflow on a SQLite store in tmp_path with the tiny checkpoints of registry_store.
"""

import argparse
import io
import json

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient
from PIL import Image

from mclfir import registry
from mclfir.cli import main
from mclfir.model.checkpoint import load_model
from mclfir.registry_cli import promote as promote_cli
from mclfir.registry_cli import review as review_cli
from registry_store import PARAMS, empty_store, jpeg_bytes, project, write_checkpoint, write_report  # noqa: F401 (fixtures)


def alias_version(alias):
    """Return the version behind ``alias`` as a string (MLflow returns an int)."""
    return str(MlflowClient().get_model_version_by_alias("mclfir", alias).version)


def register_first(project):
    checkpoint = write_checkpoint(project / "inc0.pt", ["inc0"])
    report = write_report(project / "inc0.json", {"colour": 60.0, "shape": 50.0})
    return registry.register(checkpoint, report, PARAMS)


def test_register_first_version_is_champion(project):
    version = register_first(project)

    client = MlflowClient()
    champion = client.get_model_version_by_alias("mclfir", "champion")
    assert version == "1"
    assert str(champion.version) == "1"
    assert champion.tags["attributes"] == "colour,shape"
    assert champion.tags["increments"] == "inc0"
    assert float(champion.tags["map.colour"]) == 60.0
    assert float(champion.tags["map.shape"]) == 50.0
    assert float(champion.tags["forgetting"]) == 0.5
    assert champion.tags["data_hash"] == "unknown"
    assert champion.tags["gate.verdict"] == "passed"
    assert len(champion.tags["checkpoint_sha256"]) == 64
    with pytest.raises(mlflow.exceptions.MlflowException):
        client.get_model_version_by_alias("mclfir", "challenger")


def test_register_same_checkpoint_returns_same_version(project):
    first = register_first(project)
    again = registry.register(project / "inc0.pt", project / "inc0.json", PARAMS)

    assert again == first
    assert len(MlflowClient().search_model_versions("name = 'mclfir'")) == 1


def test_first_version_below_min_map_stays_challenger(project):
    checkpoint = write_checkpoint(project / "inc0.pt", ["inc0"])
    report = write_report(project / "inc0.json", {"colour": 60.0, "shape": 12.5})

    version = registry.register(checkpoint, report, PARAMS)

    client = MlflowClient()
    assert alias_version("challenger") == version
    with pytest.raises(mlflow.exceptions.MlflowException):
        client.get_model_version_by_alias("mclfir", "champion")
    reason = client.get_model_version("mclfir", version).tags["gate.reason"]
    assert "shape" in reason
    assert "12.50" in reason
    assert "colour" not in reason


def test_version_dropping_too_far_stays_challenger(project, capsys):
    register_first(project)
    checkpoint = write_checkpoint(project / "inc1.pt", ["inc0", "inc1"], seed=1)
    report = write_report(project / "inc1.json", {"colour": 59.0, "shape": 45.0, "size": 40.0})

    version = registry.register(checkpoint, report, PARAMS)

    client = MlflowClient()
    challenger = client.get_model_version("mclfir", version)
    assert version == "2"
    assert alias_version("champion") == "1"
    assert alias_version("challenger") == "2"
    assert challenger.tags["gate.verdict"] == "failed"
    assert "shape mAP 45.00% vs champion 50.00%: drop 5.00 points > gate.max_drop 3.00" in challenger.tags["gate.reason"]
    assert "colour" not in challenger.tags["gate.reason"]

    table = registry.review(params=PARAMS)
    assert "version 2" in table
    assert "champion: version 1" in table
    assert "-5.00" in table
    assert "FAIL (kept)" in table
    assert "pass (new)" in table
    assert "Verdict: fail" in table


def test_version_within_drop_becomes_champion(project):
    register_first(project)
    checkpoint = write_checkpoint(project / "inc1.pt", ["inc0", "inc1"], seed=1)
    report = write_report(project / "inc1.json", {"colour": 58.0, "shape": 49.0, "size": 40.0})

    version = registry.register(checkpoint, report, PARAMS)

    client = MlflowClient()
    assert alias_version("champion") == version
    assert client.get_model_version("mclfir", version).tags["gate.verdict"] == "passed"


def test_promote_overrides_gate(project, capsys):
    register_first(project)
    checkpoint = write_checkpoint(project / "inc1.pt", ["inc0", "inc1"], seed=1)
    report = write_report(project / "inc1.json", {"colour": 59.0, "shape": 45.0, "size": 40.0})
    registry.register(checkpoint, report, PARAMS)
    (project / "params.yaml").write_text(json.dumps(PARAMS))
    (project / "pyproject.toml").write_text("")

    parser = argparse.ArgumentParser()
    promote_cli.configure_parser(parser)
    status = promote_cli.run(parser.parse_args(["--version", "2", "--reason", "size is needed now"]))

    client = MlflowClient()
    promoted = client.get_model_version("mclfir", "2")
    assert status == 0
    assert alias_version("champion") == "2"
    assert promoted.tags["gate.override"] == "true"
    assert promoted.tags["gate.override_reason"] == "size is needed now"
    assert promoted.tags["gate.override_previous_champion"] == "1"
    assert promoted.tags["gate.override_by"]
    assert "previous champion: 1" in capsys.readouterr().out

    parser = argparse.ArgumentParser()
    review_cli.configure_parser(parser)
    assert review_cli.run(parser.parse_args(["--version", "2"])) == 0
    assert "Override: promoted by" in capsys.readouterr().out


def test_promote_requires_reason(project):
    with pytest.raises(ValueError, match="reason"):
        registry.promote("1", "  ", PARAMS)


def test_register_rejects_report_missing_attribute(project):
    checkpoint = write_checkpoint(project / "inc1.pt", ["inc0", "inc1"])
    report = write_report(project / "inc0.json", {"colour": 60.0, "shape": 50.0})

    with pytest.raises(ValueError, match="size"):
        registry.register(checkpoint, report, PARAMS)


def test_champion_pyfunc_matches_local_model(project):
    register_first(project)
    image_file = project / "red.jpg"
    image_file.write_bytes(jpeg_bytes((200, 30, 30)))
    request = pd.DataFrame(
        {
            "image": [str(image_file), jpeg_bytes((30, 30, 200)), str(image_file)],
            "attribute": ["colour", "shape", "shape"],
        }
    )

    served = mlflow.pyfunc.load_model("models:/mclfir@champion")
    embeddings = np.asarray(served.predict(request))

    local = load_model(project / "inc0.pt", which="student")
    red = torch.from_numpy(np.asarray(Image.open(image_file).convert("RGB"))).permute(2, 0, 1)[None]
    blue = torch.from_numpy(np.asarray(Image.open(io.BytesIO(jpeg_bytes((30, 30, 200)))).convert("RGB"))).permute(2, 0, 1)[None]
    with torch.inference_mode():
        expected = torch.cat([local(red, ["colour"]), local(blue, ["shape"]), local(red, ["shape"])]).numpy()
    assert embeddings.shape == (3, 16)
    np.testing.assert_allclose(embeddings, expected, atol=1e-5)
    assert not np.allclose(embeddings[0], embeddings[2])


def test_pyfunc_rejects_unknown_attribute(project):
    register_first(project)
    served = mlflow.pyfunc.load_model("models:/mclfir@champion")

    with pytest.raises(ValueError, match="colour, shape"):
        served.predict(pd.DataFrame({"image": [jpeg_bytes((0, 0, 0))], "attribute": ["season"]}))


def test_registry_config_rejects_unknown_key():
    with pytest.raises(ValueError, match="gate.min_mAP"):
        registry.RegistryConfig.from_params({"gate": {"min_mAP": 30}})


@pytest.mark.parametrize("command", [["registry", "review"], ["registry", "promote", "--version", "1", "--reason", "manual check"]])
def test_registry_commands_need_store(project, caplog, command):
    (project / "params.yaml").write_text(json.dumps(PARAMS))
    (project / "mlflow.db").unlink()

    assert main(command) == 1
    assert "No MLflow store at" in caplog.text
    assert not (project / "mlflow.db").exists()
