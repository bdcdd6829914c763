"""handbook.data.download against a local HTTP server that each test starts and stops."""

from __future__ import annotations

import gzip
import json
import random
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from handbook.data import load_dataset
from handbook.data.download import (
    CATEGORIES,
    DownloadError,
    category_files,
    check_category,
    download_category,
    main,
)

REVIEWS, META = category_files("Beauty")


class _Handler(BaseHTTPRequestHandler):
    """GET of server.files[name] with "Range: bytes=N-" support, and faults the test switches on."""

    server: _FileServer

    def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
        name = self.path.rsplit("/", 1)[-1]
        wanted = self.headers.get("Range")
        self.server.requests.append((name, wanted))
        if name not in self.server.files:
            self.send_error(404)
            return
        body = self.server.files[name]
        total = len(body)
        if wanted and not self.server.ignore_range:
            start = 0 if self.server.range_from_zero else int(wanted[6:].rstrip("-"))
            if start >= total:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{total}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            claimed = self.server.claim_total or total
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{total - 1}/{claimed}")
            body = body[start:]
        else:
            self.send_response(200)
        self.send_header("Content-Type", "application/x-gzip")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        cut = self.server.cut_after
        # HTTP/1.0: the connection closes after the response, so a cut body is a dropped transfer.
        self.wfile.write(body if cut is None else body[:cut])

    def log_message(self, *args) -> None:
        pass


class _FileServer(ThreadingHTTPServer):
    files: dict[str, bytes]
    requests: list[tuple[str, str | None]]
    ignore_range: bool = False
    cut_after: int | None = None  # send only this many body bytes, then close
    claim_total: int | None = None  # a wrong total in Content-Range
    range_from_zero: bool = False  # answer a Range request with a 206 of the whole file

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/categoryFiles/"


def _gz(lines: list[str]) -> bytes:
    return gzip.compress(("\n".join(lines) + "\n").encode(), mtime=0)


def _beauty_files() -> dict[str, bytes]:
    """Small files in the real formats: JSON review lines, Python-literal meta lines."""
    rng = random.Random(0)
    reviews, meta = [], []
    for item in range(6):
        asin = f"B00{item:07d}"
        record = {"asin": asin, "title": f"Lipstick no. {item}", "brand": "Acme"}
        record |= {"categories": [["Beauty", "Makeup", "Lips"]], "price": 4.5 + item}
        meta.append(repr(record))  # the meta file's lines are Python literals, not JSON
        for user in range(5):
            reviews.append(
                json.dumps(
                    {
                        "reviewerID": f"A{user:05d}",
                        "asin": asin,
                        "reviewerName": "R",
                        "helpful": [0, 0],
                        "overall": 5.0,
                        "summary": "ok",
                        "reviewText": "".join(rng.choices("abcdefgh ", k=80)),  # ~2 kB gzipped
                        "unixReviewTime": 1_300_000_000 + 86_400 * (item * 5 + user),
                        "reviewTime": "01 1, 2011",
                    }
                )
            )
    return {REVIEWS: _gz(reviews), META: _gz(meta)}


@pytest.fixture
def server() -> Iterator[_FileServer]:
    httpd = _FileServer(("127.0.0.1", 0), _Handler)
    httpd.files = _beauty_files()
    httpd.requests = []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def _download(server: _FileServer, folder: Path) -> Path:
    return download_category("Beauty", folder, base_url=server.url, timeout=10, quiet=True)


def _contents(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in folder.iterdir()}


def test_full_download_writes_both_files_and_no_part(server: _FileServer, tmp_path: Path) -> None:
    folder = _download(server, tmp_path / "Beauty")
    assert _contents(folder) == server.files
    assert server.requests == [(REVIEWS, None), (META, None)]


def test_resume_asks_for_the_rest_with_a_range_request(server: _FileServer, tmp_path: Path) -> None:
    body = server.files[REVIEWS]
    assert len(body) > 300
    (tmp_path / f"{REVIEWS}.part").write_bytes(body[:300])
    _download(server, tmp_path)
    assert (REVIEWS, "bytes=300-") in server.requests
    assert _contents(tmp_path) == server.files


def test_resume_starts_over_when_the_server_ignores_range(
    server: _FileServer, tmp_path: Path
) -> None:
    server.ignore_range = True
    (tmp_path / f"{REVIEWS}.part").write_bytes(b"stale bytes of another file")
    _download(server, tmp_path)
    assert (REVIEWS, "bytes=27-") in server.requests  # asked, got a 200 with the whole file
    assert _contents(tmp_path) == server.files


def test_partial_answer_from_the_wrong_byte_starts_over(
    server: _FileServer, tmp_path: Path
) -> None:
    server.range_from_zero = True
    (tmp_path / f"{REVIEWS}.part").write_bytes(server.files[REVIEWS][:300])
    _download(server, tmp_path)
    assert server.requests[:2] == [(REVIEWS, "bytes=300-"), (REVIEWS, None)]
    assert _contents(tmp_path) == server.files


def test_part_longer_than_the_file_is_discarded(server: _FileServer, tmp_path: Path) -> None:
    (tmp_path / f"{REVIEWS}.part").write_bytes(server.files[REVIEWS] + b"extra")
    _download(server, tmp_path)  # the server answers 416; the download starts again
    assert _contents(tmp_path) == server.files


def test_dropped_transfer_keeps_the_part_then_resumes(server: _FileServer, tmp_path: Path) -> None:
    server.cut_after = 100
    with pytest.raises(DownloadError, match="run the same command again to resume"):
        _download(server, tmp_path)
    assert not (tmp_path / REVIEWS).exists()
    assert (tmp_path / f"{REVIEWS}.part").read_bytes() == server.files[REVIEWS][:100]
    server.cut_after = None
    _download(server, tmp_path)
    assert (REVIEWS, "bytes=100-") in server.requests
    assert _contents(tmp_path) == server.files


def test_size_mismatch_is_rejected_and_no_file_left(server: _FileServer, tmp_path: Path) -> None:
    server.claim_total = len(server.files[REVIEWS]) - 7  # more bytes come than it announces
    (tmp_path / f"{REVIEWS}.part").write_bytes(server.files[REVIEWS][:50])
    with pytest.raises(DownloadError, match="the server says") as err:
        _download(server, tmp_path)
    assert REVIEWS in str(err.value) and "by hand" in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_corrupt_gzip_is_rejected_and_no_file_left(server: _FileServer, tmp_path: Path) -> None:
    body = bytearray(server.files[REVIEWS])
    body[-6] ^= 0xFF  # inside the CRC-32 trailer: the stream decompresses, the check fails
    server.files[REVIEWS] = bytes(body)
    with pytest.raises(DownloadError, match="not a valid gzip file"):
        _download(server, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_missing_file_on_the_server_names_the_status(server: _FileServer, tmp_path: Path) -> None:
    del server.files[META]
    with pytest.raises(DownloadError, match="404") as err:
        _download(server, tmp_path)
    assert f"{server.url}{META}" in str(err.value)
    assert (tmp_path / REVIEWS).read_bytes() == server.files[REVIEWS]  # the good file stays
    assert not (tmp_path / META).exists()


def test_existing_file_is_kept_without_asking_the_server(
    server: _FileServer, tmp_path: Path
) -> None:
    (tmp_path / REVIEWS).write_bytes(server.files[REVIEWS])
    _download(server, tmp_path)
    assert server.requests == [(META, None)]


def test_unknown_category_lists_the_known_ones(
    server: _FileServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert len(CATEGORIES) == 24 and check_category("Toys_and_Games") == "Toys_and_Games"
    with pytest.raises(ValueError, match="did you mean 'Beauty'") as err:
        download_category("beauty", tmp_path, base_url=server.url, quiet=True)
    assert "Sports_and_Outdoors" in str(err.value)
    assert server.requests == [] and list(tmp_path.iterdir()) == []
    with pytest.raises(SystemExit) as exit_:
        main(["Shoes", "--dest", str(tmp_path)])
    assert exit_.value.code == 2
    assert "'Shoes' is not an Amazon 2014 5-core category" in capsys.readouterr().err


def test_offline_message_names_url_file_and_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    base, folder = f"http://127.0.0.1:{port}/categoryFiles/", tmp_path / "Beauty"
    assert main(["Beauty", "--dest", str(folder), "--base-url", base, "--timeout", "5"]) == 1
    message = capsys.readouterr().err
    assert f"could not reach {base}{REVIEWS}" in message
    assert f"{base}{META}" in message and f"put them in {folder}/" in message
    assert not folder.exists()  # no empty folder for the loader to mistake for the data


def test_downloaded_folder_loads_as_amazon2014(server: _FileServer, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="python -m handbook.data.download Beauty"):
        load_dataset("amazon2014:Beauty", data_root=tmp_path)  # before: the hint names the tool
    folder = download_category(
        "Beauty", base_url=server.url, data_root=tmp_path, timeout=10, quiet=True
    )
    assert folder == tmp_path / "amazon2014" / "Beauty"
    ds = load_dataset("amazon2014:Beauty", data_root=tmp_path)
    assert len(ds.interactions) == 30 and ds.interactions["user"].nunique() == 5
    assert ds.items.loc["B000000002", "title"] == "Lipstick no. 2"
    assert ds.items.loc["B000000002", "categories"] == "Beauty, Makeup, Lips"
    assert ds.items.loc["B000000002", "price"] == "6.50"
