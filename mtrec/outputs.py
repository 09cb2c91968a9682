"""Output directories written whole or not at all, never replacing what mtrec did not write.

A result (a checkpoint, a batch-scoring output) is written into a temporary sibling `.NAME.tmp-PID-XXXX` and then
published at NAME: created if NAME is free (or an empty directory), otherwise swapped in with one atomic
`renameat2(RENAME_EXCHANGE)`, so NAME always holds either the old complete result or the new one, and only when
`overwrite` is asked and the old directory is recognized as mtrec's own (`foreign` names what is not). Concurrent
writers each use their own temporary and the last complete one wins; temporaries of dead processes (a kill -9
mid-write) are removed by the next write next to them.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Sequence

from mtrec.errors import OutputError

Foreign = Callable[[Path], "str | None"]

_AT_FDCWD = -100
_RENAME_NOREPLACE = 1
_RENAME_EXCHANGE = 2
_TEMP_KINDS = ("tmp", "old")


def _renameat2() -> Callable[..., int] | None:
    try:
        return getattr(ctypes.CDLL(None, use_errno=True), "renameat2")
    except (OSError, AttributeError):
        return None


_RENAMEAT2 = _renameat2()


def _rename(src: Path, dst: Path, flags: int) -> bool:
    """renameat2(src, dst, flags); False where the system or file system does not support the flags."""
    if _RENAMEAT2 is None:
        return False
    if _RENAMEAT2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), flags) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(dst))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _temp_pattern(path: Path) -> re.Pattern[str]:
    return re.compile(rf"\.{re.escape(path.name)}\.(?:{'|'.join(_TEMP_KINDS)})-(\d+)(?:-.*)?")


def stale_temporaries(path: str | Path) -> list[Path]:
    """Temporary siblings of `path` whose writing process is gone (left by a crash or a kill)."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    pattern = _temp_pattern(path)
    out = []
    for entry in path.parent.iterdir():
        match = pattern.fullmatch(entry.name)
        if match and not entry.is_symlink() and entry.is_dir() and not _pid_alive(int(match.group(1))):
            out.append(entry)
    return out


def temporaries(path: str | Path) -> list[Path]:
    """Every temporary sibling of `path` (live writers' and stale ones)."""
    path = Path(path)
    pattern = _temp_pattern(path)
    return [e for e in path.parent.iterdir() if pattern.fullmatch(e.name)] if path.parent.is_dir() else []


def _refusal(path: Path, overwrite: bool, foreign: Foreign) -> str | None:
    """Why `path` may not be replaced (None: it is free, an empty directory, or mtrec's own and overwrite)."""
    if not path.name:
        return f"{path} is not a directory name mtrec can write to"
    if not os.path.lexists(path):
        return None
    if path.is_symlink() or not path.is_dir():
        return f"{path} exists and is not a directory mtrec wrote; choose another path"
    if not any(path.iterdir()):
        return None
    why = foreign(path)
    if why is not None:
        return f"{path} is not an mtrec output ({why}); mtrec never replaces it: choose another path"
    if not overwrite:
        return f"{path} already exists; pass overwrite=True (--overwrite) to replace it, or choose another path"
    return None


def check_output(path: str | Path, overwrite: bool, foreign: Foreign) -> Path:
    """Fail now, before any work, with OutputError if a result could not be published at `path` (taken, or its
    parent cannot hold a new directory); returns the resolved path."""
    path = Path(path).resolve()
    why = _refusal(path, overwrite, foreign)
    if why is not None:
        raise OutputError(why)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        probe = tempfile.mkdtemp(prefix=f".{path.name}.tmp-{os.getpid()}-", dir=path.parent)
        os.rmdir(probe)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def _umask() -> int:
    """The process's umask (read by setting it and setting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def temporary_for(path: Path) -> Path:
    """A new temporary sibling directory of `path` for this process (stale ones of dead processes go first), with
    the permissions the umask gives any new directory (mkdtemp's 0700 would become the published output's)."""
    for stale in stale_temporaries(path):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-{os.getpid()}-", dir=path.parent))
    tmp.chmod(0o777 & ~_umask())
    return tmp


def _replace_without_exchange(tmp: Path, path: Path) -> None:
    """Two renames where renameat2 is missing: NAME is absent for an instant (the old one waits beside it)."""
    old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-{os.getpid()}-", dir=path.parent))
    os.rename(path, old / path.name)
    os.rename(tmp, path)
    shutil.rmtree(old, ignore_errors=True)


def publish(tmp: Path, path: Path, overwrite: bool, foreign: Foreign) -> Path:
    """Move the complete directory `tmp` to `path` atomically (see the module docstring); removes `tmp` and
    raises OutputError when `path` may not be replaced."""
    try:
        while True:
            why = _refusal(path, overwrite, foreign)
            if why is not None:
                raise OutputError(why)
            if not os.path.lexists(path) or not any(path.iterdir()):
                try:
                    if not _rename(tmp, path, _RENAME_NOREPLACE):
                        os.rename(tmp, path)  # replaces an empty directory, fails on a non-empty one
                    return path
                except OSError as exc:
                    if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                        raise
                    if os.path.isdir(path) and not any(path.iterdir()):
                        os.rmdir(path)  # an empty directory: the no-replace rename refused it, rename onto it
                    continue
            try:
                exchanged = _rename(tmp, path, _RENAME_EXCHANGE)
            except FileNotFoundError:
                continue  # removed meanwhile: create it
            if not exchanged:
                _replace_without_exchange(tmp, path)
                return path
            why = foreign(tmp)  # tmp now holds what was at path: swap back if someone put their files there
            if why is not None:
                _rename(tmp, path, _RENAME_EXCHANGE)
                raise OutputError(f"{path} changed into something that is not an mtrec output ({why}) while "
                                  f"writing; left as it is")
            return path
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def refuse_inputs(output: str | Path, inputs: Sequence[str]) -> None:
    """OutputError when `output` is one of the input files or a directory holding one: mtrec never writes onto
    what it reads, even with overwrite."""
    target = Path(output).resolve()
    for name in inputs:
        source = Path(name).resolve()
        same = source == target or (target.exists() and source.exists() and os.path.samefile(source, target))
        if same or target in source.parents:
            raise OutputError(f"output {output} would overwrite the input {name}: choose another output path")


def check_output_file(path: str | Path, overwrite: bool, inputs: Sequence[str] = ()) -> Path:
    """Fail before any work if a result file could not be written at `path`: an input, an existing file without
    overwrite, or anything but a regular file there (OutputError); returns the resolved path."""
    refuse_inputs(path, inputs)
    target = Path(path).resolve()
    if os.path.lexists(target):
        if target.is_symlink() or not target.is_file():
            raise OutputError(f"output {path} exists and is not a file: choose another output path")
        if not overwrite:
            raise OutputError(f"output {path} already exists; pass --overwrite to replace it, or choose another path")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    return target


def write_file(path: str | Path, write: Callable[[Path], None], overwrite: bool, inputs: Sequence[str] = ()
               ) -> Path:
    """Write a result file through `write(temporary path)` and rename it into place atomically, after the checks
    of check_output_file: a crash leaves the old file or none, never a half-written one."""
    target = check_output_file(path, overwrite, inputs)
    tmp = temporary_for(target)
    try:
        write(tmp / target.name)
        if overwrite:
            os.replace(tmp / target.name, target)
        else:
            try:
                if not _rename(tmp / target.name, target, _RENAME_NOREPLACE):
                    os.link(tmp / target.name, target)  # fails if it exists: never replaces
            except FileExistsError:
                raise OutputError(f"output {path} appeared while writing; left as it is") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
