"""Files: printed paths, atomic writes, JSON."""
from balloondet.core.files import display_path


def test_printed_paths_are_relative(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert display_path(tmp_path / "work_dirs" / "x") == "work_dirs/x"
    assert display_path("work_dirs/x") == "work_dirs/x"
