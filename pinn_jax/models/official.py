"""The authors' released cart-pole weights: where they come from, a verified download, and where to find them.

``python -m pinn_jax pretrained fetch-official`` downloads ``model.npz`` from a pinned commit of
``google/brain-tokyo-workshop`` into the user cache and checks its SHA256 before anything is saved.
:func:`weights_path` then finds it (or a copy the user points to) for
:func:`pinn_jax.policies.load_official`.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator, Sequence

from pinn_jax import artifacts
from pinn_jax.errors import ArgumentParser, ModelError, cli

__all__ = ["REPO", "COMMIT", "REPO_PATH", "URL", "SHA256", "LICENSE", "ATTRIBUTION", "FETCH_COMMAND",
           "WEIGHTS_ENV", "REFERENCE_DIR_ENV", "CACHE_DIR_ENV", "cache_dir", "cached_path", "sha256_of",
           "fetch", "weights_path", "main"]

REPO = "google/brain-tokyo-workshop"
COMMIT = "67c73645121d599f855714788db8a5c44e329c29"
REPO_PATH = "AttentionNeuron/pretrained/cartpole_pi/model.npz"
URL = f"https://raw.githubusercontent.com/{REPO}/{COMMIT}/{REPO_PATH}"
SHA256 = "300bf392e3a4e5f4524fb5828ad991653da3aaa6f6bc4150f2d99e672e13b3f8"
LICENSE = "Apache-2.0"
ATTRIBUTION = (
    "AttentionNeuron CartPoleSwingUpHarder weights (cartpole_pi), released by the authors of\n"
    '"The Sensory Neuron as a Transformer: Permutation-Invariant Neural Networks for Reinforcement Learning"\n'
    "(Yujin Tang and David Ha, NeurIPS 2021, arXiv:2109.02869).\n"
    f"Source: https://github.com/{REPO}, commit {COMMIT}, file {REPO_PATH}\n"
    f"Licence: {LICENSE} (Copyright Google; not an official Google product)."
)
FETCH_COMMAND = "python -m pinn_jax pretrained fetch-official"

WEIGHTS_ENV = "PINN_JAX_OFFICIAL_WEIGHTS"  # a path to model.npz
REFERENCE_DIR_ENV = "PINN_JAX_REFERENCE_DIR"  # legacy: a directory holding attentionneuron_cartpole/model.npz
CACHE_DIR_ENV = "PINN_JAX_CACHE_DIR"
_REFERENCE_SUBPATH = Path("attentionneuron_cartpole", "model.npz")
_CACHE_SUBPATH = Path("official", "cartpole_pi", "model.npz")


def cache_dir() -> Path:
    """``$PINN_JAX_CACHE_DIR``, else ``$XDG_CACHE_HOME/pinn_jax``, else ``~/.cache/pinn_jax``."""
    if env := os.environ.get(CACHE_DIR_ENV):
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "pinn_jax"


def cached_path() -> Path:
    """Where :func:`fetch` saves the weights by default: ``cache_dir()/official/cartpole_pi/model.npz``."""
    return cache_dir() / _CACHE_SUBPATH


def sha256_of(path: str | os.PathLike) -> str:
    """The hex SHA256 digest of a file."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _reason(e: BaseException) -> str:
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}"
    reason = e.reason if isinstance(e, urllib.error.URLError) else e
    return " ".join(str(reason).split()) or type(reason).__name__


def fetch(url: str = URL, dest: str | os.PathLike | None = None, sha256: str = SHA256,
          timeout: float = 60) -> Path:
    """Download ``url`` to ``dest`` (default :func:`cached_path`) and return ``dest``.

    Prints :data:`ATTRIBUTION` to stdout first. The download goes to a temporary file next to ``dest`` and
    replaces ``dest`` only once its SHA256 equals ``sha256``; a ``dest`` that already verifies is
    returned without downloading. Raises :class:`ModelError` (one line) when the download fails or
    the digest does not match, a :class:`~pinn_jax.errors.WriteError` when the file cannot be written (a full
    disk); nothing is saved then.
    """
    dest = Path(dest) if dest is not None else cached_path()
    print(ATTRIBUTION, flush=True)
    if dest.is_file() and sha256_of(dest) == sha256:
        return dest
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ModelError(f"cannot write to {dest.parent}: {_reason(e)}") from e
    with artifacts.atomic(dest) as tmp, tmp.open("wb") as f:  # dest is replaced once the digest is right
        digest = hashlib.sha256()
        for chunk in _download(url, timeout):
            f.write(chunk)  # a failed write is the disk's (atomic: WriteError), not the download's
            digest.update(chunk)
        if digest.hexdigest() != sha256:
            raise ModelError(f"checksum mismatch for {url}: expected sha256 {sha256}, got {digest.hexdigest()}; "
                             f"nothing saved")
    return dest


def _download(url: str, timeout: float) -> Iterator[bytes]:
    """The body of ``url`` in chunks; a one-line :class:`ModelError` naming it when it cannot be read."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            while chunk := response.read(1 << 16):
                yield chunk
    except (OSError, ValueError, http.client.HTTPException) as e:
        raise ModelError(f"cannot download {url}: {_reason(e)}") from e


def _existing(path: Path, source: str) -> Path:
    if not path.is_file():
        raise ModelError(f"official weights not found: {path} (from {source})")
    return path


def weights_path(explicit: str | os.PathLike | None = None) -> Path:
    """The authors' ``model.npz``: ``explicit``, else ``$PINN_JAX_OFFICIAL_WEIGHTS``, else
    ``$PINN_JAX_REFERENCE_DIR/attentionneuron_cartpole/model.npz``, else the verified cached copy.

    Raises :class:`ModelError` (one line) when the chosen path does not exist, or when nothing is
    set and the cache is empty (the message names :data:`FETCH_COMMAND`).
    """
    if explicit is not None:
        return _existing(Path(explicit), "the given path")
    if env := os.environ.get(WEIGHTS_ENV):
        return _existing(Path(env), f"${WEIGHTS_ENV}")
    if env := os.environ.get(REFERENCE_DIR_ENV):
        return _existing(Path(env) / _REFERENCE_SUBPATH, f"${REFERENCE_DIR_ENV}")
    cached = cached_path()
    if not cached.is_file():
        raise ModelError(f"official cart-pole weights not found (no {cached}); download them with "
                         f"`{FETCH_COMMAND}` or set ${WEIGHTS_ENV} to a model.npz")
    if sha256_of(cached) != SHA256:
        raise ModelError(f"cached official weights {cached} fail their sha256 check; "
                         f"download them again with `{FETCH_COMMAND}`")
    return cached


@cli
def main(argv: Sequence[str] | None = None) -> int:
    """``fetch-official``: download and verify the authors' weights, then print where they are."""
    p = ArgumentParser(prog="python -m pinn_jax pretrained fetch-official",
                       description="Download the authors' AttentionNeuron cart-pole weights and verify their SHA256.")
    p.add_argument("--url", default=URL, help="where to download model.npz from")
    p.add_argument("--out", "--dest", dest="dest", default=None, metavar="FILE",
                   help=f"where to save model.npz (default: the user cache, where the official model is looked up: "
                        f"{cached_path()})")
    p.add_argument("--force", action="store_true", help="replace --out when it exists and is not these weights "
                   "(else it is refused before the download)")
    args = p.parse_args(argv)
    dest = cached_path() if args.dest is None else args.dest
    ours = args.dest is None or (Path(dest).is_file() and sha256_of(dest) == SHA256)  # the cache, or kept as is
    print(fetch(args.url, artifacts.output_file(dest, "--out", args.force or ours)))
    return 0
