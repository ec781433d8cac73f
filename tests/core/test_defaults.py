"""The shared defaults: where the CLI and the notebooks look for a local archive."""
from balloondet.core.defaults import LOCAL_ARCHIVE_ENV


def test_the_app_layer_offers_the_shared_copy_beside_the_checkout(tmp_path, monkeypatch):
    """The CLI and the notebooks (not the library) look at ../shared/data/balloon_dataset.zip."""
    from balloondet.core.defaults import SHARED_ARCHIVE, app_local_archive

    checkout = tmp_path / "checkout"
    checkout.mkdir()
    monkeypatch.chdir(checkout)
    assert app_local_archive() is None
    (tmp_path / "shared" / "data").mkdir(parents=True)
    (tmp_path / "shared" / "data" / "balloon_dataset.zip").write_bytes(b"PK")
    assert app_local_archive() == SHARED_ARCHIVE
    monkeypatch.setenv(LOCAL_ARCHIVE_ENV, "/elsewhere/balloon_dataset.zip")
    assert app_local_archive() == "/elsewhere/balloon_dataset.zip"
