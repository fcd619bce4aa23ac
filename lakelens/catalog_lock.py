"""Who holds a lake's embedded (Derby) catalog, found from its lock file before Spark starts.

While a JVM has the database booted, Derby holds an exclusive lock on ``metastore_db/dbex.lck`` (Java's
``FileChannel.tryLock``, a POSIX record lock on Linux). ``fcntl(F_GETLK)`` asks the kernel who holds it without
taking it, so a job can refuse a busy catalog in a second and name the holder, instead of starting Spark and
letting Derby and the Hive metastore retry for half a minute. The kernel frees the lock when its holder exits, so
a lock that is found is never stale.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
from dataclasses import dataclass
from pathlib import Path

LOCK_FILE = "dbex.lck"
# struct flock on Linux (64-bit off_t): l_type, l_whence (short), l_start, l_len (off_t), l_pid (pid_t), padded.
_FLOCK = "hhqqi4x"
_MAX_COMMAND = 200  # characters of a holder's command line shown; a JVM's class path alone is thousands


@dataclass(frozen=True)
class LockHolder:
    """The process that holds a catalog's lock, and the job it belongs to."""

    pid: int  # the process the kernel names (the JVM); 0 when it is outside this machine's view of processes
    job_pid: int  # the process a user knows: the Python job that started that JVM, else the JVM itself
    command: str  # the job's command line, shortened; "" when it cannot be read

    def describe(self) -> str:
        """``process 123 (python -m jobs.nightly ...; JVM 125)``, for a one-line message."""
        if self.pid == 0:
            return "a process on another machine or in another container"
        details = [self.command] if self.command else []
        if self.job_pid != self.pid:
            details.append(f"JVM {self.pid}")
        return f"process {self.job_pid}" + (f" ({'; '.join(details)})" if details else "")


def lock_pid(metastore: Path) -> int | None:
    """The pid of the process holding Derby's lock on the database folder ``metastore``, or None when the lock
    file is missing or nobody holds it. A lock this very process holds is not reported (POSIX locks never conflict
    with their owner's); 0 means a holder whose pid this machine cannot see (another PID namespace, NFS), -1 one
    that holds it by open file description (not a JVM: Java takes process-owned locks)."""
    try:
        fd = os.open(metastore / LOCK_FILE, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        # Closing this descriptor cannot drop someone else's lock: POSIX locks belong to the process that took them.
        query = struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
        try:
            answer = fcntl.fcntl(fd, fcntl.F_GETLK, query)
        except OSError as exc:
            if exc.errno in (errno.ENOLCK, errno.EINVAL, errno.EOPNOTSUPP):  # a filesystem without record locks
                return None
            raise
    finally:
        os.close(fd)
    kind, _, _, _, pid = struct.unpack(_FLOCK, answer)
    return None if kind == fcntl.F_UNLCK else pid


def foreign_holder(metastore: Path, me: int | None = None) -> LockHolder | None:
    """The holder of the catalog ``metastore`` unless it is free or held by this job itself.

    This job holds it when the holder is ``me`` (default: this process), one of its ancestors (under spark-submit
    the JVM starts Python) or one of its descendants (PySpark starts the JVM as a child): a second session in one
    job, or a test's session, must not refuse its own lock.
    """
    pid = lock_pid(metastore)
    if pid is None or pid < 0:
        # An owner that cannot be told from this job: let Derby decide (it refuses a second process itself).
        return None
    if pid == 0:
        return LockHolder(0, 0, "")
    me = os.getpid() if me is None else me
    if pid == me or pid in _ancestors(me) or me in _ancestors(pid):
        return None
    job = _job_of(pid)
    return LockHolder(pid, job, _shown_command(job))


def busy_message(metastore: Path, holder: LockHolder | None) -> str:
    """One line: whose the catalog is and what to do about it."""
    who = holder.describe() if holder else "another process"
    return (
        f"the lake's catalog {metastore} is in use by {who}; embedded Derby admits one process at a time: wait for "
        "that job to end, or use an external metastore (lake.metastore=external, see conf/cluster.yaml)"
    )


def _parent(pid: int) -> int | None:
    """The parent of ``pid`` from /proc, or None when it has gone (or there is no /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after its last ")".
    fields = stat[stat.rfind(")") + 2 :].split()
    return int(fields[1]) if len(fields) > 1 else None


def _ancestors(pid: int) -> list[int]:
    """The parent, grandparent, ... of ``pid`` up to (not including) pid 0."""
    chain: list[int] = []
    parent = _parent(pid)
    while parent and parent not in chain:
        chain.append(parent)
        parent = _parent(parent)
    return chain


def _argv(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _is_python(pid: int) -> bool:
    # A script started by its #! line (pytest) shows the interpreter as argv[0].
    argv = _argv(pid)
    return bool(argv) and os.path.basename(argv[0]).startswith("python")


def _job_of(pid: int) -> int:
    """The Python process that owns the JVM ``pid``: its nearest Python ancestor (PySpark starts the JVM), else a
    Python child (spark-submit starts Python), else the JVM itself (or a Python holder itself)."""
    if _is_python(pid):
        return pid
    for ancestor in _ancestors(pid):
        if _is_python(ancestor):
            return ancestor
    for child in _children(pid):
        if _is_python(child):
            return child
    return pid


def _children(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        if entry.name.isdigit() and _parent(int(entry.name)) == pid:
            children.append(int(entry.name))
    return sorted(children)


def _shown_command(pid: int) -> str:
    """The command line of ``pid`` as a user would type it: ``python -m jobs.nightly ...``, or for a bare JVM its
    main class and arguments without the options and class path."""
    argv = _argv(pid)
    if not argv:
        return ""
    program = os.path.basename(argv[0])
    args = argv[1:]
    if program == "java":
        args = _java_main_and_args(args)
    shown = " ".join([program, *args])
    return shown if len(shown) <= _MAX_COMMAND else shown[: _MAX_COMMAND - 3] + "..."


def _java_main_and_args(args: list[str]) -> list[str]:
    takes_value = {"-cp", "-classpath", "--class-path", "--module-path", "-p", "--add-modules"}
    i = 0
    while i < len(args) and args[i].startswith("-"):
        i += 2 if args[i] in takes_value else 1
    return args[i:]
