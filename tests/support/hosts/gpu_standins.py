"""Stand-ins for what the GPU roles need and a test host cannot have: NVIDIA's apt packages and the GPUs.

``build_nvidia_repo(directory, driver, toolkit)`` writes a flat apt repository (``Packages`` index made
here) with packages named and versioned like NVIDIA's: ``nvidia-driver`` (its ``nvidia-smi`` is the fake
below), ``nvidia-persistenced`` (a systemd unit) and ``nvidia-container-toolkit``
(``nvidia-container-runtime``, ``nvidia-ctk``). So the role's apt sources, pinned installs and holds run for
real against dpkg and apt.

The fake ``nvidia-smi`` keeps per-GPU MIG state in /var/lib/fake-nvidia/state.json (GPUs declared by the
test in /etc/fake-nvidia/gpus.json: index and model), logs every call with its argv, and answers in
nvidia-smi's formats. It decides what fits with its own table, ``GPU_MODELS`` below, written from NVIDIA's
documentation and never from aiinfn's catalogue (this module imports nothing of aiinfn at module level, and
the script nothing at all), so a catalogue that accepts a layout the hardware cannot hold, or a role that
asks the GPU for something it refuses, fails here as it would on a real node. What it models:

- ``--query-gpu=<fields>`` with ``--format=csv[,noheader][,nounits]``: only the fields asked, in the order
  asked, one line per GPU (``-i`` selects one); an unknown field is refused.
- ``-i N -mig 0|1``: MIG mode (refused to turn off while GPU instances exist; refused on a GPU without MIG).
- ``mig -lgip`` / ``-lgipp``: the profiles and placements of the table.
- ``mig -cgi <profiles> [-C]``: profiles by name, ``MIG <name>`` or ID, created one by one *in the order
  given*, each on the lowest free memory-slice placement its profile allows (NVML: "Creation of new GPU
  instance will fail if there is overlap with the already occupied memory slices"). An instance that does
  not fit fails with "Insufficient Resources" and the ones created before it stay, as nvidia-smi leaves
  them. Only with ``-C`` does each GPU instance get its default compute instance: without it the GPU
  instance exists (``-lgi``) but holds no compute instance (``-lci``), and no MIG device.
- ``mig -lgi`` / ``-lci`` / ``-dci`` / ``-dgi``; listing or destroying where there is nothing answers
  "Not Found" with exit 6, and a GPU instance with a live compute instance cannot be destroyed.

What it does not model, and the tests therefore do not claim: the driver's own choice among free
placements, which NVIDIA does not document (the lowest free start here matches the MIG user guide's
example, whose first of two 3g.20gb instances lands at 0:4, and an A30 transcript placing 1g.6gb at 0, 1
then 2g.12gb at 2; an H100 transcript shows 1g.10gb instances placed from slice 6 down, so a role must not
depend on either: NVIDIA's mig-parted tries every creation order for this reason); MIG mode changes that
need a GPU reset or a VM reboot (pending versus current); processes holding the GPU; the instance IDs
(numbered here from 1 in creation order, not by placement as the driver does); exit codes beyond the man
page's 0 / 2 (invalid argument) / 3 (not supported) / 6 (not found) / 255 (other); the exact wording of
nvidia-smi's messages for misuse (a wrong flag), which are the fake's own.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

#: The GPUs the tests use, from NVIDIA's documentation (never from aiinfn). Per model: the PCI device ID as
#: ``--query-gpu=pci.device_id`` prints it (the device-filter IDs of NVIDIA mig-parted v0.15.0's
#: config-default.yaml: A100-80GB PCIe 0x20B5, A100-40GB PCIe 0x20F1, A30 0x20B7, H100 PCIe 0x2331; T4 and
#: Quadro RTX 5000 from NVIDIA's PCI ID list, 0x1EB8 / 0x1EB0), its name and memory, and for MIG-capable
#: models the memory and compute slices and every GPU-instance profile as ``nvidia-smi mig -lgip`` and
#: ``-lgipp`` list it: [profile ID, name, compute slices, placement size in memory slices, placement starts,
#: instances per GPU, media extensions, compute-instance profile ID of the default CI, memory GiB].
#: Sources: NVIDIA Multi-Instance GPU User Guide, "Supported MIG Profiles" (A30, A100 and H100 tables:
#: fractions of memory and SMs, number of instances available, "a single 1g profile can include media
#: extensions") and "Getting Started with MIG" (``-lgip`` / ``-lgipp`` output: IDs 19/20/15/14/9/5/0 and
#: placements {0..6}:1, {0..6}:1, {0,2,4,6}:2, {0,2,4}:2, {0,4}:4, {0}:4, {0}:8 on the 7-slice GPUs;
#: A30 IDs 14/21/5/6/0, placements {0..3}:1, {0..3}:1, {0,2}:2, {0,2}:2, {0}:4). Memory as -lgip prints it:
#: A100 from NVIDIA go-nvml's mock device tables (MiB / 1024), A30 and H100 from real -lgip transcripts.
#: Compute-instance profile IDs as ``-C`` reports them (0 for 1 slice, 1 for 2, 2 for 3, 3 for 4, 4 for 7).
GPU_MODELS: dict[str, dict[str, Any]] = {
    "A100-80GB": {
        "device": "0x20B510DE", "name": "NVIDIA A100 80GB PCIe", "memory_mib": 81920,
        "mig": {"memory_slices": 8, "compute_slices": 7, "profiles": [
            [19, "1g.10gb", 1, 1, [0, 1, 2, 3, 4, 5, 6], 7, False, 0, 9.62],
            [20, "1g.10gb+me", 1, 1, [0, 1, 2, 3, 4, 5, 6], 1, True, 0, 9.62],
            [15, "1g.20gb", 1, 2, [0, 2, 4, 6], 4, False, 0, 19.50],
            [14, "2g.20gb", 2, 2, [0, 2, 4], 3, False, 1, 19.50],
            [9, "3g.40gb", 3, 4, [0, 4], 2, False, 2, 39.25],
            [5, "4g.40gb", 4, 4, [0], 1, False, 3, 39.25],
            [0, "7g.80gb", 7, 8, [0], 1, True, 4, 78.50],
        ]},
    },
    "A100-40GB": {
        "device": "0x20F110DE", "name": "NVIDIA A100-PCIE-40GB", "memory_mib": 40960,
        "mig": {"memory_slices": 8, "compute_slices": 7, "profiles": [
            [19, "1g.5gb", 1, 1, [0, 1, 2, 3, 4, 5, 6], 7, False, 0, 4.75],
            [20, "1g.5gb+me", 1, 1, [0, 1, 2, 3, 4, 5, 6], 1, True, 0, 4.75],
            [15, "1g.10gb", 1, 2, [0, 2, 4, 6], 4, False, 0, 9.62],
            [14, "2g.10gb", 2, 2, [0, 2, 4], 3, False, 1, 9.62],
            [9, "3g.20gb", 3, 4, [0, 4], 2, False, 2, 19.50],
            [5, "4g.20gb", 4, 4, [0], 1, False, 3, 19.50],
            [0, "7g.40gb", 7, 8, [0], 1, True, 4, 39.25],
        ]},
    },
    "H100-80GB": {
        "device": "0x233110DE", "name": "NVIDIA H100 PCIe", "memory_mib": 81559,
        "mig": {"memory_slices": 8, "compute_slices": 7, "profiles": [
            [19, "1g.10gb", 1, 1, [0, 1, 2, 3, 4, 5, 6], 7, False, 0, 9.75],
            [20, "1g.10gb+me", 1, 1, [0, 1, 2, 3, 4, 5, 6], 1, True, 0, 9.75],
            [15, "1g.20gb", 1, 2, [0, 2, 4, 6], 4, False, 0, 19.62],
            [14, "2g.20gb", 2, 2, [0, 2, 4], 3, False, 1, 19.62],
            [9, "3g.40gb", 3, 4, [0, 4], 2, False, 2, 39.50],
            [5, "4g.40gb", 4, 4, [0], 1, False, 3, 39.50],
            [0, "7g.80gb", 7, 8, [0], 1, True, 4, 79.25],
        ]},
    },
    "A30": {
        "device": "0x20B710DE", "name": "NVIDIA A30", "memory_mib": 24576,
        "mig": {"memory_slices": 4, "compute_slices": 4, "profiles": [
            [14, "1g.6gb", 1, 1, [0, 1, 2, 3], 4, False, 0, 5.81],
            [21, "1g.6gb+me", 1, 1, [0, 1, 2, 3], 1, True, 0, 5.81],
            [5, "2g.12gb", 2, 2, [0, 2], 2, False, 1, 11.69],
            [6, "2g.12gb+me", 2, 2, [0, 2], 1, True, 1, 11.69],
            [0, "4g.24gb", 4, 4, [0], 1, True, 3, 23.44],
        ]},
    },
    "T4": {"device": "0x1EB810DE", "name": "Tesla T4", "memory_mib": 15360, "mig": None},
    "RTX5000": {"device": "0x1EB010DE", "name": "Quadro RTX 5000", "memory_mib": 16384, "mig": None},
}

FAKE_SMI = r'''#!/usr/bin/python3
# fake nvidia-smi (aiinfn tests): see tests/support/hosts/gpu_standins.py; the models' table is NVIDIA's
import json, os, sys
ROOT = os.environ.get("FAKE_NVIDIA_ROOT", "")
STATE = ROOT + "/var/lib/fake-nvidia/state.json"
MODELS = json.loads(@MODELS@)
args = sys.argv[1:]
gpus = json.load(open(ROOT + "/etc/fake-nvidia/gpus.json"))
os.makedirs(os.path.dirname(STATE), exist_ok=True)
fresh = {"gpus": {str(g["index"]): {"mig": False, "gis": []} for g in gpus}, "calls": []}
state = json.load(open(STATE)) if os.path.exists(STATE) else fresh
state["calls"].append(args)
NOT_FOUND, INVALID, UNSUPPORTED, OTHER = 6, 2, 3, 255


def save():
    json.dump(state, open(STATE, "w"))


def done(code=0):
    save(); sys.exit(code)


def fail(msg, code):
    print(msg); done(code)


def model(g):
    return MODELS[g["model"]]


def bus(g):
    return f"00000000:{0x17 + 0x10 * g['index']:02X}:00.0"


def profiles(g):
    mig = model(g)["mig"]
    return [dict(zip(("id", "name", "compute", "size", "starts", "max", "media", "ci", "gib"), p))
            for p in mig["profiles"]]


def option(flag):
    """The value after ``flag`` (``flag=value`` too), or None."""
    for n, a in enumerate(args):
        if a == flag and n + 1 < len(args):
            return args[n + 1]
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return None


def selected():
    i = option("-i") or option("--id")
    if i is None:
        return gpus
    chosen = [g for g in gpus if str(g["index"]) == i]
    if not chosen:
        fail(f"No devices were found matching the ID {i}", NOT_FOUND)
    return chosen


QUERY = {
    "index": lambda g, s, u: str(g["index"]),
    "count": lambda g, s, u: str(len(gpus)),
    "name": lambda g, s, u: model(g)["name"],
    "uuid": lambda g, s, u: f"GPU-{g['index']:08x}-0000-4000-8000-{sum(map(ord, g['model'])):012x}",
    "pci.bus_id": lambda g, s, u: bus(g),
    "pci.device_id": lambda g, s, u: model(g)["device"],
    "memory.total": lambda g, s, u: f"{model(g)['memory_mib']}" + ("" if u else " MiB"),
    "mig.mode.current": lambda g, s, u: "[N/A]" if model(g)["mig"] is None else ("Enabled" if s["mig"] else "Disabled"),
    "mig.mode.pending": lambda g, s, u: "[N/A]" if model(g)["mig"] is None else ("Enabled" if s["mig"] else "Disabled"),
}
UNITS = {"memory.total": " [MiB]"}

query = option("--query-gpu")
if query is not None:
    fields = [f.strip() for f in query.split(",") if f.strip()]
    for f in fields:
        if f not in QUERY:
            fail(f'Field "{f}" is not a valid field to query.', INVALID)
    fmt = option("--format")
    if fmt is None:
        fail("--query-gpu needs --format=csv[,noheader][,nounits]", INVALID)
    opts = fmt.split(",")
    if opts[0] != "csv" or any(o not in ("noheader", "nounits") for o in opts[1:]):
        fail(f'"{fmt}" is not a valid format: csv[,noheader][,nounits]', INVALID)
    nounits = "nounits" in opts
    if "noheader" not in opts:
        print(", ".join(f + ("" if nounits else UNITS.get(f, "")) for f in fields))
    for g in selected():
        s = state["gpus"][str(g["index"])]
        print(", ".join(QUERY[f](g, s, nounits) for f in fields))
    done()

if "-mig" in args and args[:1] != ["mig"]:
    value = option("-mig")
    if value not in ("0", "1"):
        fail("-mig takes 0 or 1", INVALID)
    for g in selected():
        s = state["gpus"][str(g["index"])]
        if model(g)["mig"] is None:
            fail(f"Unable to {'enable' if value == '1' else 'disable'} MIG Mode for GPU {bus(g)}: Not Supported",
                 UNSUPPORTED)
        if value == "0" and s["gis"]:
            fail(f"Unable to disable MIG Mode for GPU {bus(g)}: In use by another client", OTHER)
        s["mig"] = value == "1"
        print(f"{'Enabled' if s['mig'] else 'Disabled'} MIG Mode for GPU {bus(g)}")
    print("All done.")
    done()

if args[:1] == ["mig"]:
    ops = [a for a in ("-lgip", "-lgipp", "-lgi", "-lci", "-cgi", "-dci", "-dgi") if a in args]
    if len(ops) != 1:
        fail("fake nvidia-smi mig: one of -lgip -lgipp -lgi -lci -cgi -dci -dgi, got " + " ".join(args), INVALID)
    op = ops[0]
    targets = selected()
    for g in targets:
        if model(g)["mig"] is None or not state["gpus"][str(g["index"])]["mig"]:
            fail("No MIG-enabled devices found.", NOT_FOUND)
    if op == "-lgipp":
        for g in targets:
            for p in profiles(g):
                word = "Placement :" if len(p["starts"]) == 1 else "Placements:"
                starts = ",".join(map(str, p["starts"]))
                print(f"GPU {g['index']:>2} Profile ID {p['id']:>2} {word} {{{starts}}}:{p['size']}")
        done()
    line = "+" + "-" * 77 + "+"

    def used(s):
        taken = [False] * 8
        for gi in s["gis"]:
            for k in range(gi["start"], gi["start"] + gi["size"]):
                taken[k] = True
        return taken

    def free_start(g, s, p):
        taken = used(s)
        slices = model(g)["mig"]["memory_slices"]
        for st in p["starts"]:
            if st + p["size"] <= slices and not any(taken[st:st + p["size"]]):
                return st
        return None

    def why_not(g, s, p):
        """None if ``p`` can be created now, else nvidia-smi's reason."""
        mig = model(g)["mig"]
        same = [gi for gi in s["gis"] if gi["pid"] == p["id"]]
        media = [gi for gi in s["gis"] if gi["media"]]
        if len(same) >= p["max"] or (p["media"] and media):
            return "Insufficient Resources"
        if sum(gi["compute"] for gi in s["gis"]) + p["compute"] > mig["compute_slices"]:
            return "Insufficient Resources"
        return None if free_start(g, s, p) is not None else "Insufficient Resources"

    if op == "-lgip":
        print(line)
        print("| GPU instance profiles:" + " " * 54 + "|")
        print("| GPU   Name               ID    Instances   Memory     P2P    SM    DEC   ENC  |")
        print("|                                Free/Total   GiB              CE    JPEG  OFA  |")
        print("|" + "=" * 77 + "|")
        for g in targets:
            s = state["gpus"][str(g["index"])]
            for p in profiles(g):
                trial = {"gis": [dict(gi) for gi in s["gis"]]}
                free = 0
                while why_not(g, trial, p) is None:
                    st = free_start(g, trial, p)
                    trial["gis"].append({"pid": p["id"], "start": st, "size": p["size"], "media": p["media"],
                                         "compute": p["compute"]})
                    free += 1
                print(f"| {g['index']:>3}  MIG {p['name']:<15} {p['id']:>2}     {free}/{p['max']:<8} "
                      f"{p['gib']:>5.2f}      No     {14 * p['compute']:<4}  -     -    |")
                print(line)
        done()
    if op == "-lgi":
        rows = [(g, gi) for g in targets for gi in state["gpus"][str(g["index"])]["gis"]]
        if not rows:
            fail("No GPU instances found: Not Found", NOT_FOUND)
        print("+" + "-" * 55 + "+")
        print("| GPU instances:" + " " * 40 + "|")
        print("| GPU   Name             Profile  Instance   Placement  |")
        print("|                          ID       ID       Start:Size |")
        print("|" + "=" * 55 + "|")
        for g, gi in rows:
            print(f"| {g['index']:>3}  MIG {gi['profile']:<13} {gi['pid']:>5} {gi['id']:>8}          "
                  f"{gi['start']}:{gi['size']}     |")
            print("+" + "-" * 55 + "+")
        done()
    if op == "-lci":
        rows = [(g, gi) for g in targets for gi in state["gpus"][str(g["index"])]["gis"] if gi["ci"]]
        if not rows:
            fail("No compute instances found: Not Found", NOT_FOUND)
        print("+" + "-" * 68 + "+")
        print("| Compute instances:" + " " * 49 + "|")
        print("| GPU     GPU       Name             Profile   Instance   Placement  |")
        print("|       Instance                       ID        ID       Start:Size |")
        print("|" + "=" * 68 + "|")
        for g, gi in rows:
            print(f"| {g['index']:>3}  {gi['id']:>6}       MIG {gi['profile']:<13} {gi['cip']:>3}         0          "
                  f"0:{gi['compute']}     |")
            print("+" + "-" * 68 + "+")
        done()
    if op == "-dci":
        for g in targets:
            s = state["gpus"][str(g["index"])]
            if not s["gis"]:
                fail("No GPU instances found: Not Found", NOT_FOUND)
            live = [gi for gi in s["gis"] if gi["ci"]]
            if not live:
                fail("No compute instances found: Not Found", NOT_FOUND)
            for gi in live:
                gi["ci"] = False
                print(f"Successfully destroyed compute instance ID  0 from GPU {g['index']:>2} GPU instance ID "
                      f"{gi['id']:>2}")
        done()
    if op == "-dgi":
        for g in targets:
            s = state["gpus"][str(g["index"])]
            if not s["gis"]:
                fail("No GPU instances found: Not Found", NOT_FOUND)
            for gi in list(s["gis"]):
                if gi["ci"]:
                    print(f"Unable to destroy GPU instance ID {gi['id']:>2} from GPU {g['index']:>2}: "
                          "In use by another client")
                    fail("Failed to destroy GPU instances: In use by another client", OTHER)
                s["gis"].remove(gi)
                print(f"Successfully destroyed GPU instance ID {gi['id']:>2} from GPU {g['index']:>2}")
        done()
    # -cgi
    wanted = (option("-cgi") or "").split(",")
    default_ci = "-C" in args or "--default-compute-instance" in args
    for g in targets:
        s = state["gpus"][str(g["index"])]
        by = {}
        for p in profiles(g):
            by[p["name"]] = by["MIG " + p["name"]] = by[str(p["id"])] = p
        for w in wanted:
            p = by.get(w.strip())
            if p is None:
                print(f"Unable to create a GPU instance on GPU {g['index']:>2} using profile {w}: Invalid Argument")
                fail("Failed to create GPU instances: Invalid Argument", INVALID)
            reason = why_not(g, s, p)
            if reason:
                print(f"Unable to create a GPU instance on GPU {g['index']:>2} using profile {w}: {reason}")
                fail(f"Failed to create GPU instances: {reason}", OTHER)
            ids = {gi["id"] for gi in s["gis"]}
            gid = next(k for k in range(1, 64) if k not in ids)
            s["gis"].append({"id": gid, "profile": p["name"], "pid": p["id"], "start": free_start(g, s, p),
                             "size": p["size"], "compute": p["compute"], "media": p["media"], "cip": p["ci"],
                             "ci": default_ci})
            print(f"Successfully created GPU instance ID {gid:>2} on GPU {g['index']:>2} using profile "
                  f"MIG {p['name']} (ID {p['id']:>2})")
            if default_ci:
                print(f"Successfully created compute instance ID  0 on GPU {g['index']:>2} GPU instance ID "
                      f"{gid:>2} using profile MIG {p['name']} (ID {p['ci']:>2})")
    done()
fail("fake nvidia-smi: unsupported arguments " + " ".join(args), INVALID)
'''.replace("@MODELS@", repr(json.dumps(GPU_MODELS)))

PERSISTENCED_UNIT = """[Unit]
Description=NVIDIA Persistence Daemon (aiinfn test stand-in)

[Service]
ExecStart=/bin/sleep infinity

[Install]
WantedBy=multi-user.target
"""


def _deb(work: Path, name: str, version: str, files: dict[str, tuple[str, int]], out: Path) -> Path:
    root = work / f"{name}-{version}"
    (root / "DEBIAN").mkdir(parents=True, exist_ok=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: {name}\nVersion: {version}\nArchitecture: amd64\nMaintainer: aiinfn tests <tests@example.org>\n"
        f"Description: aiinfn test stand-in of {name}\n"
    )
    for path, (content, mode) in files.items():
        f = root / path.lstrip("/")
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(content)
        f.chmod(mode)
    deb = out / f"{name}_{version}_amd64.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(root), str(deb)], check=True,
                   capture_output=True)
    return deb


def build_nvidia_repo(directory: Path, driver: str, toolkit: str) -> Path:
    """A flat apt repository of stand-in NVIDIA packages at ``driver`` and ``toolkit`` versions."""
    directory.mkdir(parents=True, exist_ok=True)
    work = directory / ".build"
    debs = [
        _deb(work, "nvidia-driver", f"{driver}-1", {"/usr/bin/nvidia-smi": (FAKE_SMI, 0o755)}, directory),
        _deb(work, "nvidia-persistenced", f"{driver}-1",
             {"/lib/systemd/system/nvidia-persistenced.service": (PERSISTENCED_UNIT, 0o644)}, directory),
        _deb(work, "nvidia-container-toolkit", f"{toolkit}-1",
             {"/usr/bin/nvidia-container-runtime": ("#!/bin/sh\nexit 0\n", 0o755),
              "/usr/bin/nvidia-ctk": ("#!/bin/sh\necho 'NVIDIA Container Toolkit CLI version " + toolkit + "'\n",
                                      0o755)}, directory),
    ]
    entries = []
    for deb in debs:
        control = subprocess.run(["dpkg-deb", "-f", str(deb)], check=True, capture_output=True, text=True).stdout
        data = deb.read_bytes()
        entries.append(control.strip() + f"\nFilename: ./{deb.name}\nSize: {len(data)}\n"
                       f"SHA256: {hashlib.sha256(data).hexdigest()}\n")
    (directory / "Packages").write_text("\n".join(entries))
    subprocess.run(["rm", "-rf", str(work)], check=True)
    return directory


def fake_gpus(model_name: str, count: int) -> list[dict[str, object]]:
    """The content of /etc/fake-nvidia/gpus.json for ``count`` GPUs of ``model_name`` (a key of GPU_MODELS)."""
    if model_name not in GPU_MODELS:
        raise ValueError(f"no fake GPU model {model_name!r} (models: {', '.join(GPU_MODELS)})")
    return [{"index": i, "model": model_name} for i in range(count)]


def placeable(model_name: str, order: list[str]) -> bool:
    """Whether the fake nvidia-smi creates the GPU instances ``order`` (profile names), in that order, on one
    empty GPU of ``model_name``: the table's placement rule, for tests that reason about layouts."""
    mig = GPU_MODELS[model_name]["mig"]
    if mig is None:
        return False
    table = {p[1]: p for p in mig["profiles"]}
    taken = [False] * mig["memory_slices"]
    compute, counts, media = 0, dict.fromkeys(table, 0), False
    for name in order:
        if name not in table:
            return False
        _pid, _name, c, size, starts, most, is_media, _ci, _gib = table[name]
        start = next((s for s in starts if s + size <= len(taken) and not any(taken[s:s + size])), None)
        if start is None or counts[name] >= most or (is_media and media) or compute + c > mig["compute_slices"]:
            return False
        taken[start:start + size] = [True] * size
        compute, media = compute + c, media or is_media
        counts[name] += 1
    return True


def install_gpus(hosts: Any, name: str, model_name: str, count: int, *, with_smi: bool = False) -> None:
    """Declare ``count`` fake GPUs of ``model_name`` on test host ``name`` (and put the fake nvidia-smi there,
    for tests that do not install it through the stand-in driver package)."""
    path = hosts.path(name, "/etc/fake-nvidia/gpus.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(fake_gpus(model_name, count)))
    if with_smi:
        smi = hosts.path(name, "/usr/bin/nvidia-smi")
        smi.write_text(FAKE_SMI)
        smi.chmod(0o755)


def gpu_site_inventory(hosts: Any, artifacts: Path, mig_config: dict[str, Any], gpu_nodes: dict[str, str | None],
                       server: str = "srv-1") -> dict[str, Any]:
    """The inventory variables aiinfn renders, for one RKE2 server and GPU nodes with their MIG configs."""
    from aiinfn import versions

    node = {"aiinfn_node_labels": {}, "aiinfn_node_taints": []}
    hostvars = {server: {**node, "aiinfn_role": "server"}}
    hostvars.update({n: {**node, "aiinfn_role": "gpu", "aiinfn_mig_config": c} for n, c in gpu_nodes.items()})
    return hosts.inventory(  # type: ignore[no-any-return]
        groups={"role_server": [server], "role_gpu": list(gpu_nodes)},
        hostvars=hostvars,
        group_vars={
            "aiinfn_site": "test", "aiinfn_first_server": server, "aiinfn_rke2_version": versions.RKE2,
            "aiinfn_artifact_source": str(artifacts), "aiinfn_tls_sans": [], "aiinfn_oidc": {},
            "aiinfn_registry_mirror": None, "aiinfn_cluster_domain": "cluster.local",
            "aiinfn_nvidia_driver_version": versions.NVIDIA_DRIVER,
            "aiinfn_nvidia_container_toolkit_version": versions.NVIDIA_CONTAINER_TOOLKIT,
            "aiinfn_reboot": False, "aiinfn_mig_parted_config": mig_config,
            "nvidia_driver_repositories": [{"name": "nvidia-standin", "uris": "file:/srv/nvidia-repo",
                                            "suites": "./", "trusted": True}],
            "nvidia_mig_kubectl_host": server,
        },
    )
