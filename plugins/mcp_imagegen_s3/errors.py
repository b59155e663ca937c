"""How S3 failures become the storage's errors: codes, transports, messages."""

from __future__ import annotations

from mcp_imagegen import ConfigurationError, StorageError

#: Error codes S3 servers use for "no such object" (HEAD answers carry no body).
NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
CREDENTIAL_CODES = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AccessDenied",
        "InvalidToken",
        "ExpiredToken",
        "TokenRefreshRequired",
        "AuthorizationHeaderMalformed",
        "403",
    }
)
#: Codes from servers whose DeleteObjects differs from AWS's (checksum headers).
BATCH_DELETE_UNSUPPORTED = frozenset(
    {
        "NotImplemented",
        "MissingContentMD5",
        "InvalidDigest",
        "BadDigest",
        "InvalidRequest",
    }
)
_CREDENTIAL_KEYS = (
    "storage.s3.access_key_id and secret_access_key "
    "(MCP_IMAGEGEN_STORAGE__S3__ACCESS_KEY_ID / ..._SECRET_ACCESS_KEY)"
)


def error_code(exc: BaseException) -> str:
    """The S3 error code of an answer, else the exception's type name."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        if code:
            return str(code)
    return type(exc).__name__


def is_transport_error(exc: BaseException) -> bool:
    """True for failures of the connection itself rather than an S3 answer."""
    from aiohttp import ClientError as AiohttpClientError
    from botocore.exceptions import BotoCoreError

    return isinstance(exc, BotoCoreError | AiohttpClientError | OSError | TimeoutError)


def is_s3_answer(exc: BaseException) -> bool:
    """True when the server answered with an S3 error."""
    from botocore.exceptions import ClientError

    return isinstance(exc, ClientError)


def start_error(exc: Exception, code: str, bucket: str, action: str) -> Exception:
    """The error to raise when ``start`` fails to ``action`` ``bucket``.

    Args:
        exc: What the S3 call raised.
        code: Its S3 error code (:func:`error_code`).
        bucket: "S3 bucket '<name>' at <endpoint>", the endpoint redacted.
        action: What start asked of the bucket ("list", "create the bucket").

    Returns:
        A :class:`ConfigurationError` for what settings can fix, a
        :class:`StorageError` for an unreachable endpoint, else ``exc`` itself.
    """
    from botocore.exceptions import NoCredentialsError, PartialCredentialsError

    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return ConfigurationError(
            f"No AWS credentials found for {bucket} ({code}). Set {_CREDENTIAL_KEYS}, "
            "or configure the AWS credential chain (AWS_PROFILE, web identity, "
            "instance role, ...)."
        )
    if code == "NoSuchBucket":
        return ConfigurationError(
            f"{bucket} does not exist (NoSuchBucket). Create it, or set "
            "storage.s3.create_bucket = true."
        )
    if code in CREDENTIAL_CODES:
        return ConfigurationError(
            f"{bucket} refused the credentials ({code}) when asked to {action}. "
            f"Check {_CREDENTIAL_KEYS} or the AWS credential chain, and that they may "
            "list, read and write the bucket."
        )
    if is_s3_answer(exc):
        return ConfigurationError(f"{bucket} answered {code} when asked to {action}.")
    if is_transport_error(exc):
        return StorageError(
            f"{bucket} is unreachable ({code}). Check storage.s3.endpoint_url "
            "and that the server is running."
        )
    return exc


def request_error(
    exc: BaseException, code: str, action: str, where: str
) -> StorageError:
    """The :class:`StorageError` for a failed S3 call on ``where`` (key and bucket)."""
    if code == "NoSuchBucket":
        detail = "the bucket no longer exists"
    elif is_s3_answer(exc):
        detail = "the server answered with this error"
    else:
        detail = "the endpoint could not be reached, or the connection broke"
    return StorageError(f"Could not {action} {where}: {code} ({detail}).")
