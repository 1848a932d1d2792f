"""Bundles for hot-swapping: self-contained builds, archives, and loaders per bundle kind.

A "routes" bundle built here carries, besides the index files of
`semroute index build`, the config file it was built from (`config.yaml`) and
the evaluation figures it was built with (manifest `eval`), so a server can
swap its routes and its index together from the bundle alone. The manifest's
checksums cover `config.yaml` too. Bundles built by `semroute index build`
(no `config.yaml`) still load, with the routing config the operator names or
the active one.

Loaders are looked up by the manifest's `kind`, so another kind (e.g. the
learned quality index) plugs in with `register_loader` without touching the
registry.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

import yaml
from pydantic import ValidationError

from semroute.atomic import fsync_path
from semroute.bundle import (
    MANIFEST,
    BundleError,
    check_file_names,
    no_space,
    parse_manifest,
    read_manifest,
    sha256_file,
    write_bundle,
)
from semroute.config import Config, ConfigError, load_config
from semroute.route_index import KIND as ROUTES_KIND
from semroute.route_index import TextEncoder, build_route_index
from semroute.router import RoutingState

CONFIG_FILE = "config.yaml"
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz")
# Sections of a bundle's config that decide requests and travel with it; every
# other section (encoder, server, caches, batching, admin, index_path, and any
# section added later) stays the one the server started with.
ROUTING_SECTIONS = ("models", "routes", "rules", "policy", "classifier", "fast_tier")
MAX_ARCHIVE_MEMBERS = 256


def is_archive(path: Path) -> bool:
    return path.name.endswith(ARCHIVE_SUFFIXES)


def peek_manifest(bundle_dir: Path) -> dict[str, Any]:
    """The manifest, parsed but not verified (to pick the loader and spot a known version)."""
    manifest = parse_manifest(bundle_dir)
    if not isinstance(manifest.get("version"), str):
        raise BundleError(f"{Path(bundle_dir) / MANIFEST}: not a bundle manifest (no version)")
    return manifest


def check_same_files(bundle_dir: Path, manifest: dict[str, Any], loaded: dict[str, Any]) -> None:
    """Raise BundleError naming the first file of `bundle_dir` that differs from the loaded
    bundle of the same version (manifest `loaded`).

    A version names a bundle's content, so a path claiming a loaded version
    must hold the same files; otherwise "already loaded" would hide a
    different (edited, corrupt, or mislabelled) bundle.
    """
    want, have = loaded.get("files"), manifest.get("files")
    if not isinstance(want, dict):
        return  # the loaded bundle recorded no checksums to compare with
    version = loaded.get("version")
    if not isinstance(have, dict):
        raise BundleError(f"{bundle_dir}: its manifest lists no files")
    check_file_names(bundle_dir / MANIFEST, have)
    for name in sorted(set(want) | set(have)):
        if name not in want:
            problem = "is not part of the loaded bundle"
        elif name not in have:
            problem = "is part of the loaded bundle but not listed in this one's manifest"
        elif not (bundle_dir / name).is_file():
            problem = "is missing"
        elif have[name] != want[name] or sha256_file(bundle_dir / name) != want[name]:
            problem = "differs from the loaded bundle's"
        else:
            continue
        raise BundleError(
            f"{bundle_dir}: version {version} is already loaded, but file {name} {problem}; "
            "a changed bundle needs a new version (rebuild it)"
        )


# --- building -----------------------------------------------------------------------------


def config_text(config: Config) -> bytes:
    """The config file's bytes (so the bundle's config has the same version), else a dump."""
    if config.source is not None and Path(config.source).is_file():
        raw = Path(config.source).read_bytes()
        if hashlib.sha256(raw).hexdigest()[:16] == config.version:
            return raw
    data = config.model_dump(mode="json", exclude={"version", "source"})
    return yaml.safe_dump(data, sort_keys=False).encode()


def build_bundle(
    config: Config,
    encoder: TextEncoder,
    out_dir: Path,
    *,
    static_encoder: TextEncoder | None = None,
    eval_figures: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """Build a self-contained "routes" bundle (index + its config + eval figures); atomic.

    The index files come from `build_route_index` unchanged; they are rebuilt
    into a final bundle with `config.yaml`, so the manifest's checksums (and
    its version) cover the config too.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    raw_config = config_text(config)
    with tempfile.TemporaryDirectory(prefix=f".{out_dir.name}.build.", dir=out_dir.parent) as t:
        inner_dir = Path(t) / "index"
        inner = build_route_index(config, encoder, inner_dir, static_encoder)

        def write(tmp: Path) -> None:
            for name in inner["files"]:
                shutil.copyfile(inner_dir / name, tmp / name)
            (tmp / CONFIG_FILE).write_bytes(raw_config)

        skip = {"format", "kind", "version", "created_at", "files"}
        meta = {k: v for k, v in inner.items() if k not in skip}
        meta["config_version"] = hashlib.sha256(raw_config).hexdigest()[:16]
        meta["config_file"] = CONFIG_FILE
        meta["eval"] = {k: float(v) for k, v in (eval_figures or {}).items()}
        return write_bundle(out_dir, ROUTES_KIND, write, meta)


def pack_archive(bundle_dir: Path, out: Path) -> Path:
    """Write `bundle_dir` as a .tar.gz (one top-level dir), atomically (temp file + rename)."""
    bundle_dir, out = Path(bundle_dir), Path(out)
    peek_manifest(bundle_dir)
    if not is_archive(out):
        raise ValueError(f"{out}: an archive name ends with .tar.gz or .tgz")
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    os.close(fd)
    try:
        with tarfile.open(tmp, "w:gz") as tf:
            for f in sorted(bundle_dir.iterdir()):
                if f.is_file():
                    tf.add(f, arcname=f"{bundle_dir.name}/{f.name}", recursive=False)
        fsync_path(Path(tmp))
        os.replace(tmp, out)
        fsync_path(out.parent)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if no_space(e):
            raise BundleError(f"{out}: no space left on device while writing the archive") from None
        raise
    return out


# --- archives -----------------------------------------------------------------------------


def unpack_archive(archive: Path, staging_root: Path, max_bytes: int) -> Path:
    """Unpack a bundle archive into a fresh dir under `staging_root`; returns the bundle dir.

    Only plain files and directories, no absolute or parent paths, at most
    `max_bytes` in all; a truncated or corrupt archive is a BundleError. The
    caller removes the returned dir's parent (`staging_dir_of`) when done.
    """
    staging_root.mkdir(parents=True, exist_ok=True)
    dest = Path(tempfile.mkdtemp(prefix=f"bundle-{os.getpid()}-", dir=staging_root))
    try:
        try:
            with tarfile.open(archive, "r:gz") as tf:
                members = tf.getmembers()  # reads to the end: a truncated archive fails here
                _check_members(archive, members, max_bytes)
                if hasattr(tarfile, "data_filter"):
                    tf.extractall(dest, members=members, filter="data")
                else:  # Python < 3.11.4: members were checked above
                    tf.extractall(dest, members=members)
        except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
            if no_space(e):
                raise BundleError(
                    f"{archive}: no space left on device while unpacking it into "
                    f"{staging_root} (admin.staging_dir); the active index is unchanged"
                ) from None
            raise BundleError(
                f"{archive}: not a readable .tar.gz bundle (truncated or corrupt?): {e}"
            ) from None
        return _bundle_root(archive, dest)
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise


def default_staging_root() -> Path:
    """Where archives are unpacked when `admin.staging_dir` is not set."""
    return Path(tempfile.gettempdir()) / "semroute-staging"


def clean_staging(staging_root: Path) -> int:
    """Remove what loads of processes no longer running (killed mid-load) left in
    `staging_root`; returns how many. Other live processes' loads are left alone."""
    removed = 0
    if not staging_root.is_dir():
        return 0
    for d in staging_root.glob("bundle-*-*"):
        pid = d.name.split("-")[1]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(d, ignore_errors=True)
            removed += 1
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def staging_dir_of(bundle_dir: Path, staging_root: Path) -> Path:
    """The top staging dir an unpacked bundle lives in (what to delete)."""
    rel = Path(bundle_dir).resolve().relative_to(staging_root.resolve())
    return staging_root / rel.parts[0]


def _check_members(archive: Path, members: list[tarfile.TarInfo], max_bytes: int) -> None:
    if len(members) > MAX_ARCHIVE_MEMBERS:
        raise BundleError(f"{archive}: {len(members)} entries; a bundle has a handful of files")
    total = 0
    for m in members:
        p = PurePosixPath(m.name)
        if p.is_absolute() or ".." in p.parts or len(p.parts) > 2:
            raise BundleError(f"{archive}: refused entry {m.name!r} (outside the bundle)")
        if not (m.isfile() or m.isdir()):
            raise BundleError(f"{archive}: refused entry {m.name!r} (links and devices)")
        total += m.size
    if total > max_bytes:
        raise BundleError(f"{archive}: unpacks to {total} bytes, over the {max_bytes} limit")


def _bundle_root(archive: Path, dest: Path) -> Path:
    if (dest / MANIFEST).is_file():
        return dest
    dirs = [p for p in dest.iterdir() if p.is_dir()]
    if len(dirs) == 1 and (dirs[0] / MANIFEST).is_file():
        return dirs[0]
    raise BundleError(f"{archive}: no {MANIFEST} at the top of the archive; not a bundle")


# --- loaders per kind ---------------------------------------------------------------------


@dataclass(frozen=True)
class LoadContext:
    """What a loader may use: the running encoders and configs."""

    encoder: TextEncoder
    static_encoder: TextEncoder | None
    # The config the server started with: its process sections are kept.
    base_config: Config
    # The routing config for a bundle that carries none.
    routing_config: Config


@dataclass(frozen=True)
class Loaded:
    """A loader's result: the routing state to swap in, and what to report about it."""

    state: RoutingState
    # The routing config it decides with (the bundle's own, or the one given).
    config: Config
    self_contained: bool
    index_bytes: int


class BundleLoader(Protocol):
    """Turns a verified bundle directory of one kind into a RoutingState."""

    kind: str

    def load(self, bundle_dir: Path, manifest: dict[str, Any], ctx: LoadContext) -> Loaded: ...


def load_bundle_config(path: Path) -> Config:
    """`load_config`, but with libyaml's parser when it is installed.

    A bundle's config is parsed while the server serves traffic; the pure-Python
    YAML parser holds the GIL for ~20 ms on the default config, which the event
    loop feels as latency. Same result: same file bytes, same version.
    """
    loader = getattr(yaml, "CSafeLoader", None)
    if loader is None:
        return load_config(path)
    try:
        raw = Path(path).read_bytes()
        data = yaml.load(raw, Loader=loader)  # CSafeLoader: safe, like yaml.safe_load
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: unreadable config: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    data["version"] = hashlib.sha256(raw).hexdigest()[:16]
    data["source"] = Path(path).resolve()
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "(top level)"
        raise ConfigError(f"{path}: invalid config: {where}: {first['msg']}") from None


def merge_routing(base: Config, routing: Config) -> Config:
    """`base` with the routing sections (and version) of `routing`; both are validated configs."""
    update: dict[str, Any] = {
        name: getattr(routing, name) for name in ROUTING_SECTIONS if name in Config.model_fields
    }
    update["version"] = routing.version
    return base.model_copy(update=update)


class RoutesLoader:
    """The semantic-route index ("routes" bundles from `semroute index build` or `build_bundle`)."""

    kind = ROUTES_KIND

    def load(self, bundle_dir: Path, manifest: dict[str, Any], ctx: LoadContext) -> Loaded:
        own = CONFIG_FILE in manifest.get("files", {})
        routing = load_bundle_config(bundle_dir / CONFIG_FILE) if own else ctx.routing_config
        config = merge_routing(ctx.base_config, routing)
        if ctx.static_encoder is not None:
            state = RoutingState.load(config, ctx.encoder, bundle_dir, ctx.static_encoder)
        else:
            state = RoutingState.load(config, ctx.encoder, bundle_dir)
        index_bytes = _faiss_bytes(state.index.index) + int(state.index.labels.nbytes)
        static_index = getattr(state.index, "static_index", None)
        if static_index is not None:
            index_bytes += _faiss_bytes(static_index)
        return Loaded(state, config, own, index_bytes)


def _faiss_bytes(index: Any) -> int:
    """Vectors held by a flat index (d float32 per entry); an estimate for other index types."""
    return int(index.ntotal) * int(index.d) * 4


LOADERS: dict[str, BundleLoader] = {ROUTES_KIND: RoutesLoader()}


def register_loader(loader: BundleLoader) -> None:
    """Plug in a bundle kind (e.g. "learned"); the registry dispatches on the manifest's kind."""
    LOADERS[loader.kind] = loader


def loader_for(kind: object) -> BundleLoader:
    loader = LOADERS.get(kind) if isinstance(kind, str) else None
    if loader is None:
        known = ", ".join(sorted(LOADERS))
        raise BundleError(f"no loader for bundle kind {kind!r}; this server loads: {known}")
    return loader


def load_path(
    source: Path, ctx: LoadContext, staging_root: Path, max_archive_bytes: int
) -> tuple[Loaded, dict[str, Any]]:
    """Load the bundle at `source` (a directory or a .tar.gz) outside a registry, for
    offline tools (`semroute replay`): unpacked, verified against the encoder and
    loaded by its kind's loader as the registry does; the unpacked copy is removed."""
    source = Path(source)
    if not source.exists():
        raise BundleError(f"{source}: no such bundle")
    staged: Path | None = None
    try:
        bundle_dir = source
        if source.is_file():
            if not is_archive(source):
                raise BundleError(f"{source}: neither a bundle directory nor a .tar.gz")
            bundle_dir = unpack_archive(source, staging_root, max_archive_bytes)
            staged = staging_dir_of(bundle_dir, staging_root)
        loader = loader_for(peek_manifest(bundle_dir).get("kind"))
        enc = ctx.encoder
        manifest = read_manifest(bundle_dir, kind=loader.kind, encoder_id=enc.id, dim=enc.dim)
        return loader.load(bundle_dir, manifest, ctx), manifest
    finally:
        if staged is not None:
            shutil.rmtree(staged, ignore_errors=True)


def eval_figures(manifest: Mapping[str, Any]) -> dict[str, float]:
    """The numeric evaluation figures a manifest records (`eval`), others dropped."""
    raw = manifest.get("eval")
    if not isinstance(raw, Mapping):
        return {}
    return {
        str(k): float(v)
        for k, v in raw.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    }


# --- a bundle given at start (`semroute serve --index`) -----------------------------------


def stage_for_serving(path: Path, staging_root: Path, max_bytes: int) -> tuple[Path, Path | None]:
    """The bundle directory to serve `path` from, and the staging dir to remove on exit.

    A directory is served in place (None to remove). An archive is unpacked with
    `unpack_archive`'s checks, the same as a LoadIndex of it, into `staging_root`,
    where a later start (or the registry) removes it should this process be killed.
    """
    path = Path(path)
    if not (path.is_file() and is_archive(path)):
        return path, None
    clean_staging(staging_root)
    bundle_dir = unpack_archive(path, staging_root, max_bytes)
    staged = staging_dir_of(bundle_dir, staging_root)
    try:
        peek_manifest(bundle_dir)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    return bundle_dir, staged


def serving_config(base: Config, bundle_dir: Path | None) -> Config:
    """The config to serve `bundle_dir` with: `base`, its routing sections replaced by the
    bundle's own `config.yaml` when it carries one (as an activation of it would).

    An index only makes sense with the routes it was built from, so a self-contained
    bundle brings them; the process sections stay those of `base`. A bundle without
    a config (or no bundle) leaves `base` as it is; a missing or unreadable bundle is
    reported by the index loader, with its own message.
    """
    if bundle_dir is None:
        return base
    try:
        files = parse_manifest(bundle_dir).get("files")
    except BundleError:
        return base
    if not isinstance(files, dict) or CONFIG_FILE not in files:
        return base
    path = Path(bundle_dir) / CONFIG_FILE
    if not path.is_file() or sha256_file(path) != files[CONFIG_FILE]:
        raise BundleError(
            f"{bundle_dir}: checksum mismatch on {CONFIG_FILE}; the bundle is corrupt"
        )
    return merge_routing(base, load_bundle_config(path))
