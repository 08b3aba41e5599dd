"""A target on an SFTP server (offsite copies), through paramiko.

Security: key authentication only (a key file path; its passphrase, if any,
comes from an environment variable named in settings), and the server's host
key must already be in the configured known_hosts file: an unknown or changed
key is refused, never learned (paramiko's RejectPolicy), because accepting it
would hand backups to whoever sits in the middle.

Integrity: an upload goes to a hidden temporary name, is re-read from the
server once and hashed (what the server stored, not what we meant to send),
and only then renamed to its final name, followed by a ``.sha256`` sidecar.
That one read is the verification: the caller does not read it again. The
plain SFTP rename is used rather than ``posix-rename@openssh.com``: the
protocol specifies that it fails when the new name exists (OpenSSH implements
it with ``link``), so a name that appears concurrently is never overwritten.

Reliability: connection and transport failures are retried with exponential
backoff; refusals (host key, authentication, missing file, mismatch) are not,
since repeating them cannot help. Reads are pipelined in bounded windows, so
memory stays constant whatever the file size.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import posixpath
import secrets
import stat
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import paramiko
from paramiko.ssh_exception import NoValidConnectionsError

from dbs_admin.targets.base import (
    CHUNK,
    DIR_MODE,
    FILE_MODE,
    Progress,
    SeekableReader,
    StoredFile,
    check_name,
    is_listed_name,
    parse_sidecar,
    receive_file,
    sidecar_name,
    sidecar_text,
)
from dbs_admin.targets.errors import BackupExistsError, StoredFileMissingError, TargetError

T = TypeVar("T")
READ_WINDOW = 4 * 1024 * 1024  # bytes requested at once when reading: bounds memory, keeps the pipe full
RANGED_WINDOW = 8 * 1024  # the first request after a seek of a ranged reader (metadata reads)
_TRANSIENT_ERRNOS = {
    errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED, errno.EHOSTUNREACH, errno.ENETUNREACH,
    errno.ETIMEDOUT, errno.EPIPE,
}


class HostKeyError(TargetError):
    """The server's host key is not in the known_hosts file, or differs from the one there."""


class RemoteReadError(TargetError):
    """Reading a remote file failed part way; ``transient`` when the connection dropped or timed out."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


def _is_transport_error(exc: BaseException) -> bool:
    if isinstance(exc, (paramiko.AuthenticationException, paramiko.BadHostKeyException)):
        return False
    if isinstance(exc, (_ConnectionLost, NoValidConnectionsError, TimeoutError, ConnectionError, EOFError,
                        paramiko.SSHException)):
        return True
    return isinstance(exc, OSError) and exc.errno in _TRANSIENT_ERRNOS


class _ConnectionLost(Exception):
    """Internal: an operation failed because the SSH connection under it died (worth retrying)."""


def _channel_lost(sftp: paramiko.SFTPClient) -> bool:
    """Whether the SFTP channel or its transport is gone: the error was the network's, not the server's answer.

    Why not classify by exception type: paramiko reports a closed socket and
    an SFTP "failure" status both as a bare OSError.
    """
    channel = sftp.get_channel()
    if channel is None or channel.closed:
        return True
    transport = channel.get_transport()
    return transport is None or not transport.is_active()


def _fingerprint(key: paramiko.PKey) -> str:
    return f"{key.get_name()} {key.fingerprint}"


class _RejectUnknownHost(paramiko.RejectPolicy):
    """RejectPolicy with a message that names the host and the known_hosts file to fix."""

    def __init__(self, known_hosts: Path) -> None:
        self.known_hosts = known_hosts

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        raise HostKeyError(
            f"SFTP host {hostname} is not in {self.known_hosts} (it offered {_fingerprint(key)}); refusing to "
            f"connect. Check the fingerprint with the server's admin, then add it, e.g. "
            f"`ssh-keyscan -p PORT HOST >> {self.known_hosts}`."
        )


class SftpTarget:
    """Sealed files in one folder of an SFTP server; see the module docstring."""

    kind = "sftp"
    verifies_on_put = True  # put() re-reads the uploaded file once and hashes it: no second read is needed
    reports_verification = True  # put() takes verify_progress

    def __init__(
        self,
        name: str,
        *,
        host: str,
        path: str,
        username: str,
        key_filename: str,
        known_hosts: str,
        port: int = 22,
        key_passphrase_env: str | None = None,
        timeout: float = 15.0,
        retries: int = 2,
        backoff: float = 0.5,
    ) -> None:
        self.name = name
        self.host = host
        self.port = int(port)
        self.username = username
        self.key_filename = Path(key_filename).expanduser()
        self.known_hosts = Path(known_hosts).expanduser()
        self.path = path.rstrip("/") or "/"
        self.key_passphrase_env = key_passphrase_env
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.backoff = float(backoff)

    def __repr__(self) -> str:
        return f"<SftpTarget {self.name!r} {self.url}>"

    @property
    def url(self) -> str:
        return f"sftp://{self.username}@{self.host}:{self.port}{self.path}"

    # -- connection ---------------------------------------------------------------------------------------

    def _load_key(self) -> paramiko.PKey:
        passphrase = os.environ.get(self.key_passphrase_env) if self.key_passphrase_env else None
        if self.key_passphrase_env and passphrase is None:
            raise TargetError(
                f"target {self.name!r}: environment variable {self.key_passphrase_env} (the passphrase of "
                f"{self.key_filename}) is not set"
            )
        try:
            return paramiko.PKey.from_path(
                self.key_filename, passphrase=passphrase.encode() if passphrase is not None else None
            )
        except FileNotFoundError:
            raise TargetError(f"target {self.name!r}: key file {self.key_filename} does not exist") from None
        except (paramiko.PasswordRequiredException, TypeError):  # TypeError: cryptography's "no password given"
            raise TargetError(
                f"target {self.name!r}: key file {self.key_filename} is encrypted; name the environment variable "
                "holding its passphrase in the target's 'key_passphrase_env'"
            ) from None
        except (paramiko.SSHException, ValueError, OSError) as exc:
            hint = " (wrong passphrase?)" if passphrase is not None else ""
            raise TargetError(f"target {self.name!r}: cannot load key file {self.key_filename}{hint}: {exc}") from None

    def _client(self) -> paramiko.SSHClient:
        if not self.known_hosts.is_file():
            raise HostKeyError(
                f"target {self.name!r}: known_hosts file {self.known_hosts} does not exist; create it with the "
                "server's host key (e.g. `ssh-keyscan`), after checking its fingerprint"
            )
        pkey = self._load_key()
        client = paramiko.SSHClient()
        try:
            client.load_host_keys(str(self.known_hosts))
        except (OSError, paramiko.SSHException) as exc:
            raise HostKeyError(f"target {self.name!r}: cannot read known_hosts {self.known_hosts}: {exc}") from None
        client.set_missing_host_key_policy(_RejectUnknownHost(self.known_hosts))
        try:
            client.connect(
                self.host, port=self.port, username=self.username, pkey=pkey,
                look_for_keys=False, allow_agent=False,
                timeout=self.timeout, banner_timeout=self.timeout, auth_timeout=self.timeout,
                channel_timeout=self.timeout,
            )
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise HostKeyError(
                f"SFTP host {self.host}:{self.port} presented {_fingerprint(exc.key)}, which differs from the key "
                f"for it in {self.known_hosts}; refusing to connect (possible man-in-the-middle). If the server's "
                "key changed on purpose, replace its line in that file."
            ) from None
        except paramiko.AuthenticationException:
            client.close()
            raise TargetError(
                f"SFTP host {self.host}:{self.port} refused user {self.username!r} with key {self.key_filename}; "
                "add its public key to that user's authorized_keys"
            ) from None
        except BaseException:
            client.close()
            raise
        return client

    @contextmanager
    def _session(self) -> Iterator[paramiko.SFTPClient]:
        client = self._client()
        try:
            sftp = client.open_sftp()
            sftp.get_channel().settimeout(self.timeout)
            try:
                yield sftp
            except (OSError, EOFError, paramiko.SSHException) as exc:
                if _channel_lost(sftp):
                    raise _ConnectionLost(f"{type(exc).__name__}: {exc}") from exc
                raise
        finally:
            client.close()

    def _retrying(self, what: str, attempt: Callable[[int], T]) -> T:
        """Run ``attempt(n)``, retrying transport failures with exponential backoff."""
        delay = self.backoff
        for n in range(self.retries + 1):
            try:
                return attempt(n)
            except RemoteReadError as exc:
                if not exc.transient or n == self.retries:
                    raise
            except TargetError:
                raise
            except Exception as exc:
                if not _is_transport_error(exc):
                    raise
                if n == self.retries:
                    raise TargetError(
                        f"target {self.name!r}: {what} failed, {self.url} unreachable or the connection dropped "
                        f"({type(exc).__name__}: {exc}) after {n + 1} attempt(s); check that the server is up "
                        "and reachable"
                    ) from exc
            time.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")

    def _remote(self, name: str) -> str:
        return posixpath.join(self.path, check_name(name))

    # -- small remote helpers -----------------------------------------------------------------------------

    @staticmethod
    def _stat(sftp: paramiko.SFTPClient, path: str) -> paramiko.SFTPAttributes | None:
        try:
            return sftp.stat(path)
        except FileNotFoundError:
            return None

    def _ensure_folder(self, sftp: paramiko.SFTPClient) -> None:
        parts = [p for p in self.path.split("/") if p]
        current = "/" if self.path.startswith("/") else ""
        for part in parts:
            current = posixpath.join(current, part) if current else part
            attrs = self._stat(sftp, current)
            if attrs is None:
                sftp.mkdir(current, DIR_MODE)
            elif not stat.S_ISDIR(attrs.st_mode or 0):
                raise TargetError(f"target {self.name!r}: {current} on {self.host} is not a folder")

    def _remote_hash(self, sftp: paramiko.SFTPClient, path: str,
                     progress: Progress | None = None) -> tuple[int, str]:
        digest = hashlib.sha256()
        done = 0
        with _RemoteReader(sftp.open(path, "rb"), on_close=None, what=f"{path} on {self.url}") as reader:
            while block := reader.read(CHUNK):
                digest.update(block)
                done += len(block)
                if progress is not None:
                    progress(done, reader.size)
            return reader.size, digest.hexdigest()

    def _read_sidecar(self, sftp: paramiko.SFTPClient, name: str) -> str | None:
        try:
            with sftp.open(posixpath.join(self.path, sidecar_name(name)), "rb") as f:
                return parse_sidecar(f.read(256))
        except FileNotFoundError:
            return None

    def _write_sidecar(self, sftp: paramiko.SFTPClient, name: str, sha256: str) -> None:
        final = posixpath.join(self.path, sidecar_name(name))
        tmp = posixpath.join(self.path, f".{sidecar_name(name)}.{secrets.token_hex(6)}.part")
        with sftp.open(tmp, "wbx") as f:
            sftp.chmod(tmp, FILE_MODE)
            f.write(sidecar_text(name, sha256))
        sftp.posix_rename(tmp, final)  # a sidecar may replace a stale one; the backup itself never is

    def _remove_leftovers(self, sftp: paramiko.SFTPClient, name: str) -> None:
        """Remove temporary files of ``name`` that an attempt cut off by a dropped connection could not remove."""
        prefix = f".{name}."
        for entry in sftp.listdir(self.path):
            if entry.startswith(prefix) and entry.endswith(".part"):
                self._remove_quietly(sftp, posixpath.join(self.path, entry))

    @staticmethod
    def _remove_quietly(sftp: paramiko.SFTPClient, path: str) -> None:
        try:
            sftp.remove(path)
        except Exception:  # noqa: BLE001 - cleanup after a failure that is being reported already
            pass

    # -- Target protocol ----------------------------------------------------------------------------------

    def put(self, local_path: Path, name: str, *, progress: Progress | None = None,
            verify_progress: Progress | None = None) -> StoredFile:
        """Upload to a temporary name, read it back once from the server and hash it, then rename it into place.

        The read-back is the verification (``verifies_on_put``): the file crosses the network once each
        way, not once up and twice down. ``verify_progress(done, total)`` follows that read.
        """
        final = self._remote(name)
        source = Path(local_path)
        if not source.is_file():
            raise TargetError(f"cannot read {source}: not a file")
        sent: dict[str, Any] = {}

        def attempt(n: int) -> StoredFile:
            with self._session() as sftp:
                self._ensure_folder(sftp)
                existing = self._stat(sftp, final)
                if existing is not None:
                    # A retry after a dropped connection may find our own finished upload.
                    if n > 0 and sent and self._remote_hash(sftp, final) == (sent["size"], sent["sha256"]):
                        self._write_sidecar(sftp, name, sent["sha256"])
                        return self._stored(name, sftp.stat(final), sent["sha256"])
                    raise BackupExistsError(
                        f"{name} already exists on target {self.name!r} ({self.url}); backups are never overwritten"
                    )
                if n > 0:
                    self._remove_leftovers(sftp, name)
                size, sha256 = self._upload(sftp, source, final, progress, sent, verify_progress)
                self._write_sidecar(sftp, name, sha256)
                return self._stored(name, sftp.stat(final), sha256)

        return self._retrying(f"upload of {name}", attempt)

    def _upload(
        self, sftp: paramiko.SFTPClient, source: Path, final: str, progress: Progress | None, sent: dict[str, Any],
        verify_progress: Progress | None = None,
    ) -> tuple[int, str]:
        """Upload to a temporary name, verify by re-reading, rename; ``sent`` records size and hash before the
        rename, so that a retry after a connection lost during the rename recognises the finished file."""
        tmp = posixpath.join(self.path, f".{posixpath.basename(final)}.{secrets.token_hex(6)}.part")
        digest = hashlib.sha256()
        done = 0
        try:
            with open(source, "rb") as src:
                total = os.fstat(src.fileno()).st_size
                # Unbuffered + pipelined: every block is on its way when write() returns, acknowledged by close().
                with sftp.open(tmp, "wbx", bufsize=0) as out:
                    sftp.chmod(tmp, FILE_MODE)  # before any byte is written
                    out.set_pipelined(True)
                    while block := src.read(CHUNK):
                        out.write(block)
                        digest.update(block)
                        done += len(block)
                        if progress is not None:
                            progress(done, total)
            sha256 = digest.hexdigest()
            if done != total:
                raise TargetError(
                    f"{source} changed while it was uploaded ({done} bytes read, {total} expected); "
                    "nothing was stored — run the backup again"
                )
            stored_size, stored_sha = self._remote_hash(sftp, tmp, verify_progress)
            if (stored_size, stored_sha) != (done, sha256):
                raise TargetError(
                    f"target {self.name!r}: the uploaded copy of {posixpath.basename(final)} differs from its source "
                    f"(size {stored_size}/{done}, sha256 {stored_sha[:12]}/{sha256[:12]}); nothing was stored. "
                    "Check the server's disk, then run the backup again"
                )
            sent.update(size=done, sha256=sha256)
            try:
                sftp.rename(tmp, final)
            except OSError as exc:
                if self._stat(sftp, final) is not None:
                    raise BackupExistsError(
                        f"{posixpath.basename(final)} appeared on target {self.name!r} during the upload; "
                        "it was not overwritten"
                    ) from None
                raise TargetError(f"target {self.name!r}: cannot rename the upload into place: {exc}") from exc
        except BaseException:
            self._remove_quietly(sftp, tmp)
            raise
        return done, sha256

    def _stored(self, name: str, attrs: paramiko.SFTPAttributes, sha256: str | None) -> StoredFile:
        return StoredFile(
            name=name,
            size=attrs.st_size or 0,
            modified=datetime.fromtimestamp(attrs.st_mtime or 0, tz=UTC),
            sha256=sha256,
        )

    def list(self) -> list[StoredFile]:
        def attempt(n: int) -> list[StoredFile]:
            with self._session() as sftp:
                try:
                    entries = sftp.listdir_attr(self.path)
                except FileNotFoundError:
                    return []
                names = {e.filename for e in entries}
                files = [
                    self._stored(e.filename, e,
                                 self._read_sidecar(sftp, e.filename) if sidecar_name(e.filename) in names else None)
                    for e in entries
                    if is_listed_name(e.filename) and stat.S_ISREG(e.st_mode or 0)
                ]
            return sorted(files, key=lambda f: (f.created_at, f.name), reverse=True)

        return self._retrying("listing", attempt)

    def open(self, name: str) -> BinaryIO:
        return io.BufferedReader(self._open_reader(name, READ_WINDOW), buffer_size=CHUNK)

    def open_ranged(self, name: str) -> BinaryIO:
        """A seekable reader that fetches only the regions read (8 KiB after each seek, growing while reading
        on): what reading a backup's metadata needs, without downloading the file."""
        return self._open_reader(name, RANGED_WINDOW)

    def _open_reader(self, name: str, window: int) -> _RemoteReader:
        """A reader of ``name`` on its own connection (closed with the reader), opened with retries."""
        remote = self._remote(name)

        def attempt(n: int) -> _RemoteReader:
            client = self._client()
            try:
                sftp = client.open_sftp()
                sftp.get_channel().settimeout(self.timeout)
                handle = sftp.open(remote, "rb")
            except FileNotFoundError:
                client.close()
                raise StoredFileMissingError(f"target {self.name!r} has no file {name!r}") from None
            except BaseException:
                client.close()
                raise
            return _RemoteReader(handle, on_close=client.close, what=f"{name} on {self.url}", window=window)

        return self._retrying(f"opening {name}", attempt)

    def fetch(self, name: str, local_path: Path) -> Path:
        remote = self._remote(name)
        dest = Path(local_path)

        def attempt(n: int) -> Path:
            with self._session() as sftp:
                expected = self._read_sidecar(sftp, name)
                try:
                    handle = sftp.open(remote, "rb")
                except FileNotFoundError:
                    raise StoredFileMissingError(f"target {self.name!r} has no file {name!r}") from None
                with _RemoteReader(handle, on_close=None, what=f"{name} on {self.url}") as reader:
                    receive_file(reader, dest, expected_sha256=expected, what=f"{name} on target {self.name!r}")
            return dest

        return self._retrying(f"download of {name}", attempt)

    def verify(self, name: str) -> StoredFile:
        """Re-read the stored file and check it against its sidecar; TargetError when they differ."""
        remote = self._remote(name)

        def attempt(n: int) -> StoredFile:
            with self._session() as sftp:
                attrs = self._stat(sftp, remote)
                if attrs is None:
                    raise StoredFileMissingError(f"target {self.name!r} has no file {name!r}")
                expected = self._read_sidecar(sftp, name)
                size, sha256 = self._remote_hash(sftp, remote)
                return _checked(self.name, name, expected, sha256, self._stored(name, attrs, sha256))

        return self._retrying(f"verification of {name}", attempt)

    def delete(self, name: str) -> None:
        remote = self._remote(name)

        def attempt(n: int) -> None:
            with self._session() as sftp:
                try:
                    sftp.remove(remote)
                except FileNotFoundError:
                    if n == 0:
                        raise StoredFileMissingError(f"target {self.name!r} has no file {name!r}") from None
                    # else: our first attempt removed it before the connection dropped
                try:
                    sftp.remove(posixpath.join(self.path, sidecar_name(name)))
                except FileNotFoundError:
                    pass

        self._retrying(f"deletion of {name}", attempt)

    def exists(self, name: str) -> bool:
        remote = self._remote(name)

        def attempt(n: int) -> bool:
            with self._session() as sftp:
                attrs = self._stat(sftp, remote)
                return attrs is not None and stat.S_ISREG(attrs.st_mode or 0)

        return self._retrying(f"checking {name}", attempt)

    def local_path(self, name: str) -> Path | None:
        return None


def _checked(target: str, name: str, expected: str | None, actual: str, stored: StoredFile) -> StoredFile:
    if expected is None:
        raise TargetError(f"target {target!r}: {name} has no readable .sha256 sidecar to verify against")
    if expected != actual:
        raise TargetError(
            f"target {target!r}: {name} does not match its recorded sha256 (stored {actual[:12]}…, expected "
            f"{expected[:12]}…); that copy is damaged — use another copy, or try `dbs_validate` to heal it"
        )
    return stored


class _RemoteReader(SeekableReader):
    """A seekable, read-only view of a remote file that reads ahead in bounded, pipelined windows.

    Why not paramiko's ``prefetch``: it requests the whole file and keeps
    every answer in memory until read, so a slow consumer of a large file
    would need the file's size in RAM. Here at most ``READ_WINDOW`` bytes are
    requested or held at a time.
    """

    fetched_total = 0  # bytes requested from any SFTP server by any reader in this process (for tests and logs)

    def __init__(self, handle: paramiko.SFTPFile, on_close: Callable[[], None] | None, what: str,
                 window: int = READ_WINDOW) -> None:
        super().__init__(handle.stat().st_size or 0)
        self._handle = handle
        self._what = what
        self._on_close = on_close
        self._buffer = b""
        self._buffer_start = 0
        self._first_window = self._window = window
        self.fetched = 0

    def _fill(self, wanted: int = 0) -> None:
        # Reading on from where the last window ended doubles the window (a stream); a seek elsewhere starts
        # again from the first window (a ranged reader reads small regions at scattered places).
        sequential = bool(self._buffer) and self._pos == self._buffer_start + len(self._buffer)
        self._window = min(READ_WINDOW, self._window * 2) if sequential else self._first_window
        length = min(max(self._window, wanted), READ_WINDOW, self.size - self._pos)
        try:
            self._buffer = b"".join(self._handle.readv([(self._pos, length)])) if length > 0 else b""
        except Exception as exc:
            if not (_is_transport_error(exc) or isinstance(exc, (OSError, paramiko.SFTPError))):
                raise
            raise RemoteReadError(
                f"reading {self._what} failed at byte {self._pos} ({type(exc).__name__}: {exc}); try again",
                transient=_is_transport_error(exc) or _channel_lost(self._handle.sftp),
            ) from exc
        self._buffer_start = self._pos
        self.fetched += len(self._buffer)
        _RemoteReader.fetched_total += len(self._buffer)

    def readinto(self, b: Any) -> int:
        view = memoryview(b).cast("B")
        if self._pos >= self.size or not len(view):
            return 0
        offset = self._pos - self._buffer_start
        if not (0 <= offset < len(self._buffer)):
            self._fill(len(view))
            offset = 0
            if not self._buffer:
                return 0
        count = min(len(view), len(self._buffer) - offset)
        view[:count] = self._buffer[offset : offset + count]
        self._pos += count
        return count

    def close(self) -> None:
        if self.closed:
            return
        try:
            self._handle.close()
        except Exception:  # noqa: BLE001 - the connection may already be gone; closing must not raise
            pass
        finally:
            self._buffer = b""
            if self._on_close is not None:
                self._on_close()
            super().close()

