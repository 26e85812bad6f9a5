"""An S3 STS stand-in: AssumeRoleWithWebIdentity as RadosGW and MinIO serve it at the S3 endpoint.

It checks the web identity token against the IAM stand-in's ``/userinfo`` (as those servers check it
with the identity provider), records every request's form (``requests``) and answers in the AWS STS
query format (``AssumeRoleWithWebIdentityResponse``; botocore's own parser reads it in the tests).
Gap: no object storage behind it; the credentials it issues are random and expire after the
requested duration.
"""

from __future__ import annotations

import datetime as dt
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

import requests
import werkzeug.serving
from werkzeug.wrappers import Request, Response

NS = "https://sts.amazonaws.com/doc/2011-06-15/"


@dataclass
class Sts:
    iam_url: str
    url: str = ""
    requests: list[dict[str, str]] = field(default_factory=list)
    issued: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, environ: Any, start_response: Any) -> Any:
        req = Request(environ)
        form = {k: v[0] for k, v in parse_qs(req.get_data(as_text=True)).items()}
        self.requests.append(form)
        if form.get("Action") != "AssumeRoleWithWebIdentity":
            return self._error(400, "InvalidAction", "only AssumeRoleWithWebIdentity")(environ, start_response)
        who = requests.get(f"{self.iam_url}/userinfo", timeout=10,
                           headers={"Authorization": f"Bearer {form.get('WebIdentityToken', '')}"})
        if who.status_code != 200:
            return self._error(400, "InvalidIdentityToken", "token refused by the identity provider")(
                environ, start_response)
        seconds = int(form.get("DurationSeconds", "3600"))
        expires = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")
        creds = {"AccessKeyId": "ASIA" + secrets.token_hex(8).upper(), "SecretAccessKey": secrets.token_urlsafe(30),
                 "SessionToken": secrets.token_urlsafe(60), "Expiration": expires, "sub": who.json()["sub"],
                 "RoleArn": form.get("RoleArn")}
        self.issued.append(creds)
        body = (
            f'<AssumeRoleWithWebIdentityResponse xmlns="{NS}"><AssumeRoleWithWebIdentityResult>'
            f"<SubjectFromWebIdentityToken>{escape(creds['sub'])}</SubjectFromWebIdentityToken>"
            f"<Credentials><AccessKeyId>{creds['AccessKeyId']}</AccessKeyId>"
            f"<SecretAccessKey>{escape(creds['SecretAccessKey'])}</SecretAccessKey>"
            f"<SessionToken>{escape(creds['SessionToken'])}</SessionToken>"
            f"<Expiration>{expires}</Expiration></Credentials>"
            "</AssumeRoleWithWebIdentityResult><ResponseMetadata><RequestId>"
            f"{secrets.token_hex(8)}</RequestId></ResponseMetadata></AssumeRoleWithWebIdentityResponse>"
        )
        return Response(body, content_type="text/xml")(environ, start_response)

    @staticmethod
    def _error(status: int, code: str, message: str) -> Response:
        body = (f'<ErrorResponse xmlns="{NS}"><Error><Type>Sender</Type><Code>{code}</Code>'
                f"<Message>{escape(message)}</Message></Error></ErrorResponse>")
        return Response(body, status=status, content_type="text/xml")


@contextmanager
def running_sts(iam_url: str) -> Iterator[Sts]:
    sts = Sts(iam_url)
    server = werkzeug.serving.make_server("127.0.0.1", 0, sts, threaded=True)
    sts.url = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield sts
    finally:
        server.shutdown()
        thread.join(timeout=10)
