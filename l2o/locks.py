"""One writer per run directory: a lock file that names the process holding it.

``RunLock(directory)`` (a context manager) takes ``<directory>/lock`` for as long
as a run trains or resumes there (a sweep takes its own directory's the same
way); a second process that tries is refused with ``RunLocked``, one line naming
the process that holds it. The file holds that process's id and host.

Where the system has ``fcntl`` (Linux, macOS), the lock is an ``flock`` on the
file, which the kernel lets go of when its process ends however it ends: a lock
left by a killed run never blocks the next. Elsewhere the file is created
exclusively and counts only while the process it names is alive on this host.
"""

import errno
import os
import socket

from l2o.validation import ConfigError

try:
    import fcntl
except ImportError:  # Windows: the file's process id is checked instead
    fcntl = None

NAME = "lock"


class RunLocked(ConfigError):
    """The run directory is being written by another process; the message names it."""


def alive(pid):
    """Whether process ``pid`` exists on this machine (one of another user counts)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


class RunLock:
    """Holds ``<directory>/lock`` while the ``with`` block runs (see the module docstring).

    ``key`` names the setting that chose the directory in messages (``directory``
    for a config's, a command's argument otherwise). Entering creates the
    directory if needed; leaving removes the lock file, and the directory too if
    entering created it and nothing else was written there.
    """

    def __init__(self, directory, key=None):
        self.directory = os.fspath(directory)
        self.path = os.path.join(self.directory, NAME)
        self.key = key
        self._descriptor = None
        self._created = None  # the outermost folder that entering created

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc_info):
        self.release()

    def _where(self):
        return f"{self.key}: {self.directory}" if self.key else self.directory

    def acquire(self):
        self._created = _first_missing(self.directory)
        try:
            os.makedirs(self.directory, exist_ok=True)
        except OSError as error:
            raise ConfigError(f"{self._where()}: cannot create the run directory "
                              f"({error.strerror or error}); choose a writable folder") from None
        try:
            self._descriptor = (self._take_flock if fcntl else self._take_exclusive)()
        except OSError as error:
            _remove_empty(self.directory, self._created)
            raise ConfigError(f"{self._where()}: cannot write its lock file "
                              f"({error.strerror or error}); choose a writable folder") from None
        os.ftruncate(self._descriptor, 0)
        os.write(self._descriptor, f"{os.getpid()} {socket.gethostname()}\n".encode())

    def check(self):
        """Raises RunLocked if a live process holds the lock; takes nothing (a quick look
        before a command's slow start: ``acquire`` decides)."""
        if fcntl is None:
            pid, host = self._holder()
            if pid is not None and (host != socket.gethostname() or alive(pid)):
                self._refuse()
            return
        try:
            descriptor = os.open(self.path, os.O_RDONLY)
        except OSError:  # no lock file (or none this process may read): nothing to see
            return
        try:
            fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                self._refuse()
        finally:
            os.close(descriptor)  # lets go of the shared lock, if it was taken

    def _take_flock(self):
        while True:
            descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                os.close(descriptor)
                if error.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
                self._refuse()
            # The holder before may have removed the file between our open and flock: a
            # lock on that file excludes nobody, so take the one now at the path.
            try:
                if os.stat(self.path).st_ino == os.fstat(descriptor).st_ino:
                    return descriptor
            except FileNotFoundError:
                pass
            os.close(descriptor)

    def _take_exclusive(self):
        while True:
            try:
                return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                pid, host = self._holder()
                if pid is not None and host == socket.gethostname() and not alive(pid):
                    _remove(self.path)  # left by a process that no longer runs
                    continue
                self._refuse()

    def _holder(self):
        """``(pid, host)`` written in the lock file, ``(None, None)`` where unreadable."""
        try:
            with open(self.path) as handle:
                pid, host = handle.read().split()
            return int(pid), host
        except (OSError, ValueError):
            return None, None

    def _refuse(self):
        pid, host = self._holder()
        if pid is None:
            holder = "another process"
        elif host and host != socket.gethostname():
            holder = f"process {pid} on {host}"
        else:
            holder = f"process {pid}"
        raise RunLocked(f"{self.directory}: {holder} is writing this run (it holds "
                        f"{self.path}); wait for it to end or stop it, then run again")

    def release(self):
        if self._descriptor is None:
            return
        _remove(self.path)  # before unlocking: a waiting process then takes a fresh file
        os.close(self._descriptor)
        self._descriptor = None
        _remove_empty(self.directory, self._created)


def _remove(path):
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def _first_missing(directory):
    """The outermost folder of ``directory``'s path that does not exist yet, or None."""
    missing, path = None, os.path.abspath(directory)
    while not os.path.exists(path):
        missing, parent = path, os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return missing


def _remove_empty(directory, top):
    """Removes ``directory`` and its parents up to ``top`` (those entering created) while
    they are empty; nothing if ``top`` is None."""
    if top is None:
        return
    path = os.path.abspath(directory)
    while True:
        try:
            os.rmdir(path)
        except OSError:
            return
        if path == top:
            return
        path = os.path.dirname(path)
