"""AWS Signature Version 4 request signing for Amazon Bedrock, done by botocore.

The algorithm is AWS's "Signature Version 4 signing process":
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html
botocore's `SigV4Auth` computes it (canonical request, string to sign, derived key); this module
only feeds it a request and hands back the headers to send. Bedrock runtime signs with the
service name "bedrock" (botocore's `bedrock-runtime` service model, `signingName`).

botocore is imported when the first signer is built, so importing this module stays cheap.

What is signed: the method, the URL's path (as given: percent-escapes in it are escaped again,
as AWS expects for every service but S3, so send exactly the URL you signed), its query, every
header passed in (botocore skips hop-by-hop ones and User-Agent) plus Host, derived from the
URL, which the HTTP client must send unchanged (aiohttp and urllib do), and the SHA-256 of the
body. Each call stamps the current time (X-Amz-Date); AWS rejects a signature more than
15 minutes old, so sign right before sending, and again on a retry.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from typing_extensions import override

DEFAULT_REGION = "us-east-1"
DEFAULT_SERVICE = "bedrock"


class SigV4Signer:
    """Signs requests with one set of AWS credentials for one region and service."""

    def __init__(
        self,
        access_key: str,
        secret_key: str,
        session_token: str | None,
        region: str,
        service: str = DEFAULT_SERVICE,
    ) -> None:
        # Messages name the missing part, never a value.
        missing = [
            name
            for name, value in (
                ("access key id", access_key),
                ("secret access key", secret_key),
                ("region", region),
                ("service", service),
            )
            if not value
        ]
        if missing:
            raise ValueError(f"AWS SigV4 signer: missing {', '.join(missing)}")
        from botocore.auth import SigV4Auth  # type: ignore[import-untyped]
        from botocore.credentials import Credentials  # type: ignore[import-untyped]

        self.region = region
        self.service = service
        self._access_key = access_key
        self._has_token = bool(session_token)
        credentials = Credentials(access_key, secret_key, session_token or None)
        self._auth: Any = SigV4Auth(credentials, service, region)

    def sign(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes
    ) -> dict[str, str]:
        """The headers to send: `headers` plus Authorization, X-Amz-Date and, with a session
        token, X-Amz-Security-Token (any stale copies of those in `headers` are replaced)."""
        from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped]

        request = AWSRequest(method=method.upper(), url=url, headers=dict(headers), data=body)
        self._auth.add_auth(request)
        return {str(k): str(v) for k, v in request.headers.items()}

    @override
    def __repr__(self) -> str:
        token = ", session_token=<set>" if self._has_token else ""
        return (
            f"SigV4Signer(access_key={_mask(self._access_key)!r}, secret_key=<hidden>{token}, "
            f"region={self.region!r}, service={self.service!r})"
        )


def from_env(env: Mapping[str, str], region: str | None) -> SigV4Signer | None:
    """A signer from the standard AWS environment variables, or None when AWS_ACCESS_KEY_ID or
    AWS_SECRET_ACCESS_KEY is unset or empty.

    The region is `region` if given, else AWS_REGION, else AWS_DEFAULT_REGION, else us-east-1.
    AWS_SESSION_TOKEN (temporary credentials from STS) is sent as X-Amz-Security-Token.
    """
    access_key = env.get("AWS_ACCESS_KEY_ID", "").strip()
    secret_key = env.get("AWS_SECRET_ACCESS_KEY", "").strip()
    if not access_key or not secret_key:
        return None
    token = env.get("AWS_SESSION_TOKEN", "").strip() or None
    chosen = (
        region
        or env.get("AWS_REGION", "").strip()
        or env.get("AWS_DEFAULT_REGION", "").strip()
        or DEFAULT_REGION
    )
    return SigV4Signer(access_key, secret_key, token, chosen)


def _mask(access_key: str) -> str:
    """The access key id's first four characters (its kind: AKIA long-term, ASIA temporary)."""
    return access_key[:4] + "****"
