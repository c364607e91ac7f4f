"""One runner per results prefix in a bucket: a lock object created conditionally, held by a lease.

Object storage has no ``flock`` that dies with its holder, so the lock is an object,
``<prefix>/.fspbench.lock``, created only if none exists (S3's ``PUT`` with ``If-None-Match: *``: of
two runners that create it at once, exactly one succeeds). Its holder renews it every third of the
lease (``FSPBENCH_LEASE_S``, default 60 s) from a thread; a runner that crashed stops renewing, so its
lease expires and the next runner takes the lock over. Expiry is judged on the server's clock alone
(the object's Last-Modified against the response's Date), so the machines' clocks need not agree.

Taking over and renewing are conditional writes too: ``PUT`` with ``If-Match`` on the ETag the writer
last saw, so the object is replaced only if nobody wrote it since. Of two runners that take over the
same expired lease at once, exactly one overwrite succeeds; the other gets 412 Precondition Failed, looks
again and finds a live lease (refused like any second runner). A holder whose lease was taken over
cannot renew over the new holder's object.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any

from fspbench.errors import BadInput
from fspbench.store import ObjectPath, s3_client

LOCK_NAME = ".fspbench.lock"
LEASE_ENV = "FSPBENCH_LEASE_S"
DEFAULT_LEASE_S = 60.0
# the codes an S3 server answers a conditional write with when its condition fails (If-None-Match: the
# object exists; If-Match: it changed) or a concurrent write to the key conflicts
EXISTS = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}
# the codes of an object that is not there (a read, or an If-Match write of a deleted object)
GONE = {"NoSuchKey", "404"}


@dataclass(frozen=True)
class Holder:
    """The lock object as found: who holds it and whether the lease has run out."""

    text: str  # "pid N on HOST since T"
    token: str
    etag: str  # the version read: a takeover overwrites only this one (If-Match)
    expired: bool
    age_s: float  # seconds since its holder last renewed it, by the server's clock
    lease_s: float


def _code(err: Exception) -> str:
    return str(getattr(err, "response", {}).get("Error", {}).get("Code", ""))


class ObjectLock:
    """The lease-held lock object of one results prefix; the same interface as lock.ResultsLock."""

    def __init__(self, root: ObjectPath, lease_s: float | None = None) -> None:
        self.root = root
        self.obj = root / LOCK_NAME
        self.lease_s = lease_s if lease_s is not None else float(os.environ.get(LEASE_ENV, DEFAULT_LEASE_S))
        self._token = uuid.uuid4().hex
        self._since = datetime.now(UTC).isoformat(timespec="seconds")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._etag = ""  # the ETag of our last write of the lock object: renewal overwrites only that

    @property
    def held(self) -> bool:
        return self._thread is not None

    def _body(self) -> bytes:
        return json.dumps({"holder": f"pid {os.getpid()} on {socket.gethostname()} since {self._since}",
                           "token": self._token, "lease_s": self.lease_s}).encode()

    def acquire(self) -> None:
        """Create the lock object, or take over one whose lease expired; BadInput at once if it is held."""
        if self.held:
            return
        client = s3_client()
        for _ in range(3):  # a lock deleted or taken over between our requests: look again
            if self._put(client, IfNoneMatch="*"):
                self._start()
                return
            holder = self._holder(client)
            if holder is None:
                continue
            if not holder.expired:
                raise BadInput(
                    f"{self.root}: in use by another fspbench run ({holder.text}; lease renewed {holder.age_s:.0f} s "
                    f"ago, expires after {holder.lease_s:.0f} s without renewal); wait for it to end or pass "
                    "another --results")
            print(f"[fspbench] {self.root}: the lease of {holder.text} expired {holder.age_s - holder.lease_s:.0f} s "
                  "ago (its runner stopped renewing it); taking the lock over", flush=True)
            # overwrite exactly the expired version: a plain delete then create would let two runners that
            # both saw it expired each delete the other's fresh lock and both hold it
            if self._put(client, IfMatch=holder.etag):
                self._start()
                return
        raise BadInput(f"{self.root}: the lock object {self.obj} keeps changing; another runner is starting, "
                       "try again")

    def _put(self, client: Any, **condition: str) -> bool:
        """Write our lock object under ``condition`` (IfNoneMatch or IfMatch); False when the condition failed
        (the object exists, or it changed or is gone since the version named), OSError for any other refusal."""
        try:
            got = client.put_object(Bucket=self.obj.bucket, Key=self.obj.key, Body=self._body(), **condition)
        except Exception as err:
            if _code(err) in EXISTS or (_code(err) in GONE and "IfMatch" in condition):
                return False
            raise OSError(f"{self.obj}: cannot write the lock object ({_code(err) or err})") from err
        self._etag = str(got.get("ETag", ""))
        return True

    def _start(self) -> None:
        """The lock is ours: renew its lease from a thread until released."""
        self._thread = threading.Thread(target=self._renew, name="fspbench-lease", daemon=True)
        self._thread.start()

    def _holder(self, client: Any) -> Holder | None:
        """The lock object's holder and lease, or None when it is gone."""
        try:
            got = client.get_object(Bucket=self.obj.bucket, Key=self.obj.key)
        except Exception as err:
            if _code(err) in GONE:
                return None
            raise OSError(f"{self.obj}: cannot read the lock object ({_code(err) or err})") from err
        try:
            body = json.loads(got["Body"].read())
            text, token, lease = str(body["holder"]), str(body["token"]), float(body["lease_s"])
        except (ValueError, KeyError, TypeError):  # not ours, or damaged: it counts as held for one lease
            text, token, lease = "an unreadable lock object", "", DEFAULT_LEASE_S
        date = got.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
        server_now = parsedate_to_datetime(date) if date else datetime.now(UTC)
        age = (server_now - got["LastModified"]).total_seconds()
        return Holder(text, token, str(got.get("ETag", "")), age > lease, age, lease)

    def _renew(self) -> None:
        """Rewrite the lock object every third of the lease while it is still ours (a new Last-Modified): only
        over our own last write (If-Match), so a holder whose lease was taken over never overwrites the new
        holder's lock."""
        client = s3_client()
        while not self._stop.wait(self.lease_s / 3):
            try:
                if not self._put(client, IfMatch=self._etag) and not self._still_ours(client):
                    print(f"[fspbench] warning: {self.root}: the lock was taken over by another runner (this one "
                          f"did not renew it within {self.lease_s:.0f} s); two runners may now write here",
                          file=sys.stderr, flush=True)
                    return
            except Exception as err:  # noqa: BLE001 - a failed renewal is retried at the next beat
                print(f"[fspbench] warning: {self.root}: could not renew the lock's lease ({err})", file=sys.stderr,
                      flush=True)

    def _still_ours(self, client: Any) -> bool:
        """After a refused renewal: whether the lock object still carries our token (a renewal the server
        applied but whose answer was lost, a conflict with a concurrent request), so the next beat renews
        over the version read."""
        holder = self._holder(client)
        if holder is None or holder.token != self._token:
            return False
        self._etag = holder.etag
        return True

    def acquire_if_exists(self) -> None:
        """Take the lock now if the prefix holds objects (refuse a second runner before any slow work)."""
        if self.root.exists():
            self.acquire()

    def release(self) -> None:
        """Stop renewing and delete the lock object if it is still ours."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None
        try:
            client = s3_client()
            holder = self._holder(client)
            if holder is not None and holder.token == self._token:
                client.delete_object(Bucket=self.obj.bucket, Key=self.obj.key)
        except Exception as err:  # noqa: BLE001 - the lease then expires by itself
            print(f"[fspbench] warning: {self.root}: could not delete the lock object ({err}); its lease "
                  f"expires within {self.lease_s:.0f} s", file=sys.stderr, flush=True)

    def __enter__(self) -> ObjectLock:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
