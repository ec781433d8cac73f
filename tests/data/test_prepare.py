"""The `data` step: download, safe extraction, layout checks, conversion, synthetic data."""
import http.server
import json
import zipfile

import pytest
from conftest import REAL_ARCHIVE, check_coco

from balloondet.cli import main
from balloondet.core.defaults import LOCAL_ARCHIVE_ENV
from balloondet.core.errors import DataError
from balloondet.data.prepare import download, prepare_data, safe_extract


@pytest.mark.realdata
def test_real_archive_download_extract_convert(tmp_path, http_server):
    base = http_server(REAL_ARCHIVE.parent)
    root = prepare_data(source=f"{base}/{REAL_ARCHIVE.name}", root=tmp_path / "balloon")
    check_coco(root, "train", 61, 255)
    check_coco(root, "val", 13, 50)
    assert (root / "train" / "via_region_data.json").is_file()
    assert (tmp_path / "balloon_dataset.zip").stat().st_size == REAL_ARCHIVE.stat().st_size
    assert not list(tmp_path.glob(".*"))  # no temporary leftovers


def test_synthetic_archive_from_loopback_url(tmp_path, http_server, synthetic_zip):
    base = http_server(synthetic_zip.parent)
    root = prepare_data(source=f"{base}/{synthetic_zip.name}", root=tmp_path / "balloon")
    n_boxes = len(json.loads((root / "train.json").read_text())["annotations"])
    assert n_boxes > 0
    check_coco(root, "train", 6, n_boxes)
    assert not list(tmp_path.glob(".*"))


def test_official_urls_fall_back_to_mirror(tmp_path, http_server, synthetic_zip):
    base = http_server(synthetic_zip.parent)
    urls = [f"{base}/missing.zip", f"{base}/{synthetic_zip.name}"]  # the first one 404s
    root = prepare_data(root=tmp_path / "balloon", urls=urls)  # no local copy: conftest clears the env var
    assert (tmp_path / "balloon_dataset.zip").read_bytes() == synthetic_zip.read_bytes()
    assert (root / "val.json").is_file()


def test_unreachable_urls_explain_offline_options(tmp_path):
    with pytest.raises(DataError, match=r"(?s)127\.0\.0\.1:9/x\.zip.*--source.*--synthetic"):
        prepare_data(root=tmp_path / "balloon", urls=["http://127.0.0.1:9/x.zip"])
    assert not list(tmp_path.iterdir())


def test_local_archive_from_argument_or_environment(tmp_path, synthetic_zip, monkeypatch, capsys):
    """The library looks only where it is told: the argument, else $BALLOONDET_LOCAL_ARCHIVE."""
    offline = ["http://127.0.0.1:9/x.zip"]  # any download attempt fails
    prepare_data(root=tmp_path / "a" / "balloon", urls=offline, local_archive=synthetic_zip)
    assert f"using the local copy {synthetic_zip}" in capsys.readouterr().out
    monkeypatch.setenv(LOCAL_ARCHIVE_ENV, str(synthetic_zip))
    root = prepare_data(root=tmp_path / "b" / "balloon", urls=offline)
    assert (root / "train.json").read_text() == (tmp_path / "a" / "balloon" / "train.json").read_text()
    monkeypatch.setenv(LOCAL_ARCHIVE_ENV, str(tmp_path / "missing.zip"))
    with pytest.raises(DataError, match="could not download"):
        prepare_data(root=tmp_path / "c" / "balloon", urls=offline)
    assert "no local copy of the archive at" in capsys.readouterr().out


def test_cli_data_takes_the_local_archive(tmp_path, synthetic_zip, capsys):
    root = tmp_path / "balloon"
    assert main(["data", "--data-root", str(root), "--local-archive", str(synthetic_zip)]) == 0
    assert f"using the local copy {synthetic_zip}" in capsys.readouterr().out
    assert (root / "val.json").is_file()


def test_interrupted_download_leaves_no_file(tmp_path, http_server):
    class Truncating(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "1000000")
            self.end_headers()
            self.wfile.write(b"x" * 1000)  # then hang up

        def log_message(self, *args):
            pass

    base = http_server(tmp_path, handler=Truncating)
    with pytest.raises(DataError, match=r"balloon_dataset\.zip: download incomplete \(1000 of 1000000 bytes\)"):
        download(f"{base}/balloon_dataset.zip", tmp_path / "dl" / "balloon_dataset.zip", progress=False)
    assert not list((tmp_path / "dl").iterdir())


def test_local_zip_and_folder_sources(tmp_path, synthetic_zip):
    root = prepare_data(source=synthetic_zip, root=tmp_path / "from_zip")
    safe_extract(synthetic_zip, tmp_path / "extracted")
    root2 = prepare_data(source=tmp_path / "extracted", root=tmp_path / "from_dir")
    assert (root / "train.json").read_text() == (root2 / "train.json").read_text()


def test_existing_root_is_reused(tmp_path, synthetic_zip, capsys):
    root = prepare_data(source=synthetic_zip, root=tmp_path / "b")
    stamp = (root / "train.json").stat().st_mtime_ns
    prepare_data(root=root)
    assert "already holds" in capsys.readouterr().out
    assert (root / "train.json").stat().st_mtime_ns == stamp


def _zip_with(path, entries):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries:
            zf.writestr(name, data)
    return path


def test_truncated_zip_is_refused_and_root_untouched(tmp_path, synthetic_zip):
    bad = tmp_path / "truncated.zip"
    bad.write_bytes(synthetic_zip.read_bytes()[: synthetic_zip.stat().st_size // 2])
    root = prepare_data(source=synthetic_zip, root=tmp_path / "balloon")
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    with pytest.raises(DataError, match=r"truncated\.zip"):
        prepare_data(source=bad, root=root)
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before  # still the good dataset
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("name", ["../evil.txt", "balloon/../../evil.txt", "/abs/evil.txt"])
def test_path_traversal_is_refused(tmp_path, name):
    bad = _zip_with(tmp_path / "evil.zip", [("balloon/train/via_region_data.json", "{}"), (name, "x")])
    with pytest.raises(DataError, match="outside the archive folder"):
        prepare_data(source=bad, root=tmp_path / "out" / "balloon")
    assert not (tmp_path / "evil.txt").exists()
    assert not (tmp_path / "out" / "balloon").exists()


def test_symlink_entry_is_refused(tmp_path):
    path = tmp_path / "link.zip"
    with zipfile.ZipFile(path, "w") as zf:
        info = zipfile.ZipInfo("balloon/train/link")
        info.external_attr = (0o120777 << 16)
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(DataError, match="symbolic link"):
        safe_extract(path, tmp_path / "x")


def test_wrong_layout_is_refused(tmp_path):
    bad = _zip_with(tmp_path / "other.zip", [("photos/a.jpg", "x")])
    with pytest.raises(DataError, match=r"other\.zip: no data set found"):
        prepare_data(source=bad, root=tmp_path / "balloon")
    assert not (tmp_path / "balloon").exists()


