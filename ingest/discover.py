"""Find the files to ingest: walk, skip hidden and ignored files, report what can't be read.

Ignore rules: any ``.docmemignore`` file (gitignore syntax) applies to its folder and
below; ``--exclude`` globs (same syntax) apply from each root.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import pathspec

IGNORE_FILE = ".docmemignore"


@dataclass(frozen=True)
class Found:
    path: Path  # absolute
    root: Path  # absolute folder it was found under
    rel: str  # relative to root, POSIX
    size: int
    mtime_ns: int


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


def discover(paths: list[Path], excludes: tuple[str, ...] = ()) -> Discovery:
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
            _add_file(out, absolute, root, absolute.name)
            continue
        out.roots.append(absolute)
        _walk(out, absolute, exclude)
    return out


def _add_file(out: Discovery, path: Path, root: Path, rel: str) -> None:
    try:
        st = path.stat()
    except OSError as exc:
        out.problems.append(Problem(rel, _os_reason(exc)))
        return
    if not stat.S_ISREG(st.st_mode):
        out.problems.append(Problem(rel, "not a regular file"))
        return
    out.files.append(Found(path, root, rel, st.st_size, st.st_mtime_ns))


def _walk(out: Discovery, root: Path, exclude: pathspec.PathSpec | None) -> None:
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
            out.problems.append(Problem(_rel(folder, root) + "/", "symlink loop (folder already visited)"))
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
            except OSError as exc:
                out.problems.append(Problem(rel, _os_reason(exc)))
                continue
            if _ignored(path, is_dir, specs) or (exclude and exclude.match_file(rel + ("/" if is_dir else ""))):
                continue
            if is_dir:
                subfolders.append((path, specs))
            else:
                _add_file(out, path, root, rel)
        stack.extend(reversed(subfolders))


def _ignored(path: Path, is_dir: bool, specs: list[tuple[Path, pathspec.PathSpec]]) -> bool:
    for base, spec in specs:
        rel = path.relative_to(base).as_posix() + ("/" if is_dir else "")
        if spec.match_file(rel):
            return True
    return False


def _rel(path: Path, root: Path) -> str:
    rel = path.relative_to(root).as_posix()
    return rel if rel != "." else path.name
