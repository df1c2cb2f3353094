"""Find the files to ingest: walk, skip hidden and ignored files, report what can't be read.

Ignore rules: any ``.docmemignore`` file (gitignore syntax) applies to its folder and
below; ``--exclude`` globs (same syntax) apply from each root.

Symlinks: a link (to a file or a folder) whose target resolves outside the ingested root is
skipped with its reason unless ``follow_symlinks``: a folder holding ``etc_link -> /etc``
must not make /etc searchable. A link to something inside the root is skipped too, since its
target is ingested under its own path (no duplicate documents, no loops). With
``follow_symlinks`` every link is followed and a folder reached twice is reported as a loop.

Names: a file name that is not valid UTF-8 (Python keeps its bytes as surrogates) is
ingested under a displayable name with the bad bytes written as ``\\xNN``; ``path`` keeps
the real name for reading.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import pathspec

from ingest.document import LoadError

IGNORE_FILE = ".docmemignore"


@dataclass(frozen=True)
class Found:
    path: Path  # absolute
    root: Path  # absolute folder it was found under
    rel: str  # relative to root, POSIX
    size: int
    mtime_ns: int
    confine: str | None = None  # the real folder this file must resolve inside when read


def confined(path: str, confine: str | None) -> str:
    """The real path to read, checked again at read time (a link swapped in after the walk)."""
    if confine is None:
        return path
    real = os.path.realpath(path, strict=True)
    if not _inside(real, confine):
        raise LoadError(OUTSIDE_ROOT)
    return real


@dataclass(frozen=True)
class Problem:
    rel: str
    reason: str


@dataclass
class Discovery:
    roots: list[Path]
    files: list[Found]
    problems: list[Problem]  # could not be looked at at all
    missing_roots: list[str]
    skipped: list[Problem] = field(default_factory=list)  # looked at and left out on purpose


OUTSIDE_ROOT = "symlink to outside the ingested folder (--follow-symlinks to include it)"


def display_name(name: str) -> str:
    """A name that can be stored and printed: undecodable bytes become ``\\xNN``."""
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        return os.fsencode(name).decode("utf-8", errors="backslashreplace")


def _inside(path: str, real_root: str) -> bool:
    return path == real_root or path.startswith(real_root.rstrip(os.sep) + os.sep)


def _spec(lines: list[str]) -> pathspec.PathSpec:
    return pathspec.GitIgnoreSpec.from_lines(lines)


def _read_ignore(folder: Path) -> pathspec.PathSpec | None:
    path = folder / IGNORE_FILE
    try:
        return _spec(path.read_text(encoding="utf-8", errors="replace").splitlines())
    except FileNotFoundError:
        return None
    except OSError:
        return None


def _os_reason(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "symlink loop"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if exc.errno == errno.ENOENT:
        return "broken symlink or file vanished"
    return exc.strerror or str(exc)


def discover(paths: list[Path], excludes: tuple[str, ...] = (), follow_symlinks: bool = False) -> Discovery:
    """The files under ``paths``; a path named here is taken as given, even if it is a link."""
    out = Discovery(roots=[], files=[], problems=[], missing_roots=[])
    exclude = _spec(list(excludes)) if excludes else None
    for given in paths:
        absolute = Path(os.path.abspath(given))
        if not os.path.lexists(absolute):
            out.missing_roots.append(str(given))
            out.problems.append(Problem(str(given), "no such file or directory"))
            continue
        if absolute.is_file():
            root = absolute.parent
            out.roots.append(root)
            _add_file(out, absolute, root, display_name(absolute.name))
            continue
        out.roots.append(absolute)
        _walk(out, absolute, exclude, None if follow_symlinks else os.path.realpath(absolute))
    return out


def _add_file(out: Discovery, path: Path, root: Path, rel: str, confine: str | None = None) -> None:
    try:
        st = path.stat()
    except OSError as exc:
        out.problems.append(Problem(rel, _os_reason(exc)))
        return
    if not stat.S_ISREG(st.st_mode):
        out.problems.append(Problem(rel, "not a regular file"))
        return
    out.files.append(Found(path, root, rel, st.st_size, st.st_mtime_ns, confine))


def _walk(out: Discovery, root: Path, exclude: pathspec.PathSpec | None, confine: str | None) -> None:
    """Depth-first, in name order; ``confine``: the real root that links may not leave."""
    seen_dirs: set[tuple[int, int]] = set()
    # Each entry: folder, and the ignore specs in force with the folder they are relative to.
    stack: list[tuple[Path, list[tuple[Path, pathspec.PathSpec]]]] = [(root, [])]
    while stack:
        folder, specs = stack.pop()
        try:
            st = folder.stat()
        except OSError as exc:
            out.problems.append(Problem(_rel(folder, root) + "/", _os_reason(exc)))
            continue
        key = (st.st_dev, st.st_ino)
        if key in seen_dirs:
            out.problems.append(Problem(_rel(folder, root) + "/", "symlink loop, or a second way into a folder already visited"))
            continue
        seen_dirs.add(key)
        own = _read_ignore(folder)
        if own is not None:
            specs = [*specs, (folder, own)]
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            out.problems.append(Problem(_rel(folder, root) + "/", _os_reason(exc)))
            continue
        subfolders = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = Path(entry.path)
            rel = _rel(path, root)
            try:
                is_dir = entry.is_dir(follow_symlinks=True)
                if _ignored(path, is_dir, specs) or (exclude and exclude.match_file(rel + ("/" if is_dir else ""))):
                    continue
                if confine and entry.is_symlink():
                    out.skipped.append(Problem(rel + ("/" if is_dir else ""), _link_reason(path, confine)))
                    continue
            except OSError as exc:
                out.problems.append(Problem(rel, _os_reason(exc)))
                continue
            if is_dir:
                subfolders.append((path, specs))
            else:
                _add_file(out, path, root, rel, confine)
        stack.extend(reversed(subfolders))


def _link_reason(link: Path, confine: str) -> str:
    """Why a link is not followed: it leaves the root, or its target is ingested under its own path."""
    target = os.path.realpath(link, strict=True)
    if not _inside(target, confine):
        return OUTSIDE_ROOT
    where = Path(target).relative_to(confine).as_posix()
    return f"symlink to {display_name(where)}, ingested under that path"


def _ignored(path: Path, is_dir: bool, specs: list[tuple[Path, pathspec.PathSpec]]) -> bool:
    for base, spec in specs:
        rel = path.relative_to(base).as_posix() + ("/" if is_dir else "")
        if spec.match_file(rel):
            return True
    return False


def _rel(path: Path, root: Path) -> str:
    rel = path.relative_to(root).as_posix()
    return display_name(rel if rel != "." else path.name)
