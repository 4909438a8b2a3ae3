"""pinn_jax.models.official: verified download of the authors' cart-pole weights, offline (local server, file://)."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import os
import shutil
import socket
import threading
from pathlib import Path

import pytest

from pinn_jax.errors import ModelError, UserError
from pinn_jax.models import official

REPO_ROOT = Path(__file__).resolve().parents[1]
REFERENCE_DIR = Path(os.environ.get("PINN_JAX_REFERENCE_DIR") or REPO_ROOT.parent / "shared" / "reference")
REFERENCE = REFERENCE_DIR / "attentionneuron_cartpole" / "model.npz"
REFERENCE_SHA256 = "300bf392e3a4e5f4524fb5828ad991653da3aaa6f6bc4150f2d99e672e13b3f8"  # from its README

needs_reference = pytest.mark.skipif(not REFERENCE.is_file(), reason=f"reference weights absent: {REFERENCE}")


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch, tmp_path):
    """No test reads the user's environment or writes to the real cache; localhost never goes via a proxy."""
    for var in (official.WEIGHTS_ENV, official.REFERENCE_DIR_ENV, "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv(official.CACHE_DIR_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@contextlib.contextmanager
def serve(directory: Path):
    """Serve ``directory`` on 127.0.0.1 (ephemeral port) from a thread; yields (base URL, request paths)."""
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            requests.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def files_under(path: Path) -> list[Path]:
    return [p for p in path.rglob("*") if p.is_file()] if path.exists() else []


@pytest.fixture
def tampered_dir(tmp_path) -> Path:
    """A directory serving a copy of the reference file with one byte changed."""
    d = tmp_path / "tampered"
    d.mkdir()
    data = bytearray(REFERENCE.read_bytes())
    data[-1] ^= 0xFF
    (d / "model.npz").write_bytes(bytes(data))
    return d


def test_constants():
    assert official.URL == ("https://raw.githubusercontent.com/google/brain-tokyo-workshop/"
                            "67c73645121d599f855714788db8a5c44e329c29/AttentionNeuron/pretrained/cartpole_pi/model.npz")
    assert official.SHA256 == REFERENCE_SHA256
    for part in (official.REPO, official.COMMIT, official.REPO_PATH, "Apache-2.0", "Tang", "Ha",
                 "The Sensory Neuron as a Transformer"):
        assert part in official.ATTRIBUTION
    assert "shared" not in Path(official.__file__).read_text()


def test_cache_dir(monkeypatch, tmp_path):
    assert official.cache_dir() == tmp_path / "cache"
    assert official.cached_path() == tmp_path / "cache" / "official" / "cartpole_pi" / "model.npz"
    monkeypatch.delenv(official.CACHE_DIR_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert official.cache_dir() == tmp_path / "xdg" / "pinn_jax"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert official.cache_dir() == tmp_path / "home" / ".cache" / "pinn_jax"


@needs_reference
def test_reference_matches_pinned_digest():
    assert hashlib.sha256(REFERENCE.read_bytes()).hexdigest() == REFERENCE_SHA256


# ---------------------------------------------------------------- (a) local HTTP server
@needs_reference
def test_fetch_http_caches_verified_copy_once(capsys):
    with serve(REFERENCE.parent) as (base, requests):
        path = official.fetch(f"{base}/model.npz")
        assert path == official.cached_path()
        assert path.read_bytes() == REFERENCE.read_bytes()
        assert official.sha256_of(path) == REFERENCE_SHA256
        assert requests == ["/model.npz"]
        assert files_under(official.cache_dir()) == [path]  # no temporary file left behind
        assert official.fetch(f"{base}/model.npz") == path
        assert requests == ["/model.npz"]  # the verified cache was used, the server not asked again
    assert official.ATTRIBUTION in capsys.readouterr().out


@needs_reference
def test_fetch_replaces_a_corrupt_cached_file():
    dest = official.cached_path()
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"not the weights")
    with serve(REFERENCE.parent) as (base, requests):
        assert official.fetch(f"{base}/model.npz") == dest
        assert len(requests) == 1
    assert dest.read_bytes() == REFERENCE.read_bytes()


# ---------------------------------------------------------------- (b) file://
@needs_reference
def test_fetch_file_url_to_explicit_dest(tmp_path):
    dest = tmp_path / "elsewhere" / "weights.npz"
    assert official.fetch(REFERENCE.resolve().as_uri(), dest=dest) == dest
    assert dest.read_bytes() == REFERENCE.read_bytes()
    assert files_under(official.cache_dir()) == []


# ---------------------------------------------------------------- (c) checksum mismatch
@needs_reference
def test_fetch_checksum_mismatch_saves_nothing(tampered_dir):
    bad = hashlib.sha256((tampered_dir / "model.npz").read_bytes()).hexdigest()
    with serve(tampered_dir) as (base, _):
        with pytest.raises(ModelError) as info:
            official.fetch(f"{base}/model.npz")
    msg = str(info.value)
    assert "\n" not in msg and REFERENCE_SHA256 in msg and bad in msg
    assert files_under(official.cache_dir()) == []


@needs_reference
def test_fetch_mismatch_keeps_existing_dest_untouched(tampered_dir, tmp_path):
    dest = tmp_path / "model.npz"
    dest.write_bytes(b"old")
    with pytest.raises(ModelError):
        official.fetch((tampered_dir / "model.npz").as_uri(), dest=dest)
    assert dest.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz", "tampered"]  # no temporary file


# ---------------------------------------------------------------- (d) download failures
def test_fetch_404_names_url(tmp_path):
    with serve(tmp_path) as (base, requests):
        url = f"{base}/missing/model.npz"
        with pytest.raises(ModelError) as info:
            official.fetch(url)
    msg = str(info.value)
    assert "\n" not in msg and url in msg and "404" in msg
    assert requests == ["/missing/model.npz"]
    assert files_under(official.cache_dir()) == []


def test_fetch_missing_file_url_and_refused_connection(tmp_path):
    url = (tmp_path / "nope.npz").as_uri()
    with pytest.raises(ModelError, match="nope.npz") as info:
        official.fetch(url)
    assert "\n" not in str(info.value) and url in str(info.value)
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/model.npz"
    with pytest.raises(ModelError) as info:
        official.fetch(url, timeout=5)
    assert "\n" not in str(info.value) and url in str(info.value)
    assert files_under(official.cache_dir()) == []


# ---------------------------------------------------------------- (e) weights_path
def test_weights_path_resolution_order(monkeypatch, tmp_path):
    explicit = tmp_path / "explicit.npz"
    from_env = tmp_path / "env.npz"
    ref_dir = tmp_path / "reference"
    legacy = ref_dir / "attentionneuron_cartpole" / "model.npz"
    cached = official.cached_path()
    for p in (explicit, from_env, legacy):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"x")
    monkeypatch.setattr(official, "SHA256", hashlib.sha256(b"x").hexdigest())
    monkeypatch.setenv(official.WEIGHTS_ENV, str(from_env))
    monkeypatch.setenv(official.REFERENCE_DIR_ENV, str(ref_dir))

    assert official.weights_path(explicit) == explicit
    assert official.weights_path(str(explicit)) == explicit
    assert official.weights_path() == from_env
    monkeypatch.delenv(official.WEIGHTS_ENV)
    assert official.weights_path() == legacy
    monkeypatch.delenv(official.REFERENCE_DIR_ENV)
    assert official.weights_path() == cached
    cached.unlink()
    with pytest.raises(ModelError) as info:
        official.weights_path()
    assert "\n" not in str(info.value) and "python -m pinn_jax pretrained fetch-official" in str(info.value)


def test_weights_path_missing_paths_name_them(monkeypatch, tmp_path):
    missing = tmp_path / "missing.npz"
    with pytest.raises(ModelError, match="missing.npz"):
        official.weights_path(missing)
    monkeypatch.setenv(official.WEIGHTS_ENV, str(missing))
    with pytest.raises(ModelError, match=f"missing.npz.*{official.WEIGHTS_ENV}"):
        official.weights_path()
    monkeypatch.delenv(official.WEIGHTS_ENV)
    monkeypatch.setenv(official.REFERENCE_DIR_ENV, str(tmp_path / "noref"))
    with pytest.raises(ModelError, match=f"noref.*{official.REFERENCE_DIR_ENV}") as info:
        official.weights_path()
    assert "\n" not in str(info.value) and isinstance(info.value, UserError)


@needs_reference
def test_weights_path_rejects_corrupt_cache_and_never_falls_back_to_shared():
    cached = official.cached_path()
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"corrupt")
    with pytest.raises(ModelError, match="fetch-official"):
        official.weights_path()
    shutil.copyfile(REFERENCE, cached)
    assert official.weights_path() == cached
    cached.unlink()
    with pytest.raises(ModelError, match="fetch-official"):  # ../shared exists, yet is never used
        official.weights_path()


# ---------------------------------------------------------------- (f) main
@needs_reference
def test_main_fetches_and_prints_attribution_and_path(tmp_path, capsys):
    dest = tmp_path / "out" / "model.npz"
    assert official.main(["--url", REFERENCE.resolve().as_uri(), "--dest", str(dest)]) == 0
    out = capsys.readouterr().out
    assert official.ATTRIBUTION in out and out.splitlines()[-1] == str(dest)
    assert dest.read_bytes() == REFERENCE.read_bytes()
    with serve(REFERENCE.parent) as (base, _):
        assert official.main(["--url", f"{base}/model.npz"]) == 0  # default dest: the cache
    assert capsys.readouterr().out.splitlines()[-1] == str(official.cached_path())
    assert official.weights_path() == official.cached_path()


@needs_reference
def test_main_mismatch_exits_2_with_one_error_line(tampered_dir, capsys):
    with serve(tampered_dir) as (base, _):
        assert official.main(["--url", f"{base}/model.npz"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: checksum mismatch") and REFERENCE_SHA256 in err
    assert files_under(official.cache_dir()) == []


def test_main_bad_option_exits_2(capsys):
    with pytest.raises(SystemExit) as info:
        official.main(["--nope"])
    assert info.value.code == 2
    assert capsys.readouterr().err.startswith("error: ")
