"""Import of a local dataset copy into the project."""

from pathlib import Path

import pytest

from mclfir.cli import main
from mclfir.data.importer import DatasetImportError, import_dataset


def _make_dataset(root: Path) -> None:
    (root / "images").mkdir(parents=True)
    (root / "styles.csv").write_text("id,gender\n1,Men\n")
    (root / "images" / "1.jpg").write_bytes(b"not decoded here")


def test_import_copies_every_file(tmp_path):
    source = tmp_path / "source"
    _make_dataset(source)

    out = import_dataset("fashion-products", tmp_path / "raw", root=source)

    assert (out / "styles.csv").read_text() == "id,gender\n1,Men\n"
    assert (out / "images" / "1.jpg").read_bytes() == b"not decoded here"


def test_import_replaces_stale_copy(tmp_path):
    source = tmp_path / "source"
    _make_dataset(source)
    out = tmp_path / "raw"
    (out / "images").mkdir(parents=True)
    (out / "images" / "stale.jpg").write_bytes(b"old")

    import_dataset("fashion-products", out, root=source)

    assert not (out / "images" / "stale.jpg").exists()


def test_import_rejects_wrong_layout(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    (source / "styles.csv").write_text("id\n")

    with pytest.raises(DatasetImportError, match="images not found"):
        import_dataset("fashion-products", tmp_path / "raw", root=source)

    assert not (tmp_path / "raw").exists()


def test_import_cli_uses_data_root_env(tmp_path, monkeypatch):
    source = tmp_path / "source"
    _make_dataset(source)
    monkeypatch.setenv("MCLFIR_DATA_ROOT", str(source))

    status = main(["data", "import", "--out", str(tmp_path / "raw")])

    assert status == 0
    assert (tmp_path / "raw" / "styles.csv").is_file()


def test_import_without_copy_for_licensed_source(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv("MCLFIR_DATA_ROOT", raising=False)

    status = main(["data", "import", "--source", "fashionai", "--out", str(tmp_path / "raw")])

    assert status == 1
    assert "No local copy of the fashionai dataset" in caplog.text
