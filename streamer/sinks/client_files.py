"""The browser client's files, served by the stream server at ``/``.

The client lives in the repository's top-level ``client/`` folder; a wheel carries it as
``streamer/_client`` (pyproject's force-include). Only plain files under that folder with a known
type are served: ``..``, encoded slashes, hidden files and symlinks that lead outside are 404.
"""

from __future__ import annotations

import importlib.resources
import urllib.parse
from pathlib import Path

from streamer.errors import UserError

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".ico": "image/x-icon",
}


def find_client_dir() -> Path:
    """The installed ``streamer/_client``, else the repository's ``client/`` beside the package."""
    installed = importlib.resources.files("streamer").joinpath("_client")
    if installed.is_dir():
        return Path(str(installed))
    repository = Path(__file__).resolve().parents[2] / "client"
    if repository.is_dir():
        return repository
    raise UserError(
        f"the browser client is missing (looked for {installed} and {repository}); "
        "reinstall streamer, or run it from a checkout of the repository"
    )


def resolve_client_file(client_dir: Path, request_path: str) -> Path | None:
    """The file a GET of ``request_path`` serves, or ``None`` for a 404."""
    try:
        path = urllib.parse.urlsplit(request_path).path
    except ValueError:
        return None
    if not path.startswith("/"):
        return None
    if path.endswith("/"):
        path += "index.html"
    try:
        segments = [urllib.parse.unquote(part, errors="strict") for part in path[1:].split("/")]
    except UnicodeDecodeError:
        return None
    for segment in segments:
        if (
            not segment
            or segment.startswith(".")
            or "/" in segment
            or "\\" in segment
            or "\x00" in segment
        ):
            return None
    if Path(segments[-1]).suffix.lower() not in CONTENT_TYPES:
        return None
    root = client_dir.resolve()
    try:
        candidate = root.joinpath(*segments).resolve()
        if candidate.is_relative_to(root) and candidate.is_file():
            return candidate
    except OSError:  # a name too long for the file system, say
        pass
    return None


def content_type(path: Path) -> str:
    return CONTENT_TYPES[path.suffix.lower()]
