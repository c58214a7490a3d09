"""plugin_support.dry_run.RequestBodyFiles: each body to its own numbered file, none lost."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from plugin_support.dry_run import RequestBodyFiles
from plugin_support.retry import Counters


def test_bodies_go_to_numbered_files_beside_the_endpoint(tmp_path: Path) -> None:
    counters = Counters()
    files = RequestBodyFiles(tmp_path / "dry", "https://example.test/import", "batch-r1-",
                             counters)
    for body in (b"[1]", b"[2]"):
        files.write(body)
    folder = tmp_path / "dry"
    assert sorted(p.name for p in folder.iterdir()) == [
        "batch-r1-000001.json", "batch-r1-000002.json", "endpoint.txt"]
    assert (folder / "batch-r1-000002.json").read_bytes() == b"[2]"
    assert (folder / "endpoint.txt").read_text() == "https://example.test/import\n"
    assert counters.requests == 2


def test_writers_of_two_runs_into_one_folder_keep_every_body(tmp_path: Path) -> None:
    runs = [RequestBodyFiles(tmp_path, "https://example.test", f"request-{run}-", Counters())
            for run in ("a", "b")]
    bodies = [(run, f"{i}".encode()) for i in range(200) for run in runs]
    with ThreadPoolExecutor(8) as pool:  # the targets write from several sending threads
        list(pool.map(lambda item: item[0].write(item[1]), bodies))
    written = sorted(p.read_bytes() for p in tmp_path.glob("request-*.json"))
    assert written == sorted(body for _, body in bodies)
