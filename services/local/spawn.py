"""Start a process with libc's posix_spawn, without holding Python's GIL while it starts.

os.posix_spawn keeps the GIL for the whole call, and the call lasts until the child has exec'd
(glibc spawns with CLONE_VFORK): with jobs starting a few thousand times a second, every other
thread of the service (gRPC handlers, the recorder) stood still for that long each time.
ctypes releases the GIL around foreign calls, so here only the kernel waits.
posix_spawn_file_actions_addchdir_np (glibc 2.29, musl 1.1.24) also sets the working directory,
so one path serves every job (os.posix_spawn cannot chdir before Python 3.13).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
from collections.abc import Iterable, Mapping, Sequence

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_pointer = ctypes.c_void_p
_string = ctypes.c_char_p
_int = ctypes.c_int

# The C types are opaque; these sizes are generous for glibc (80, 336, 128 bytes) and musl.
_FILE_ACTIONS_SIZE = 256
_ATTRIBUTES_SIZE = 512
_SIGSET_SIZE = 128

# <spawn.h>, the same values in glibc and musl.
POSIX_SPAWN_SETSIGDEF = 0x04
POSIX_SPAWN_SETSID = 0x80

_OUTPUT_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
_DEVNULL = os.fsencode(os.devnull)


def _declare(name: str, *arguments: type) -> None:
    function = getattr(_libc, name)
    function.argtypes = list(arguments)
    function.restype = _int


_declare("posix_spawn_file_actions_init", _pointer)
_declare("posix_spawn_file_actions_destroy", _pointer)
_declare("posix_spawn_file_actions_addopen", _pointer, _int, _string, _int, ctypes.c_uint)
_declare("posix_spawn_file_actions_adddup2", _pointer, _int, _int)
_declare("posix_spawn_file_actions_addchdir_np", _pointer, _string)
_declare("posix_spawnattr_init", _pointer)
_declare("posix_spawnattr_destroy", _pointer)
_declare("posix_spawnattr_setflags", _pointer, ctypes.c_short)
_declare("posix_spawnattr_setsigdefault", _pointer, _pointer)
_declare("sigemptyset", _pointer)
_declare("sigaddset", _pointer, _int)
_declare("posix_spawn", ctypes.POINTER(_int), _string, _pointer, _pointer, ctypes.POINTER(_string), ctypes.POINTER(_string))


def _path(output: str | None) -> bytes:
    return os.fsencode(output) if output else _DEVNULL


def _check(error: int) -> None:
    if error:
        raise OSError(error, os.strerror(error))


class _FileActions:
    """A posix_spawn_file_actions_t: stdin from /dev/null, stdout and stderr to files (or
    /dev/null), then the working directory. Only read by posix_spawn, so one can serve many
    spawns at once from several threads."""

    def __init__(self, cwd: str | None, stdout: str | None, stderr: str | None) -> None:
        self.buffer = ctypes.create_string_buffer(_FILE_ACTIONS_SIZE)
        _check(_libc.posix_spawn_file_actions_init(self.buffer))
        try:
            # In this order: output paths are relative to the service's directory, not the job's.
            _check(_libc.posix_spawn_file_actions_addopen(self.buffer, 0, _DEVNULL, os.O_RDONLY, 0))
            _check(_libc.posix_spawn_file_actions_addopen(self.buffer, 1, _path(stdout), _OUTPUT_FLAGS, 0o666))
            if stderr and stderr == stdout:
                _check(_libc.posix_spawn_file_actions_adddup2(self.buffer, 1, 2))
            else:
                _check(_libc.posix_spawn_file_actions_addopen(self.buffer, 2, _path(stderr), _OUTPUT_FLAGS, 0o666))
            if cwd:
                _check(_libc.posix_spawn_file_actions_addchdir_np(self.buffer, os.fsencode(cwd)))
        except OSError:
            self.close()
            raise

    def close(self) -> None:
        _libc.posix_spawn_file_actions_destroy(self.buffer)


class _Attributes:
    """A posix_spawnattr_t: a new session, and the signals Python ignores for itself (SIGPIPE,
    SIGXFSZ) back at their defaults for the job, as Popen does. The same for every job."""

    def __init__(self) -> None:
        self.signals = ctypes.create_string_buffer(_SIGSET_SIZE)
        _check(_libc.sigemptyset(self.signals))
        for name in ("SIGPIPE", "SIGXFZ", "SIGXFSZ"):
            if hasattr(signal, name):
                _check(_libc.sigaddset(self.signals, getattr(signal, name)))
        self.buffer = ctypes.create_string_buffer(_ATTRIBUTES_SIZE)
        _check(_libc.posix_spawnattr_init(self.buffer))
        _check(_libc.posix_spawnattr_setflags(self.buffer, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGDEF))
        _check(_libc.posix_spawnattr_setsigdefault(self.buffer, self.signals))


_ATTRIBUTES = _Attributes()
_QUIET = _FileActions(None, None, None)  # most jobs: no output files, no working directory


def encode_environment(variables: Mapping[str, str]) -> dict[str, bytes]:
    """NAME -> b"NAME=value", the form exec takes. Encode the service's environment once and
    copy the dict per job: encoding it anew for every job cost more than the spawn itself."""
    encoded = {name: os.fsencode(name) + b"=" + os.fsencode(value) for name, value in variables.items()}
    if any(b"\0" in entry for entry in encoded.values()):  # C would cut the string short there
        raise ValueError("an environment variable holds a NUL byte")
    return encoded


def spawn(
    argv: Sequence[str],
    environment: Iterable[bytes],
    *,
    cwd: str | None = None,
    stdout: str | None = None,
    stderr: str | None = None,
) -> int:
    """Start `argv` in a new session with stdin from /dev/null and stdout/stderr to the given
    files (created or truncated; /dev/null when None; stderr == stdout shares one file); return
    its pid. Raises OSError naming what could not be used when the process cannot start."""
    actions = _FileActions(cwd, stdout, stderr) if cwd or stdout or stderr else _QUIET
    arguments = [os.fsencode(argument) for argument in argv]
    if any(b"\0" in argument for argument in arguments):
        raise ValueError("an argument holds a NUL byte")
    variables = list(environment)
    pid = _int()
    try:
        error = _libc.posix_spawn(
            ctypes.byref(pid),
            arguments[0],
            actions.buffer,
            _ATTRIBUTES.buffer,
            (_string * (len(arguments) + 1))(*arguments, None),
            (_string * (len(variables) + 1))(*variables, None),
        )
    finally:
        if actions is not _QUIET:
            actions.close()
    if error:
        raise OSError(error, os.strerror(error), _culprit(argv[0], cwd, stdout, stderr))
    return pid.value


def _culprit(program: str, cwd: str | None, stdout: str | None, stderr: str | None) -> str:
    """Which path the failure was about: posix_spawn reports an errno, not which step failed."""
    if cwd and not os.path.isdir(cwd):
        return cwd
    for output in (stdout, stderr):
        if output and not os.access(os.path.dirname(os.path.abspath(output)) or "/", os.W_OK):
            return output
    return program
