#!/usr/bin/python3
"""Stand-in of PBS's ``qsub``/``qstat``/``qdel`` and Flux's ``flux`` on a test host (tests/support/batch_standins).

Neither PBS nor Flux is packaged for Debian bookworm, so a facility of those kinds is this one program,
installed under each command's name. It answers exactly the calls that reach a facility: StreamFlow
0.1.6's PBS connector (``cd WORKDIR && qsub -o OUT SCRIPT``, ``qstat -awx IDS``, ``qstat ID -xf`` read
for ``Output_Path`` and ``Exit_status``, ``qdel IDS``), aiinfn's Flux job template (``flux batch
--output=OUT SCRIPT``, ``flux job attach ID``, ``flux job cancel ID``, ``flux jobs``) and aiinfn's
probe (``qstat -Q QUEUE``, ``flux queue status -q QUEUE``). What it checks, and refuses with the
queue manager's kind of message: every option and every directive in the script (``#PBS -N/-l/-q/-A``,
``#flux: --job-name/--nodes/--nslots/--cores-per-slot/--gpus-per-slot/--time-limit/--queue/--bank``,
grouped before the script's commands as RFC 36 wants), their values' syntax, the queue (one of
``/etc/aiinfn-standin/queues``). What it does: runs the job script for real, as the submitting user,
detached from the SSH session, in the submission directory, with ``PBS_JOBID``/``FLUX_JOB_ID`` set,
killed at its wall time, its output in the output file, its exit status kept for qstat/attach. What
it does not: scheduling (a job starts at once), resource limits (cores, memory and GPUs are checked, not
enforced), several nodes, accounting of banks or projects.
Every call is appended to ``/var/log/aiinfn-standin/batch.log`` (one JSON object per line) for the
tests to read.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

QUEUES = Path("/etc/aiinfn-standin/queues")
LOG = Path("/var/log/aiinfn-standin/batch.log")
STATE = Path.home() / ".aiinfn-batch-standin"
SERVER = socket.gethostname()


def log(entry: dict[str, object]) -> None:
    entry = {"time": time.time(), "user": os.environ.get("USER") or os.environ.get("LOGNAME", ""), **entry}
    with LOG.open("a") as fh:
        fh.write(json.dumps(entry, sort_keys=True) + "\n")


def fail(prog: str, message: str, code: int = 1) -> None:
    log({"prog": prog, "argv": sys.argv[1:], "error": message})
    print(f"{prog}: {message}", file=sys.stderr)
    sys.exit(code)


def queues() -> set[str]:
    try:
        return {q.strip() for q in QUEUES.read_text().splitlines() if q.strip()}
    except OSError:
        return set()


# --------------------------------------------------------------------------- jobs


def next_id() -> int:
    STATE.mkdir(mode=0o700, exist_ok=True)
    counter = STATE / "counter"
    n = int(counter.read_text()) + 1 if counter.exists() else 1
    counter.write_text(str(n))
    return n


def record(job: str) -> dict[str, object]:
    try:
        return dict(json.loads((STATE / f"{job}.json").read_text()))
    except (OSError, ValueError):
        return {}


def save(job: str, rec: dict[str, object]) -> None:
    tmp = STATE / f".{job}.json"
    tmp.write_text(json.dumps(rec))
    os.replace(tmp, STATE / f"{job}.json")


def start(job: str, script: str, cwd: str, output: str, env_var: str, seconds: int, rec: dict[str, object]) -> None:
    rec.update(state="R", script=script, cwd=cwd, output=output, walltime_s=seconds, submitted=time.time())
    save(job, rec)
    subprocess.Popen([sys.executable, os.path.realpath(__file__), "--run-job", job, env_var],
                     cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True, close_fds=True)


def run_job(job: str, env_var: str) -> None:
    """The job itself: the script under sh, output to its file, killed at its wall time."""
    rec = record(job)
    env = {**os.environ, env_var: job}
    with open(str(rec["output"]), "w") as out:
        proc = subprocess.Popen(["/bin/sh", str(rec["script"])], cwd=str(rec["cwd"]), env=env, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        rec.update(pid=proc.pid, started=time.time())
        save(job, rec)
        try:
            status = proc.wait(timeout=float(str(rec["walltime_s"])))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            status = 271 if env_var == "PBS_JOBID" else 142
            out.write(f"\n{job}: killed at its wall time\n")
    rec = record(job)
    if rec.get("state") != "cancelled":
        rec.update(state="F", exit_status=status, ended=time.time())
        save(job, rec)


def cancel(job: str) -> bool:
    rec = record(job)
    if not rec:
        return False
    if rec.get("state") == "R":
        pid = rec.get("pid")
        if isinstance(pid, int):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        rec.update(state="cancelled", exit_status=143, ended=time.time())
        save(job, rec)
    return True


# --------------------------------------------------------------------------- PBS

WALLTIME = re.compile(r"\d{1,4}:[0-5]\d:[0-5]\d")
SELECT = re.compile(r"select=1:ncpus=[1-9]\d*:mem=[1-9]\d*(mb|gb)(:ngpus=[1-9]\d*)?")
NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,14}")
BATCH_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")


def pbs_directives(script: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in Path(script).read_text().splitlines()[1:]:
        if not line.startswith("#"):
            break
        if not line.startswith("#PBS "):
            continue
        words = shlex.split(line[5:])
        if len(words) != 2 or words[0] not in ("-N", "-l", "-q", "-A"):
            fail("qsub", f"directive error: {line!r}")
        found.setdefault(words[0], []).append(words[1])
    return found


def qsub(args: list[str]) -> None:
    output = None
    while args and args[0].startswith("-"):
        opt = args.pop(0)
        if opt in ("-o", "-e") and args:
            value = args.pop(0)
            if opt == "-o":
                output = value
        else:
            fail("qsub", f"invalid option -- '{opt}'")
    if len(args) != 1 or not os.path.isfile(args[0]):
        fail("qsub", "usage: qsub [-o path] [-e path] script")
    script = os.path.abspath(args[0])
    d = pbs_directives(script)
    for opt, pattern, what in (("-N", NAME, "job name"), ("-q", BATCH_NAME, "queue"), ("-A", BATCH_NAME, "account")):
        for value in d.get(opt, []):
            if not pattern.fullmatch(value):
                fail("qsub", f"illegal {what} {value!r}")
    resources = d.get("-l", [])
    selects = [r for r in resources if r.startswith("select=")]
    walltimes = [r.removeprefix("walltime=") for r in resources if r.startswith("walltime=")]
    if len(selects) != 1 or not SELECT.fullmatch(selects[0]):
        fail("qsub", f"illegal -l select: {selects}")
    if len(walltimes) != 1 or not WALLTIME.fullmatch(walltimes[0]):
        fail("qsub", f"illegal -l walltime: {walltimes}")
    queue = (d.get("-q") or ["workq"])[0]
    if queue not in queues():
        fail("qsub", f"Unknown queue {queue}", 170)
    h, m, s = (int(x) for x in walltimes[0].split(":"))
    job = f"{next_id()}.{SERVER}"
    cwd = os.getcwd()
    out = os.path.join(cwd, output or f"{job}.OU")
    rec: dict[str, object] = {"kind": "pbs", "name": (d.get("-N") or ["STDIN"])[0], "queue": queue,
                              "account": (d.get("-A") or [None])[0], "select": selects[0], "walltime": walltimes[0]}
    start(job, script, cwd, out, "PBS_JOBID", h * 3600 + m * 60 + s, rec)
    log({"prog": "qsub", "argv": sys.argv[1:], "job": job, "cwd": cwd, **rec})
    print(job)


def qstat(args: list[str]) -> None:
    if args[:1] == ["-Q"]:
        ok = len(args) == 2 and args[1] in queues()
        log({"prog": "qstat", "argv": args, "queue_known": ok})
        if not ok:
            print(f"qstat: Unknown queue destination {args[1:]}", file=sys.stderr)
        sys.exit(0 if ok else 170)
    if args[:1] == ["-awx"]:
        print(f"\n{SERVER}:\n{'':>40}Req'd  Req'd   Elap")
        print("Job ID          Username Queue    Jobname    SessID NDS TSK Memory Time  S Time")
        print("--------------- -------- -------- ---------- ------ --- --- ------ ----- - -----")
        for job in args[1:]:
            rec = record(job)
            if rec:
                state = "R" if rec.get("state") == "R" else "F"
                print(f"{job} {os.environ.get('USER', 'user')} {rec['queue']} {rec['name']} {rec.get('pid', 0)} 1 1 "
                      f"-- {rec['walltime']} {state} --")
        return
    if len(args) == 2 and args[1] == "-xf":
        rec = record(args[0])
        if not rec:
            print(f"qstat: Unknown Job Id {args[0]}", file=sys.stderr)
            sys.exit(153)
        state = "R" if rec.get("state") == "R" else "F"
        print(f"Job Id: {args[0]}\n    Job_Name = {rec['name']}\n    job_state = {state}\n    queue = {rec['queue']}")
        print(f"    Output_Path = {SERVER}:{rec['output']}")
        if state == "F":
            print(f"    Exit_status = {rec.get('exit_status', 0)}")
        return
    fail("qstat", f"unsupported call {args}")


def qdel(args: list[str]) -> None:
    log({"prog": "qdel", "argv": args})
    for job in " ".join(args).split():
        cancel(job)


# --------------------------------------------------------------------------- Flux

FSD = re.compile(r"(\d+(\.\d+)?)([smhd]?)")
FLUX_OPTIONS = {"job-name": re.compile(r"[A-Za-z0-9_.-]{1,64}"), "nodes": re.compile(r"1"),
                "nslots": re.compile(r"[1-9]\d*"), "cores-per-slot": re.compile(r"[1-9]\d*"),
                "gpus-per-slot": re.compile(r"[1-9]\d*"), "time-limit": FSD, "queue": BATCH_NAME,
                "bank": BATCH_NAME, "output": re.compile(r"\S+"), "cwd": re.compile(r"/\S*")}


def flux_options(words: list[str], where: str) -> dict[str, str]:
    opts: dict[str, str] = {}
    for w in words:
        key, eq, value = w.removeprefix("--").partition("=")
        if not w.startswith("--") or not eq:
            fail("flux-batch", f"{where}: expected --OPTION=VALUE, got {w!r}")
        if key not in FLUX_OPTIONS:
            fail("flux-batch", f"{where}: unrecognized option '--{key}'")
        if not FLUX_OPTIONS[key].fullmatch(value):
            fail("flux-batch", f"{where}: invalid value for --{key}: {value!r}")
        opts[key] = value
    return opts


def seconds_of(fsd: str) -> int:
    m = FSD.fullmatch(fsd)
    assert m is not None
    return int(float(m[1]) * {"": 60, "s": 1, "m": 60, "h": 3600, "d": 86400}[m[3]])


def flux(args: list[str]) -> None:
    if args[:1] == ["batch"]:
        words = args[1:]
        script = words.pop() if words and not words[-1].startswith("-") else None
        if script is None or not os.path.isfile(script):
            fail("flux-batch", "a batch script is required")
        opts = flux_options(words, "command line")
        lines = Path(script).read_text().splitlines()
        if not lines or not lines[0].startswith("#!"):
            fail("flux-batch", "batch script must start with #!")
        directives: dict[str, str] = {}
        body = False  # RFC 36: directives come before the script's first line that is not a comment
        for line in lines[1:]:
            if line.startswith("#flux:"):
                if body:
                    fail("flux-batch", f"directive after the script's commands: {line!r}")
                directives.update(flux_options(shlex.split(line[6:]), f"directive {line!r}"))
            elif line.strip() and not line.startswith("#"):
                body = True
        merged = {**directives, **opts}
        queue = merged.get("queue")
        if queue is not None and queue not in queues():
            fail("flux-batch", f"invalid queue '{queue}' specified")
        job = f"f{next_id()}"
        cwd = merged.get("cwd", os.getcwd())
        out = os.path.join(cwd, merged.get("output", f"flux-{job}.out"))
        rec: dict[str, object] = {"kind": "flux", "directives": directives, "options": opts, "queue": queue,
                                  "bank": merged.get("bank")}
        start(job, os.path.abspath(script), cwd, out, "FLUX_JOB_ID", seconds_of(merged.get("time-limit", "0")) or
              86400, rec)
        log({"prog": "flux", "argv": args, "job": job, "cwd": cwd, **rec})
        print(job)
        return
    if args[:2] == ["job", "attach"] and len(args) == 3:
        job = args[2]
        if not record(job):
            fail("flux-job", f"{job}: No such job")
        while record(job).get("state") == "R":
            time.sleep(0.2)
        status = int(str(record(job).get("exit_status", 1)))
        log({"prog": "flux", "argv": args, "job": job, "exit_status": status})
        sys.exit(status)
    if args[:2] == ["job", "cancel"]:
        log({"prog": "flux", "argv": args})
        for job in " ".join(args[2:]).split():
            cancel(job)
        return
    if args[:1] == ["jobs"]:
        for p in sorted(STATE.glob("f*.json")) if STATE.is_dir() else []:
            if record(p.stem).get("state") == "R":
                print(p.stem)
        return
    if args[:3] == ["queue", "status", "-q"] and len(args) == 4:
        ok = args[3] in queues()
        log({"prog": "flux", "argv": args, "queue_known": ok})
        sys.exit(0 if ok else 1)
    fail("flux", f"unsupported call {args}")


def main() -> None:
    if sys.argv[1:2] == ["--run-job"]:
        run_job(sys.argv[2], sys.argv[3])
        return
    prog = os.path.basename(sys.argv[0])
    handlers = {"qsub": qsub, "qstat": qstat, "qdel": qdel, "flux": flux}
    if prog not in handlers:
        sys.exit(f"batch stand-in: called as {prog!r}, expected one of {', '.join(handlers)}")
    handlers[prog](sys.argv[1:])


if __name__ == "__main__":
    main()
