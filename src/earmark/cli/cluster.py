# SPDX-License-Identifier: Apache-2.0
"""``earmark cluster start | stop | status``: a local Ray cluster on loopback (docs/scaling.md).

``start`` runs ``ray start --head --block`` in a new session (its own process group) with
its files in a private temporary folder, and writes ``cluster.json`` there (address, process
group); ``stop`` ends that process group and nothing else (never ``ray stop``, which would end
every Ray process of the machine). To use an existing cluster instead, give its address to
``--address`` or ``EARMARK_RAY_ADDRESS``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from earmark.cli import AddressOption, die, load_settings, stderr, user_errors

app = typer.Typer(help="Start, inspect and stop a local Ray cluster for the sharded index.",
                  no_args_is_help=True)

STATE = "cluster.json"

DirOption = Annotated[
    Path | None,
    typer.Option("--dir", metavar="DIR",
                 help="Folder of the local cluster's files. Default: "
                      "$TMPDIR/earmark-ray-<uid>."),
]


def default_dir() -> Path:
    """Short on purpose: Ray puts Unix sockets under it (paths of at most 107 bytes)."""
    return Path(tempfile.gettempdir()) / f"earmark-ray-{os.getuid()}"


def _state(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / STATE).read_text())
    except (OSError, ValueError):
        return None


def _alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` runs (zombies, left unreaped where no init
    process reaps orphans, do not count)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


@app.command("start")
def start(
    port: Annotated[int, typer.Option("--port", min=1, max=65535,
                                      help="Port of the cluster's head (GCS).")] = 6380,
    num_cpus: Annotated[int | None, typer.Option(
        "--num-cpus", min=1, help="CPUs the cluster may use. Default: all.")] = None,
    folder: DirOption = None,
    wait_s: Annotated[float, typer.Option("--wait", help="Seconds to wait for it.")] = 60.0,
) -> None:
    """Start a one-node Ray cluster on 127.0.0.1 and print its address."""
    from earmark.index.ray_shards import require_ray

    with user_errors():
        require_ray()
    folder = (folder or default_dir()).absolute()
    st = _state(folder)
    if st is not None and _alive(st["pgid"]):
        die(f"a cluster already runs from {folder} at {st['address']} (earmark cluster stop)")
    folder.mkdir(parents=True, exist_ok=True)
    address = f"127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block",
           "--node-ip-address=127.0.0.1", f"--port={port}", "--include-dashboard=false",
           f"--temp-dir={folder}", "--disable-usage-stats"]
    if num_cpus is not None:
        cmd.append(f"--num-cpus={num_cpus}")
    log = open(folder / "start.log", "ab")
    # token authentication (Ray's ~/.ray/auth_token, made on first use): the head's port
    # listens on every interface of the machine
    env = {**os.environ, "RAY_AUTH_MODE": "token"}
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                            start_new_session=True, env=env)
    (folder / STATE).write_text(json.dumps({"address": address, "pgid": proc.pid,
                                            "dir": str(folder)}))
    deadline = time.monotonic() + wait_s
    while not list(folder.glob("session_*/sockets/raylet*")):
        if proc.poll() is not None or time.monotonic() > deadline:
            _stop_group(proc.pid)
            die(f"Ray did not start (see {folder / 'start.log'})")
        time.sleep(0.2)
    stderr().print(f"Ray cluster at {address} (files in {folder})", markup=False)
    typer.echo(f"export EARMARK_RAY_ADDRESS={address}")


def _stop_group(pgid: int, wait_s: float = 10.0) -> bool:
    """SIGTERM the process group, SIGKILL what is left after ``wait_s``; True if it ran."""
    if not _alive(pgid):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + wait_s
    while _alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _alive(pgid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
    return True


@app.command("stop")
def stop(folder: DirOption = None) -> None:
    """Stop the cluster that ``earmark cluster start`` started from this folder."""
    folder = (folder or default_dir()).absolute()
    st = _state(folder)
    if st is None or not _stop_group(int(st["pgid"])):
        stderr().print(f"no cluster runs from {folder}", markup=False)
        return
    (folder / STATE).unlink(missing_ok=True)
    stderr().print(f"stopped the cluster at {st['address']}", markup=False)


@app.command("status")
def status(
    address: AddressOption = None,
    folder: DirOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
) -> None:
    """Nodes and resources of the cluster (--address, $EARMARK_RAY_ADDRESS, else the local one)."""
    from earmark.index.ray_shards import require_ray

    with user_errors():
        ray = require_ray()
    address = load_settings(ray_address=address).ray_address
    if not address:
        st = _state((folder or default_dir()).absolute())
        if st is None or not _alive(int(st["pgid"])):
            die("no cluster: give --address or EARMARK_RAY_ADDRESS, or run earmark cluster start")
        address = st["address"]
    try:
        ray.init(address=address, log_to_driver=False, logging_level="ERROR")
    except (ConnectionError, RuntimeError) as exc:
        die(f"cannot reach a Ray cluster at {address}: {exc}")
    try:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        out = {"address": address, "nodes": len(nodes),
               "resources": ray.cluster_resources(), "available": ray.available_resources()}
    finally:
        ray.shutdown()
    if as_json:
        typer.echo(json.dumps(out))
        return
    res = out["resources"]
    typer.echo(f"{address}: {len(nodes)} node(s), {res.get('CPU', 0):g} CPU, "
               f"{res.get('GPU', 0):g} GPU, {res.get('memory', 0) / 2**30:.1f} GiB memory")
