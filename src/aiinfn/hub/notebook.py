#!/usr/bin/env python3
"""aiinfn-token: the user's short-lived IAM access token, and S3 credentials from it (in notebooks).

    aiinfn-token                 print the current IAM access token (from the hub's aiinfn-tokens service)
    aiinfn-token --json          the service's answer: access_token, expires_at, user
    aiinfn-token s3-credentials  AWS SDK credential_process output: STS AssumeRoleWithWebIdentity at the
                                 site's S3 endpoint with that token (boto3, the aws CLI and rclone read
                                 it through AWS_CONFIG_FILE, which names this command)

Everything comes from the notebook's environment, as data: JUPYTERHUB_API_TOKEN (the server's own hub
token), AIINFN_TOKEN_URL (the service), AWS_ENDPOINT_URL (S3 and STS), AIINFN_S3_ROLE (the role to
assume; unset for MinIO's claim-based policies), AIINFN_S3_SESSION_SECONDS. Standard library only.
Errors: one line on stderr, exit code 1.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from typing import Any

TIMEOUT = 20


class Failure(Exception):
    pass


def _env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise Failure(f"{name} is not set (is this a notebook of the platform?)")
    return value


def access_token() -> dict[str, Any]:
    req = urllib.request.Request(
        _env("AIINFN_TOKEN_URL"), headers={"Authorization": f"token {_env('JUPYTERHUB_API_TOKEN')}"}
    )
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
            answer: dict[str, Any] = json.loads(resp.read())
    except urllib.error.HTTPError as e:
        try:
            reason = json.loads(e.read()).get("error", e.reason)
        except ValueError:
            reason = e.reason
        raise Failure(f"aiinfn-tokens refused ({e.code}): {reason}") from None
    except (urllib.error.URLError, OSError) as e:
        raise Failure(f"aiinfn-tokens unreachable at {os.environ.get('AIINFN_TOKEN_URL')}: {e}") from None
    if not answer.get("access_token"):
        raise Failure("aiinfn-tokens gave no access token")
    return answer


def role_arn(role: str) -> str:
    return role if role.startswith("arn:") else f"arn:aws:iam:::role/{role}"


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def s3_credentials() -> dict[str, Any]:
    token = access_token()
    form = {
        "Action": "AssumeRoleWithWebIdentity",
        "Version": "2011-06-15",
        "WebIdentityToken": token["access_token"],
        "RoleSessionName": str(token.get("user") or "notebook")[:64],
        "DurationSeconds": os.environ.get("AIINFN_S3_SESSION_SECONDS", "3600"),
    }
    role = os.environ.get("AIINFN_S3_ROLE")
    if role:
        form["RoleArn"] = role_arn(role)
    body = urllib.parse.urlencode(form).encode()
    req = urllib.request.Request(
        _env("AWS_ENDPOINT_URL"), data=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
            doc = ET.fromstring(resp.read())
    except urllib.error.HTTPError as e:
        where = os.environ.get("AWS_ENDPOINT_URL")
        raise Failure(f"STS at {where} refused ({e.code}): {_sts_error(e.read())}") from None
    except (urllib.error.URLError, OSError, ET.ParseError) as e:
        raise Failure(f"STS at {os.environ.get('AWS_ENDPOINT_URL')} failed: {e}") from None
    creds = next((el for el in doc.iter() if _local(el.tag) == "Credentials"), None)
    if creds is None:
        raise Failure("STS answered without credentials")
    fields = {_local(el.tag): (el.text or "") for el in creds}
    missing = {"AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration"} - set(fields)
    if missing:
        raise Failure(f"STS credentials lack {sorted(missing)}")
    return {
        "Version": 1,
        "AccessKeyId": fields["AccessKeyId"],
        "SecretAccessKey": fields["SecretAccessKey"],
        "SessionToken": fields["SessionToken"],
        "Expiration": fields["Expiration"],
    }


def _sts_error(body: bytes) -> str:
    try:
        doc = ET.fromstring(body)
    except ET.ParseError:
        return body[:200].decode(errors="replace")
    msgs = [el.text or "" for el in doc.iter() if _local(el.tag) in ("Code", "Message")]
    return ": ".join(m for m in msgs if m) or "no reason given"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        if args == ["s3-credentials"]:
            print(json.dumps(s3_credentials()))
        elif args == ["--json"]:
            print(json.dumps(access_token()))
        elif not args:
            print(access_token()["access_token"])
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except Failure as e:
        print(f"aiinfn-token: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
