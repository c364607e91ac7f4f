"""Where results live: a local folder (``pathlib.Path``) or a prefix in an S3 bucket (``ObjectPath``).

``location("s3://bucket/prefix")`` is an ObjectPath over ``pyarrow.fs.S3FileSystem``, the file system
Ray Tune writes its own storage with; any other ``scheme://`` is refused; anything else is a Path.
ObjectPath offers the part of Path's interface the results store uses (``/``, ``name``, ``exists``,
``read_bytes``, ...), so fspbench.results reads and writes both through the same code.

Object storage has no rename, so an object is written by one upload of its full bytes: S3 makes an
object visible only once its upload completes, hence a reader sees the whole object or none (the
same guarantee as the local temp-file-and-rename of fspbench.io). Write failures raise OSError.

Endpoint and credentials come from the standard AWS variables: AWS_ENDPOINT_URL (an S3-compatible
server; unset: AWS itself), AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN and
AWS_DEFAULT_REGION (default us-east-1).
"""

from __future__ import annotations

import fnmatch
import functools
import os
import posixpath
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fspbench.errors import BadInput

if TYPE_CHECKING:
    from pyarrow.fs import S3FileSystem

SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
# the variables that say where the bucket is and who asks; a trial on another node needs them too
AWS_ENV = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
           "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION", "AWS_REGION")
# fail within seconds when the endpoint does not answer, rather than after the SDK's long retries
CONNECT_TIMEOUT_S = 5.0
REQUEST_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class ObjectPath:
    """An object (or a prefix of objects) in an S3 bucket: ``s3://bucket/key``. Immutable and picklable,
    so it travels to Ray trials; the file system is made from the AWS variables of the process that uses it."""

    bucket: str
    key: str = ""  # no leading or trailing slash; "" is the bucket's root

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}" if self.key else f"s3://{self.bucket}"

    def __truediv__(self, other: str) -> ObjectPath:
        # normpath: records name their checkpoint as "../checkpoints/<id>.pt", relative to runs/
        key = posixpath.normpath(posixpath.join(self.key, str(other))).lstrip("/")
        return ObjectPath(self.bucket, "" if key == "." else key)

    @property
    def name(self) -> str:
        return posixpath.basename(self.key)

    @property
    def stem(self) -> str:
        return posixpath.splitext(self.name)[0]

    @property
    def suffix(self) -> str:
        return posixpath.splitext(self.name)[1]

    @property
    def parent(self) -> ObjectPath:
        return ObjectPath(self.bucket, posixpath.dirname(self.key))

    @property
    def fs_path(self) -> str:
        """The path as pyarrow's S3FileSystem names it: bucket/key."""
        return f"{self.bucket}/{self.key}" if self.key else self.bucket

    def resolve(self) -> ObjectPath:
        return self

    def absolute(self) -> ObjectPath:
        return self

    def _info(self) -> Any:
        return s3_filesystem().get_file_info(self.fs_path)

    def exists(self) -> bool:
        """An object at this key, or objects under it (a prefix in use)."""
        from pyarrow.fs import FileType

        return bool(self._info().type != FileType.NotFound)

    def is_file(self) -> bool:
        from pyarrow.fs import FileType

        return bool(self._info().type == FileType.File)

    def is_dir(self) -> bool:
        from pyarrow.fs import FileType

        return bool(self._info().type == FileType.Directory)

    def read_bytes(self) -> bytes:
        """The object's bytes; FileNotFoundError when there is none."""
        with s3_filesystem().open_input_stream(self.fs_path) as fh:
            return bytes(fh.read())

    def read_text(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return self.read_bytes().decode(encoding, errors)

    def write_bytes(self, data: bytes) -> None:
        """One upload of the full bytes: the object appears whole when it completes, or not at all."""
        with s3_filesystem().open_output_stream(self.fs_path) as fh:
            fh.write(data)

    def unlink(self, missing_ok: bool = False) -> None:
        try:
            s3_filesystem().delete_file(self.fs_path)
        except FileNotFoundError:
            if not missing_ok:
                raise

    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        """Nothing to do: a prefix exists as soon as an object under it does."""

    def objects(self) -> list[ObjectPath]:
        """Every object under this prefix, at any depth, in key order."""
        from pyarrow.fs import FileSelector, FileType

        infos = s3_filesystem().get_file_info(FileSelector(self.fs_path, recursive=True, allow_not_found=True))
        return sorted(ObjectPath(self.bucket, i.path.partition("/")[2]) for i in infos if i.type == FileType.File)

    def listing(self) -> dict[str, Listed]:
        """Every object under this prefix by its key relative to the prefix, with its size and ETag, from one
        listing (ListObjectsV2, a request per 1,000 objects): what a sync compares with before it uploads.
        OSError when the bucket cannot be listed."""
        prefix = self.key + "/" if self.key else ""
        found: dict[str, Listed] = {}
        try:
            for page in s3_client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                found |= {o["Key"][len(prefix):]: Listed(int(o["Size"]), str(o.get("ETag", "")).strip('"'))
                          for o in page.get("Contents", [])}
        except Exception as err:  # botocore's errors are no OSError; the results store raises OSError
            code = getattr(err, "response", {}).get("Error", {}).get("Code", "") or type(err).__name__
            raise OSError(f"cannot list {self}: {code}") from err
        return found

    def glob(self, pattern: str) -> list[ObjectPath]:
        """The objects directly under this prefix whose name matches ``pattern`` (no ``**``)."""
        depth = self.key.count("/") + 1 if self.key else 0
        return [o for o in self.objects() if o.key.count("/") == depth and fnmatch.fnmatch(o.name, pattern)]

    def __lt__(self, other: ObjectPath) -> bool:
        return (self.bucket, self.key) < (other.bucket, other.key)


@dataclass(frozen=True)
class Listed:
    """An object as a bucket listing shows it."""

    size: int  # bytes
    etag: str  # unquoted; derived from the bytes' MD5 unless the object is encrypted with SSE-KMS or SSE-C


Location = Path | ObjectPath


def location(value: str | os.PathLike[str] | ObjectPath, what: str = "--results") -> Location:
    """``value`` as a results location: s3://bucket/prefix, or a local folder. Any other URI is BadInput
    rather than a folder named after its scheme."""
    if isinstance(value, ObjectPath | Path):
        return value
    text = os.fspath(value)
    scheme = SCHEME.match(text)
    if scheme is None:
        return Path(text)
    if scheme.group(1).lower() != "s3":
        raise BadInput(f"{what} {text}: {scheme.group(1)}:// is not supported yet; use s3:// or a folder")
    bucket, _, key = text[scheme.end():].partition("/")
    if not bucket:
        raise BadInput(f"{what} {text}: no bucket; expected s3://BUCKET/PREFIX")
    problem = bucket_problem(bucket)
    if problem:
        raise BadInput(f"{what} {text}: invalid bucket name {bucket!r}: {problem}; S3 bucket names are 3-63 "
                       "lowercase letters, digits, dots and hyphens, starting and ending with a letter or digit")
    # an object key is a name, not a path: S3 keeps "." and ".." as they are, and ".." at the start would reach
    # outside the bucket's root for pyarrow, which fails only inside Ray's trials; refused before anything runs
    dots = [part for part in key.split("/") if part in (".", "..")]
    if dots:
        raise BadInput(f"{what} {text}: the prefix holds a {dots[0]!r} segment; write the prefix out in full "
                       "without '.' or '..' (e.g. s3://BUCKET/results/NAME)")
    return ObjectPath(bucket, posixpath.normpath(key).strip("/") if key.strip("/") else "")


_BUCKET_CHARS = re.compile(r"^[a-z0-9.-]+$")
_IP_ADDRESS = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")


def bucket_problem(name: str) -> str | None:
    """Why ``name`` is not a valid S3 bucket name (AWS's rules for general purpose buckets, which S3-compatible
    servers follow), or None when it is one. Checked when a location is parsed, so that a typo reads as a bad
    name rather than as "no bucket" from the server."""
    if not 3 <= len(name) <= 63:
        return f"it has {len(name)} characters"
    if not _BUCKET_CHARS.match(name):
        others = sorted({c for c in name if not (c.isupper() or _BUCKET_CHARS.match(c))})
        held = (["upper-case letters"] if any(c.isupper() for c in name) else []) + [repr(c) for c in others]
        return f"it holds {' and '.join(held)}"
    if not (name[0].isalnum() and name[-1].isalnum()):
        return "it must start and end with a lowercase letter or digit"
    if ".." in name:
        return "it holds two dots in a row"
    if _IP_ADDRESS.match(name):
        return "it is written as an IP address"
    return None


def is_remote(loc: Location | str) -> bool:
    """True for a location in a bucket (which the trials reach over the network, not through a shared folder)."""
    return isinstance(loc, ObjectPath) or (isinstance(loc, str) and loc.startswith("s3://"))


def read_bytes(loc: Location) -> bytes:
    """A file's or an object's bytes."""
    return loc.read_bytes()


def endpoint() -> str | None:
    """The S3 endpoint URL of the AWS variables; None: AWS's own."""
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


def region() -> str:
    return os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or "us-east-1"


def s3_filesystem() -> S3FileSystem:
    """pyarrow's S3FileSystem for the AWS variables of this process (one per set of variables)."""
    return _filesystem(*(os.environ.get(k) for k in AWS_ENV))


@functools.cache
def _filesystem(*env: str | None) -> S3FileSystem:
    from pyarrow.fs import AwsStandardS3RetryStrategy, S3FileSystem

    url = endpoint()
    options: dict[str, Any] = {}
    if url:
        scheme, _, host = url.partition("://")
        options = {"endpoint_override": host or scheme, "scheme": scheme if host else "https"}
    key, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if key and secret:
        options.update(access_key=key, secret_key=secret, session_token=os.environ.get("AWS_SESSION_TOKEN"))
    return S3FileSystem(region=region(), connect_timeout=CONNECT_TIMEOUT_S, request_timeout=REQUEST_TIMEOUT_S,
                        retry_strategy=AwsStandardS3RetryStrategy(max_attempts=3), **options)


# boto3's default session is not thread-safe while it makes a client, and the lease's renewal thread makes
# one while the driver may be making another (a clash raises KeyError deep inside botocore)
_CLIENT_LOCK = threading.Lock()


def s3_client() -> Any:
    """A boto3 S3 client for the same endpoint and credentials (conditional writes, listings with ETags, the
    preflight check); the client itself is thread-safe."""
    import boto3
    from botocore.config import Config

    config = Config(connect_timeout=CONNECT_TIMEOUT_S, read_timeout=REQUEST_TIMEOUT_S,
                    retries={"max_attempts": 2, "mode": "standard"})
    with _CLIENT_LOCK:
        return boto3.client("s3", endpoint_url=endpoint(), region_name=region(), config=config)


def check_bucket(loc: ObjectPath) -> None:
    """BadInput, one line naming which, unless the endpoint answers, the bucket exists and the credentials
    are accepted: checked before anything trains or is written."""
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

    where = endpoint() or "AWS S3"
    try:
        s3_client().list_objects_v2(Bucket=loc.bucket, Prefix=loc.key, MaxKeys=1)
    except EndpointConnectionError:
        raise BadInput(f"--results {loc}: the S3 endpoint {where} does not answer; check AWS_ENDPOINT_URL "
                       "and the network") from None
    except NoCredentialsError:
        raise BadInput(f"--results {loc}: no S3 credentials; set AWS_ACCESS_KEY_ID and "
                       "AWS_SECRET_ACCESS_KEY") from None
    except ClientError as err:
        code = str(err.response.get("Error", {}).get("Code", ""))
        if code in ("NoSuchBucket", "404"):
            raise BadInput(f"--results {loc}: no bucket {loc.bucket} at {where}; create it first "
                           "(fspbench never creates buckets)") from None
        raise BadInput(f"--results {loc}: {where} refused the credentials of AWS_ACCESS_KEY_ID ({code}); "
                       "check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY and the bucket's policy") from None
    except Exception as err:  # noqa: BLE001 - botocore's connection errors have several types
        raise BadInput(f"--results {loc}: the S3 endpoint {where} does not answer ({type(err).__name__}); "
                       "check AWS_ENDPOINT_URL and the network") from None


def tune_storage(loc: Location) -> dict[str, Any]:
    """Ray Tune's ``RunConfig`` storage arguments for Tune's own files at ``loc``."""
    if isinstance(loc, ObjectPath):
        return {"storage_path": loc.fs_path, "storage_filesystem": s3_filesystem()}
    return {"storage_path": str(loc.resolve())}
