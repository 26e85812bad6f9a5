"""`aiinfn new-site NAME`: scaffold a site, the files a new operator would otherwise write by hand.

* environments/<name>.yaml: the example site (environments/example/example.yaml, every field with its
  comment) with ``extends: base.yaml`` (the example's ``../base.yaml`` is relative to its own folder),
  the site's name, cloud entry and stack name set to NAME, and the operators' SSH key when given;
* Pulumi.<name>.yaml: the stack file, with a relative ``aiinfn:environment`` (never the checkout's
  absolute path: the file is committed) and no secret;
* the secrets checklist: every ``pulumi config set --secret`` the environment needs, printed.

It refuses, with one line, a NAME that is not a DNS label and a file that already exists, and the
new environment is validated before the command returns (a broken scaffold exits 2, as ``validate``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ..errors import AiinfnError

out = Console()

NAME_RE = re.compile(r"^[a-z]([a-z0-9-]{0,30}[a-z0-9])?$")
STACK_HEADER = """# Stack {name}: which environment it builds. Secrets are added here only by
#   pulumi config set --secret -s {name} aiinfn:<name> <value>
# (encrypted `secure:` entries); never write a secret in environments/.
"""


class ScaffoldError(AiinfnError):
    exit_code = 1


@dataclass
class Scaffold:
    environment: Path
    stack_file: Path
    secrets: list[str]
    placeholder_key: bool


def scaffold(name: str, root: Path, ssh_public_key: str | None = None) -> Scaffold:
    """Write environments/<name>.yaml and Pulumi.<name>.yaml under ``root``; the secrets they need."""
    from ruamel.yaml import YAML

    from ..config.loader import load
    from ..config.secrets import secret_refs

    if not NAME_RE.match(name):
        raise ScaffoldError(f"site name {name!r}: use a DNS label of at most 32 characters (a-z, 0-9, '-'), "
                            "e.g. `pisa`")
    env_file = root / "environments" / f"{name}.yaml"
    stack_file = root / f"Pulumi.{name}.yaml"
    for path in (env_file, stack_file):
        if path.exists():
            raise ScaffoldError(f"{path.relative_to(root)} already exists: choose another name, or edit that file")
    example = root / "environments" / "example" / "example.yaml"
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096
    data = yaml.load(example.read_text())
    data["extends"] = "base.yaml"
    data["name"] = name
    data["description"] = f"AI_INFN platform at site {name}"
    data["site"]["name"] = name
    data["site"]["cloud"] = name
    placeholder = ssh_public_key is None
    if ssh_public_key is not None:
        data["site"]["ssh_public_key"] = ssh_public_key.strip()
    env_file.parent.mkdir(parents=True, exist_ok=True)
    with env_file.open("w") as f:
        f.write(f"# Site {name}, scaffolded by `aiinfn new-site` from environments/example/example.yaml:\n"
                "# replace every example value (hosts, flavors, pools, domain, networks), then\n"
                f"#   aiinfn validate {name} && aiinfn plan {name}\n")
        yaml.dump(data, f)
    try:
        env = load(env_file, root=root)
    except Exception:
        env_file.unlink()
        raise
    stack_file.write_text(STACK_HEADER.format(name=name) + "config:\n  aiinfn:scope: site\n"
                          f"  aiinfn:environment: environments/{name}.yaml\n")
    return Scaffold(env_file, stack_file, sorted(set(secret_refs(env).values())), placeholder)


def new_site(
    name: Annotated[str, typer.Argument(help="the site's name (a DNS label): environments/<name>.yaml")],
    ssh_public_key: Annotated[
        Path | None, typer.Option("--ssh-public-key", help="the operators' OpenSSH public key file (.pub)")
    ] = None,
) -> None:
    """Scaffold a new site: environment file from the example, stack file, secrets checklist."""
    from ..config.loader import project_root

    key = None
    if ssh_public_key is not None:
        try:
            key = ssh_public_key.read_text().strip()
        except OSError as e:
            raise ScaffoldError(f"--ssh-public-key {ssh_public_key}: cannot read it ({e.strerror})") from None
    s = scaffold(name, project_root(), key)
    out.print(f"[green]wrote[/green] environments/{name}.yaml and Pulumi.{name}.yaml", highlight=False)
    out.print("Before the first `aiinfn up`:", highlight=False)
    steps = [f"edit environments/{name}.yaml: hosts, flavors, node pools, domain, networks (every example value)",
             f"add a `{name}` entry to your clouds.yaml (openstacksdk), or set site.cloud to the entry you have"]
    if s.placeholder_key:
        steps.append("site.ssh_public_key is the example's placeholder: put the operators' key there "
                     "(or rerun with --ssh-public-key)")
    steps += [f"pulumi config set --secret -s {name} aiinfn:{k} <value>" for k in s.secrets]
    steps.append(f"after bootstrap: pulumi config set --secret -s {name} aiinfn:kubeconfig < kubeconfig.yaml "
                 "(`aiinfn up` does it for you)")
    steps += [f"aiinfn validate {name} && aiinfn plan {name} && aiinfn preflight {name}"]
    for i, step in enumerate(steps, 1):
        out.print(f"  {i}. {step}", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("new-site")(new_site)
