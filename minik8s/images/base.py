"""Base images: build what the cluster registry lacks, push it under the names users write.

- ``PAUSE_IMAGE``: a static C program (``pause/pause.c``, ``gcc -static -Os``) FROM scratch.
- ``busybox:latest`` (also ``busybox:1.37``): Debian trixie's busybox-static with applet symlinks,
  FROM scratch. Bookworm's 1.35 is built without FEATURE_WGET_TIMEOUT and ``wget -T 5 URL``, a line
  in many Kubernetes examples, writes through NULL there (exit 139); trixie's 1.37 has it.
- ``python:3.11`` (also ``python:3``, ``python:latest``) and ``nginx:latest``: one Debian
  bookworm minbase root from ``debootstrap`` (python3, ca-certificates, nginx-light),
  cached as a tarball in ``cache_dir`` and ADDed FROM scratch. Both images carry the
  same root, so the registry stores that layer once.

Dockerfiles live next to this module in ``base/NAME/``; no build step needs a network.
Each image is pushed as ``REGISTRY/library/NAME:TAG`` (``REGISTRY/minik8s/pause:1`` for
the pause image). An image whose every tag is in the registry is skipped, so a second
``ensure_base_images`` only makes a few HEAD requests.
"""

from __future__ import annotations

import logging
import os
import shutil
import struct
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import docker

from minik8s.images import ImageError
from minik8s.images.registry import manifest_exists, parse_image, resolve_image
from minik8s.images.user import DOCKERFILE, build_context, push_ref

LOG = logging.getLogger(__name__)

PAUSE_IMAGE = "minik8s/pause:1"
BUSYBOX_IMAGE = "busybox:latest"
BUSYBOX_VERSION_TAG = "busybox:1.37"  # a registry from before the trixie busybox lacks it: rebuilt once
BUSYBOX_SUITE = "trixie"
BUSYBOX_PACKAGE = "busybox-static"
BUSYBOX_CACHE = f"busybox-static-{BUSYBOX_SUITE}"
APT_DOWNLOAD_TIMEOUT_S = 300
PYTHON_IMAGE = "python:3.11"
PYTHON_ALIASES = ("python:3", "python:latest")
NGINX_IMAGE = "nginx:latest"

DATA_DIR = Path(__file__).resolve().parent
DOCKERFILES_DIR = DATA_DIR / "base"
PAUSE_SOURCE = DATA_DIR / "pause" / "pause.c"

DEFAULT_DEBIAN_MIRROR = "http://deb.debian.org/debian"
APT_SOURCES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))
DEBIAN_SUITE = "bookworm"
DEBIAN_PACKAGES = ("python3", "ca-certificates", "nginx-light")
DEBIAN_ROOTFS_TAR = f"debian-{DEBIAN_SUITE}-{'-'.join(DEBIAN_PACKAGES)}.tar"
DEBOOTSTRAP_TIMEOUT_S = 900
GCC_TIMEOUT_S = 120
ROOTFS_TAR = "rootfs.tar"
CONTEXT_PREFIX = "minik8s-image-"
# Files removed from the Debian root: package indexes and caches nobody needs at run time.
DEBIAN_PRUNE = (
    "var/lib/apt/lists",
    "var/cache/apt",
    "var/cache/debconf/templates.dat-old",
    "var/log/bootstrap.log",
)
NGINX_LOG_LINKS = {"var/log/nginx/access.log": "/dev/stdout", "var/log/nginx/error.log": "/dev/stderr"}

BUSYBOX_DIRS = ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "root", "var", "home", "proc", "sys", "dev")
BUSYBOX_PATH = "bin/busybox"
PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\n"
    "daemon:x:1:1:daemon:/usr/sbin:/bin/false\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
)
GROUP = "root:x:0:\ndaemon:x:1:\nnogroup:x:65534:\n"
DIR_MODE = 0o755
ROOT_HOME_MODE = 0o700
TMP_MODE = 0o1777
EXEC_MODE = 0o755
FILE_MODE = 0o644
# ELF64 header fields needed to tell a static binary from a dynamic one.
ELF_MAGIC = b"\x7fELF"
ELF_CLASS64 = 2
ELF64_PHOFF = struct.Struct("<Q")
ELF64_PHOFF_AT = 0x20
ELF64_PHENT = struct.Struct("<HH")
ELF64_PHENT_AT = 0x36
PT_INTERP = 3
PT_TYPE = struct.Struct("<I")


@dataclass(frozen=True)
class BuildInputs:
    """What a context needs beyond its Dockerfile: the cache dir and the Debian mirror."""

    cache_dir: Path
    debian_mirror: str
    log: logging.Logger


Prepare = Callable[[Path, BuildInputs], None]


@dataclass(frozen=True)
class BaseImage:
    key: str  # directory under base/ and the name used in ``only=``
    tags: tuple[str, ...]  # user-facing names; the first one is built, the rest are aliases
    prepare: Prepare


def _is_static_elf(path: Path) -> bool:
    data = path.read_bytes()
    if data[:4] != ELF_MAGIC or data[4] != ELF_CLASS64:
        return False
    (phoff,) = ELF64_PHOFF.unpack_from(data, ELF64_PHOFF_AT)
    phentsize, phnum = ELF64_PHENT.unpack_from(data, ELF64_PHENT_AT)
    return all(PT_TYPE.unpack_from(data, phoff + i * phentsize)[0] != PT_INTERP for i in range(phnum))


def _tar_add(
    tar: tarfile.TarFile, name: str, kind: bytes, mode: int, data: bytes = b"", link: str = ""
) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.linkname, info.size = kind, mode, link, len(data)
    tar.addfile(info, BytesIO(data) if data else None)


def write_busybox_rootfs(busybox: Path, out: Path) -> None:
    """A deterministic root tarball (fixed mtimes, uid 0) so rebuilds give the same layer digest."""
    listing = subprocess.run([str(busybox), "--list-full"], check=True, capture_output=True, text=True).stdout
    applets = sorted(
        {line.strip().lstrip("/") for line in listing.splitlines() if line.strip()} - {BUSYBOX_PATH}
    )
    with tarfile.open(out, "w", format=tarfile.GNU_FORMAT) as tar:
        for directory in BUSYBOX_DIRS:
            mode = ROOT_HOME_MODE if directory == "root" else DIR_MODE
            _tar_add(tar, directory, tarfile.DIRTYPE, mode)
        _tar_add(tar, "tmp", tarfile.DIRTYPE, TMP_MODE)
        _tar_add(tar, BUSYBOX_PATH, tarfile.REGTYPE, EXEC_MODE, busybox.read_bytes())
        for applet in applets:
            _tar_add(tar, applet, tarfile.SYMTYPE, EXEC_MODE, link="/" + BUSYBOX_PATH)
        _tar_add(tar, "etc/passwd", tarfile.REGTYPE, FILE_MODE, PASSWD.encode())
        _tar_add(tar, "etc/group", tarfile.REGTYPE, FILE_MODE, GROUP.encode())


def _apt(args: list[str], conf: dict[str, str], cwd: Path) -> None:
    argv = ["apt-get", "-q", *(f"-o{key}={value}" for key, value in conf.items()), *args]
    try:
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=APT_DOWNLOAD_TIMEOUT_S,
                              check=False)
    except subprocess.TimeoutExpired as exc:
        raise ImageError(f"apt-get {args[0]} took longer than {APT_DOWNLOAD_TIMEOUT_S}s") from exc
    if done.returncode != 0:
        raise ImageError(f"apt-get {' '.join(args)} failed: {(done.stdout + done.stderr).strip().splitlines()[-1:]}")


def fetch_busybox(inputs: BuildInputs) -> Path:
    """Debian trixie's static busybox, downloaded once into the cache with a private apt configuration
    (the machine's own sources and package state are left alone)."""
    work = inputs.cache_dir / BUSYBOX_CACHE
    binary = work / "root" / "usr" / "bin" / "busybox"
    if binary.is_file():
        return binary
    shutil.rmtree(work, ignore_errors=True)
    (work / "lists" / "partial").mkdir(parents=True)
    (work / "sources.list").write_text(f"deb {inputs.debian_mirror} {BUSYBOX_SUITE} main\n")
    conf = {"Dir::Etc::SourceList": str(work / "sources.list"), "Dir::Etc::SourceParts": "/dev/null",
            "Dir::State::Lists": str(work / "lists"), "APT::Sandbox::User": "root"}
    inputs.log.info("downloading busybox-static", extra={"suite": BUSYBOX_SUITE})
    _apt(["update"], conf, work)
    _apt(["download", BUSYBOX_PACKAGE], conf, work)
    debs = sorted(work.glob(f"{BUSYBOX_PACKAGE}_*.deb"))
    if not debs:
        raise ImageError(f"apt-get download {BUSYBOX_PACKAGE} ({BUSYBOX_SUITE}) left no package")
    subprocess.run(["dpkg-deb", "-x", str(debs[-1]), str(work / "root")], check=True, capture_output=True)
    if not binary.is_file() or not _is_static_elf(binary):
        raise ImageError(f"{debs[-1].name} holds no static busybox at usr/bin/busybox")
    return binary


def _prepare_busybox(context: Path, inputs: BuildInputs) -> None:
    write_busybox_rootfs(fetch_busybox(inputs), context / ROOTFS_TAR)


def _prepare_pause(context: Path, inputs: BuildInputs) -> None:
    gcc = shutil.which("gcc")
    if gcc is None:
        raise ImageError("gcc is needed to build the pause image: install the Debian package gcc")
    argv = [gcc, "-static", "-Os", "-s", "-Wall", "-o", str(context / "pause"), str(PAUSE_SOURCE)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=GCC_TIMEOUT_S, check=False)
    if done.returncode != 0:
        raise ImageError(f"compiling {PAUSE_SOURCE} failed: {done.stderr.strip().splitlines()[-1:]}")


def _unmount_below(root: Path) -> None:
    """Lazily unmount anything a failed debootstrap left mounted (proc, sys) before deleting."""
    prefix = str(root.resolve()) + "/"
    with open("/proc/self/mounts", encoding="utf-8") as mounts:
        points = [line.split()[1] for line in mounts if line.split()[1].startswith(prefix)]
    for point in sorted(points, reverse=True):
        subprocess.run(["umount", "-l", point], check=False)


def _finish_debian_root(root: Path) -> None:
    for rel in DEBIAN_PRUNE:
        target = root / rel
        if target.is_dir() and not target.is_symlink():
            for child in target.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
        elif target.exists():
            target.unlink()
    python = root / "usr/bin/python"
    if not python.exists():
        python.symlink_to("python3")
    for rel, dest in NGINX_LOG_LINKS.items():
        path = root / rel
        if path.parent.is_dir():
            if path.exists() or path.is_symlink():
                path.unlink()
            path.symlink_to(dest)
    (root / "tmp").chmod(TMP_MODE)


def debian_rootfs(inputs: BuildInputs) -> Path:
    """The cached Debian root tarball, made with debootstrap on first use (about 50 s here)."""
    cached = inputs.cache_dir / DEBIAN_ROOTFS_TAR
    if cached.is_file():
        return cached
    if shutil.which("debootstrap") is None:
        raise ImageError(
            "debootstrap is needed to build python/nginx: install the Debian package debootstrap"
        )
    inputs.cache_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="debootstrap-", dir=inputs.cache_dir))
    root = work / "root"
    started = time.monotonic()
    argv = [
        "debootstrap",
        "--variant=minbase",
        f"--include={','.join(DEBIAN_PACKAGES)}",
        DEBIAN_SUITE,
        str(root),
        inputs.debian_mirror,
    ]
    inputs.log.info("running debootstrap", extra={"argv": argv})
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=DEBOOTSTRAP_TIMEOUT_S, check=False
        )
        if done.returncode != 0:
            tail = (done.stdout + done.stderr).strip().splitlines()[-1:]
            raise ImageError(f"debootstrap {DEBIAN_SUITE} from {inputs.debian_mirror} failed: {tail}")
        _finish_debian_root(root)
        partial = work / ROOTFS_TAR
        subprocess.run(["tar", "-C", str(root), "--numeric-owner", "-cf", str(partial), "."], check=True)
        os.replace(partial, cached)
    except subprocess.TimeoutExpired as exc:
        raise ImageError(f"debootstrap took longer than {DEBOOTSTRAP_TIMEOUT_S}s") from exc
    finally:
        _unmount_below(work)
        shutil.rmtree(work, ignore_errors=True)
    inputs.log.info(
        "debian root cached", extra={"path": str(cached), "seconds": round(time.monotonic() - started)}
    )
    return cached


def _apt_source_entries(text: str) -> list[tuple[str, list[str]]]:
    """(uri, suites) pairs from one-line ``deb URI SUITE ...`` entries and deb822 stanzas."""
    entries: list[tuple[str, list[str]]] = []
    fields: dict[str, str] = {}
    for raw in [*text.splitlines(), ""]:
        line = raw.split("#", 1)[0].strip()
        if line.startswith("deb "):
            words = [w for w in line.split()[1:] if not w.startswith("[") and not w.endswith("]")]
            if len(words) >= 2:
                entries.append((words[0], [words[1]]))
        elif ":" in line and not line.startswith("deb"):
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        elif not line and fields:
            if fields.get("types", "deb").split()[0] == "deb":
                entries.extend(
                    (uri, fields.get("suites", "").split()) for uri in fields.get("uris", "").split()
                )
            fields = {}
    return entries


def detect_debian_mirror(sources: Iterable[Path] = APT_SOURCES) -> str:
    """The apt mirror this machine uses for ``DEBIAN_SUITE`` (falls back to deb.debian.org)."""
    for source in sources:
        files = (
            sorted(source.glob("*.list")) + sorted(source.glob("*.sources")) if source.is_dir() else [source]
        )
        for path in files:
            if not path.is_file():
                continue
            for uri, suites in _apt_source_entries(path.read_text(encoding="utf-8", errors="replace")):
                if DEBIAN_SUITE in suites and uri.startswith(("http://", "https://")):
                    return uri.rstrip("/")
    return DEFAULT_DEBIAN_MIRROR


def _prepare_debian(context: Path, inputs: BuildInputs) -> None:
    source = debian_rootfs(inputs)
    try:
        os.link(source, context / ROOTFS_TAR)
    except OSError:
        shutil.copyfile(source, context / ROOTFS_TAR)


BASE_IMAGES: tuple[BaseImage, ...] = (
    BaseImage("pause", (PAUSE_IMAGE,), _prepare_pause),
    BaseImage("busybox", (BUSYBOX_IMAGE, BUSYBOX_VERSION_TAG), _prepare_busybox),
    BaseImage("python", (PYTHON_IMAGE, *PYTHON_ALIASES), _prepare_debian),
    BaseImage("nginx", (NGINX_IMAGE,), _prepare_debian),
)


def _missing_tags(spec: BaseImage, registry: str) -> list[str]:
    missing = []
    for name in spec.tags:
        ref = parse_image(name)
        if not manifest_exists(registry, ref.path, ref.tag or ""):
            missing.append(name)
    return missing


def _build_and_push(
    builder: docker.DockerClient, spec: BaseImage, missing: list[str], registry: str, inputs: BuildInputs
) -> None:
    inputs.cache_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=CONTEXT_PREFIX, dir=inputs.cache_dir) as tmp:
        context = Path(tmp)
        shutil.copyfile(DOCKERFILES_DIR / spec.key / DOCKERFILE, context / DOCKERFILE)
        spec.prepare(context, inputs)
        image = build_context(builder, context, resolve_image(spec.tags[0], registry))
    for name in spec.tags:
        # The plain name too, so ``FROM busybox`` and ``docker run busybox`` work on the builder.
        user_ref = parse_image(name)
        image.tag(user_ref.repository, user_ref.tag)
        target = resolve_image(name, registry)
        repository, _, tag = target.rpartition(":")
        image.tag(repository, tag)
        if name in missing:
            push_ref(builder, target)
    inputs.log.info(
        "base image ready",
        extra={"image": spec.tags[0], "pushed": missing, "seconds": round(time.monotonic() - started, 1)},
    )


def ensure_base_images(
    builder: docker.DockerClient,
    registry: str,
    cache_dir: Path,
    log: logging.Logger = LOG,
    only: Iterable[str] | None = None,
    debian_mirror: str | None = None,
) -> list[str]:
    """Build and push every base image missing from ``registry``; return the names pushed now.

    ``only`` limits the work to some of ``pause``, ``busybox``, ``python``, ``nginx``.
    Returns [] when the registry already has everything (a few HEAD requests).
    ``debian_mirror`` defaults to the mirror apt uses here (``detect_debian_mirror``).
    """
    wanted = set(only) if only is not None else {spec.key for spec in BASE_IMAGES}
    unknown = wanted - {spec.key for spec in BASE_IMAGES}
    if unknown:
        raise ImageError(f"unknown base images {sorted(unknown)}: known are {[s.key for s in BASE_IMAGES]}")
    mirror = debian_mirror or detect_debian_mirror()
    inputs = BuildInputs(cache_dir=Path(cache_dir), debian_mirror=mirror, log=log)
    pushed: list[str] = []
    for spec in BASE_IMAGES:
        if spec.key not in wanted:
            continue
        missing = _missing_tags(spec, registry)
        if not missing:
            log.debug("base image present", extra={"image": spec.tags[0]})
            continue
        _build_and_push(builder, spec, missing, registry, inputs)
        pushed.extend(missing)
    return pushed
