"""Is every image of a description in the platform registry? Asked of Harbor's API, image by image.

``GET <api>/api/v2.0/projects/<project>/repositories/<repository>/artifacts/<tag or digest>`` (Harbor
v2.0 API; a repository name with slashes is URL-encoded twice, as Harbor wants it): 200 means the image
is there, 404 that it is not. ``<api>`` is ``https://<the image's registry host>`` unless the caller
names another base URL (``aiinfn fl plan --registry-url``, or AIINFN_REGISTRY_URL), e.g. a proxy, or
the tests' stand-in of that endpoint. Credentials, when the project is private, come from
AIINFN_REGISTRY_USER and AIINFN_REGISTRY_PASSWORD (a robot account) and are sent only to that URL;
they are never written anywhere.
"""

from __future__ import annotations

import base64
import os
import urllib.error
import urllib.request
from urllib.parse import quote

from ..errors import AiinfnError
from .description import Description, split_image

TIMEOUT = 10.0


class RegistryError(AiinfnError):
    """The registry could not be asked (unreachable, refused the credentials)."""

    exit_code = 1


def artifact_url(base: str, image: str) -> str:
    _host, project, repository, reference = split_image(image)
    repo = quote(quote(repository, safe=""), safe="")
    return f"{base.rstrip('/')}/api/v2.0/projects/{quote(project, safe='')}/repositories/{repo}/artifacts/" \
           f"{quote(reference, safe=':')}"


def image_exists(image: str, base: str | None = None) -> bool:
    host = split_image(image)[0]
    url = artifact_url(base or f"https://{host}", image)
    request = urllib.request.Request(url, method="GET", headers={"Accept": "application/json"})
    user, password = os.environ.get("AIINFN_REGISTRY_USER"), os.environ.get("AIINFN_REGISTRY_PASSWORD")
    if user and password:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return bool(200 <= response.status < 300)
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return False
        if e.code in (401, 403):
            raise RegistryError(f"the registry at {host} refused to say whether {image} exists (HTTP {e.code}): "
                                "set AIINFN_REGISTRY_USER and AIINFN_REGISTRY_PASSWORD to a robot account that "
                                "may read the project") from None
        raise RegistryError(f"the registry at {host} answered HTTP {e.code} for {image}") from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise RegistryError(f"cannot reach the registry API at {url.split('/api/')[0]} to check {image}: "
                            f"{reason}") from None


def check(desc: Description, base: str | None = None) -> None:
    """Refuse the first image of ``desc`` that the registry does not hold (one ConfigError)."""
    base = base or os.environ.get("AIINFN_REGISTRY_URL") or None
    if base is not None and not base.startswith(("http://", "https://")):
        raise RegistryError(f"registry URL {base!r} must start with http:// or https://")
    for fname, f in desc.training.facilities.items():
        if not image_exists(f.image, base):
            raise desc.error(f"facilities.{fname}.image", f"{f.image!r} is not in the registry: push it there, or "
                             "name an image the registry holds")
