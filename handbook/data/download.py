"""Fetch the Amazon 2014 5-core files of one category: resumable, verified, written atomically.

    python -m handbook.data.download Beauty [--dest DIR] [--base-url URL]

downloads ``reviews_<Category>_5.json.gz`` and ``meta_<Category>.json.gz`` from the file
server that the McAuley lab's Amazon 2014 page links, into the folder that
``load_dataset("amazon2014:<Category>")`` reads (``<data_root>/amazon2014/<Category>``).
Each file is first written to ``<name>.part``; an interrupted download resumes from there
with an HTTP Range request (or starts over when the server ignores Range). The ``.part`` is
renamed to its final name only once its size matches the server's Content-Length and the
whole gzip stream decompresses with a valid checksum, so a final file is never half-written.
Only the standard library is used.
"""

from __future__ import annotations

import argparse
import difflib
import gzip
import http.client
import os
import re
import sys
import urllib.error
import urllib.request
import zlib
from pathlib import Path

from handbook.data.datasets import amazon2014_folder

BASE_URL = "https://snap.stanford.edu/data/amazon/productGraph/categoryFiles/"
# The 24 categories that have a 5-core review file in the 2014 release.
CATEGORIES = (
    "Amazon_Instant_Video",
    "Apps_for_Android",
    "Automotive",
    "Baby",
    "Beauty",
    "Books",
    "CDs_and_Vinyl",
    "Cell_Phones_and_Accessories",
    "Clothing_Shoes_and_Jewelry",
    "Digital_Music",
    "Electronics",
    "Grocery_and_Gourmet_Food",
    "Health_and_Personal_Care",
    "Home_and_Kitchen",
    "Kindle_Store",
    "Movies_and_TV",
    "Musical_Instruments",
    "Office_Products",
    "Patio_Lawn_and_Garden",
    "Pet_Supplies",
    "Sports_and_Outdoors",
    "Tools_and_Home_Improvement",
    "Toys_and_Games",
    "Video_Games",
)
CHUNK = 1 << 20  # bytes read and written at a time
USER_AGENT = "handbook-download (python urllib)"


class DownloadError(RuntimeError):
    """A file could not be fetched or failed verification; the message says what to do."""


def check_category(category: str) -> str:
    """Return `category` if it is a 2014 5-core category, else raise ValueError listing them."""
    if category in CATEGORIES:
        return category
    close = difflib.get_close_matches(category, CATEGORIES, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(
        f"category {category!r} is not an Amazon 2014 5-core category{hint}; "
        f"use one of: {', '.join(CATEGORIES)}"
    )


def category_files(category: str) -> tuple[str, str]:
    """The review and meta file names of a category."""
    category = check_category(category)
    return f"reviews_{category}_5.json.gz", f"meta_{category}.json.gz"


def download_category(
    category: str,
    dest: str | os.PathLike | None = None,
    base_url: str = BASE_URL,
    data_root: str | os.PathLike | None = None,
    timeout: float = 60.0,
    quiet: bool = False,
) -> Path:
    """Download a category's two files into `dest` (default: the loader's folder); return it."""
    names = category_files(category)
    folder = Path(dest).expanduser() if dest else amazon2014_folder(category, data_root)
    base = base_url if base_url.endswith("/") else base_url + "/"
    for name in names:
        target = folder / name
        if target.is_file():  # only verified files ever get their final name
            _say(quiet, f"{target}: already there, kept")
            continue
        try:
            download_file(base + name, target, timeout=timeout, quiet=quiet)
        except DownloadError as err:
            raise DownloadError(f"{err}\n{_by_hand(base, names, folder)}") from err
    return folder


def download_file(url: str, target: Path, timeout: float = 60.0, quiet: bool = False) -> Path:
    """Fetch `url` into `target` via `target`.part, resuming it; verify, then rename."""
    part = target.with_name(target.name + ".part")
    offset = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:  # the .part is already whole, or longer than the file
            total = _total_from_content_range(err.headers.get("Content-Range"))
            err.close()
            if total != offset:
                part.unlink()
                return download_file(url, target, timeout, quiet)
            return _finish(part, target, total, url)
        raise DownloadError(
            f"{url}: the server answered {err.code} {err.reason}; check the category name "
            "and --base-url"
        ) from err
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise DownloadError(f"could not reach {url} to fetch {target.name} ({reason})") from err

    with response:
        length = response.headers.get("Content-Length")
        if response.status == 206:
            total = _total_from_content_range(response.headers.get("Content-Range"))
            start = _start_from_content_range(response.headers.get("Content-Range"))
            if start != offset:  # not the bytes that follow the .part: fetch the whole file
                response.close()
                part.unlink()
                return download_file(url, target, timeout, quiet)
            mode = "ab"
        else:  # 200: the server ignored Range (or none was sent), so start over
            total = int(length) if length is not None else None
            offset, mode = 0, "wb"
        _say(quiet, f"{target.name}: {_resume_note(offset, total)}from {url}")
        done = offset
        # Created only now: an empty folder left by a failed try would hide the loader's hint.
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(part, mode) as handle:
                while chunk := response.read(CHUNK):
                    handle.write(chunk)
                    done += len(chunk)
                    _progress(quiet, target.name, done, total)
                handle.flush()
                os.fsync(handle.fileno())  # on disk before the rename makes them final
        except (OSError, http.client.HTTPException) as err:  # a dropped connection, a timeout
            raise _interrupted(url, part, done, total, err) from err
    return _finish(part, target, total, url)


def _finish(part: Path, target: Path, total: int | None, url: str) -> Path:
    """Check the .part's size and gzip stream, then give it its final name in one rename."""
    size = part.stat().st_size
    if total is not None and size < total:  # the connection closed early: http.client says nothing
        raise _interrupted(url, part, size, total, "the connection closed early")
    if total is not None and size > total:
        part.unlink()  # more bytes than the file has cannot be resumed: start clean next time
        raise DownloadError(
            f"{url}: {target.name} has {size} bytes, the server says {total}; "
            "the partial file was deleted, run again"
        )
    if target.name.endswith(".gz"):
        try:
            with gzip.open(part, "rb") as stream:
                while stream.read(CHUNK):
                    pass
        except (OSError, EOFError, zlib.error) as err:
            part.unlink()
            raise DownloadError(
                f"{url}: {target.name} is not a valid gzip file ({err}); the download was "
                "deleted, run again (if it fails again, the server's copy may be damaged)"
            ) from err
    os.replace(part, target)  # atomic: the final name appears whole or not at all
    return target


def _interrupted(
    url: str, part: Path, done: int, total: int | None, why: Exception | str
) -> DownloadError:
    of = f" of {total}" if total is not None else ""
    return DownloadError(
        f"{url}: the download stopped after {done}{of} bytes ({why}); {part} is kept, "
        "run the same command again to resume"
    )


def _total_from_content_range(header: str | None) -> int | None:
    """The total size from "bytes 0-99/1234" or "bytes */1234"; None when unknown."""
    match = re.search(r"/(\d+)\s*$", header or "")
    return int(match.group(1)) if match else None


def _start_from_content_range(header: str | None) -> int | None:
    match = re.match(r"\s*bytes\s+(\d+)-", header or "")
    return int(match.group(1)) if match else None


def _resume_note(offset: int, total: int | None) -> str:
    size = f"{total / 1e6:.1f} MB " if total is not None else ""
    return f"resuming at {offset / 1e6:.1f} MB of {size}" if offset else size


def _by_hand(base: str, names: tuple[str, str], folder: Path) -> str:
    urls = "\n".join(f"  {base}{name}" for name in names)
    return (
        f"Without internet here, or to fetch them by hand from any machine:\n{urls}\n"
        f"and put them in {folder}/ (keep their names); load_dataset reads them from there."
    )


def _progress(quiet: bool, name: str, done: int, total: int | None) -> None:
    """Overwrite one status line on a terminal; log files get only the start and end lines."""
    if quiet or not sys.stderr.isatty():
        return
    of = f" of {total / 1e6:.1f}" if total else ""
    end = "\n" if total is not None and done >= total else ""
    print(f"\r  {name}: {done / 1e6:.1f}{of} MB", end=end, file=sys.stderr, flush=True)


def _say(quiet: bool, message: str) -> None:
    if not quiet:
        print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Command line: download one category; exit 1 with the message on failure."""
    parser = argparse.ArgumentParser(
        prog="python -m handbook.data.download", description=__doc__.split("\n")[0]
    )
    parser.add_argument("category", help="an Amazon 2014 category, e.g. Beauty, Toys_and_Games")
    parser.add_argument(
        "--dest", help="folder for the files (default: <data_root>/amazon2014/<Category>)"
    )
    parser.add_argument("--base-url", default=BASE_URL, help=f"file server (default: {BASE_URL})")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per network wait")
    args = parser.parse_args(argv)
    try:
        check_category(args.category)
    except ValueError as err:
        parser.error(str(err))
    try:
        folder = download_category(args.category, args.dest, args.base_url, timeout=args.timeout)
    except DownloadError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    name = f"amazon2014:{args.category}" if args.dest is None else str(folder)
    print(f"Amazon 2014 {args.category} is in {folder}: load_dataset({name!r}) reads it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
