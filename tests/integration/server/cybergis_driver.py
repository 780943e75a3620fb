"""Drives the unmodified PyPI `cybergis-compute-client` 0.2.6 against hpcbridge's CyberGIS
compatibility routes. Runs in .stack/cybergis-venv (not the project's venv: the client pins
an old IPython), started by test_cybergis_compat.py in a temporary working directory (the
client writes its login file there). Prints one last line `RESULT <json>`.

    python cybergis_driver.py alice|bob|foreign-host   (settings in CG_* environment variables)

The hub token comes in JUPYTERHUB_API_TOKEN, as in a notebook on the hub.
"""
from __future__ import annotations

import json
import os
import sys
import time

from cybergis_compute_client import CyberGISCompute

APP = os.environ.get("CG_APP", "hello")
HPC = os.environ.get("CG_HPC", "slurm")


def compute(hub_host: str) -> CyberGISCompute:
    cg = CyberGISCompute(url=os.environ["CG_HOST"], port=int(os.environ["CG_PORT"]),
                         protocol="HTTP", suffix=os.environ.get("CG_SUFFIX", "v2"),
                         isJupyter=False)
    cg.login(manualHost=hub_host)
    return cg


def error_of(call) -> str | None:
    """The client's exception text for a call, None if it went through."""
    try:
        call()
    except Exception as exc:  # the client raises bare Exceptions for `error` bodies
        return str(exc)
    return None


def wait_for_event(job, wanted: str, timeout: float = 120) -> list[str]:
    deadline = time.monotonic() + timeout
    types: list[str] = []
    while time.monotonic() < deadline:
        types = [e["type"] for e in job.events(raw=True)]
        if wanted in types or "JOB_ENDED" in types or "JOB_FAILED" in types:
            return types
        time.sleep(0.5)
    return types


def alice() -> dict:
    cg = compute(os.environ["CG_HUB"])
    out: dict = {"username": cg.username}
    out["hpcs"] = sorted(cg.list_hpc(raw=True))
    out["git"] = cg.list_git(raw=True)
    cg.list_info(list_maintainer=True, list_container=True)  # the printed tables work too
    # a job the client's way: create, set, submit, follow the events to the end
    job = cg.create_job(hpc=HPC)
    job.set(localExecutableFolder={"type": "git", "gitId": APP},
            param={"name": "cybergis", "lines": "3", "delay": 0.2},
            slurm={"time": "00:02:00", "num_of_task": 1, "cpu_per_task": 1})
    job.submit()
    out["job_id"] = job.id
    out["job_failed"] = job.events(refreshRateInSeconds=1)
    status = job.status(raw=True)
    out["status"] = {k: status.get(k) for k in ("slurmId", "hpc", "param", "slurm", "userId",
                                                  "status", "isFailed")}
    out["events"] = [e["type"] for e in status["events"]]
    out["logs"] = job.logs(raw=True)
    job.logs(refreshRateInSeconds=1)  # the printed form ends too (the job has ended)
    out["results"] = job.result_folder_content()
    out["listed"] = [j["id"] for j in cg.list_job(raw=True)["job"]]
    out["folders"] = [f["id"] for f in cg.client.request(
        "GET", "/folder", {"jupyterhubApiToken": cg.jupyterhubApiToken})["folder"]]
    out["globus"] = error_of(lambda: job.download_result_folder_by_globus(localPath="/tmp/x"))
    # a long job, cancelled while it runs
    long_job = cg.create_job(hpc=HPC)
    long_job.set(localExecutableFolder={"type": "git", "gitId": APP},
                 param={"name": "slow", "lines": 100, "delay": 3}, slurm={"time": "00:10:00"})
    long_job.submit()
    out["long_id"] = long_job.id
    out["long_before_cancel"] = wait_for_event(long_job, "JOB_RUNNING")
    cg.job = long_job
    cg.cancel_job()
    out["long_failed"] = long_job.events(refreshRateInSeconds=1)
    out["long_last_event"] = long_job.events(raw=True)[-1]
    # refused by the manifest's rules, with an `error`
    bad = cg.create_job(hpc=HPC)
    git = {"type": "git", "gitId": APP}
    out["bad_param"] = error_of(lambda: bad.set(localExecutableFolder=git,
                                                param={"lines": 1000}))
    out["bad_slurm"] = error_of(lambda: bad.set(localExecutableFolder=git,
                                                slurm={"cpu_per_task": 16}))
    out["bad_submit"] = error_of(bad.submit)  # nothing was set: no app to run
    return out


def bob() -> dict:
    cg = compute(os.environ["CG_HUB"])
    victim = os.environ["CG_VICTIM"]
    req = cg.client.request
    token = {"jupyterhubApiToken": cg.jupyterhubApiToken}
    return {
        "username": cg.username,
        "get": error_of(lambda: cg.get_job_by_id(victim)),
        "events": error_of(lambda: req("GET", f"/job/{victim}/events", token)),
        "logs": error_of(lambda: req("GET", f"/job/{victim}/logs", token)),
        "results": error_of(lambda: req("GET", f"/job/{victim}/result-folder-content",
                                        token)),
        "cancel": error_of(lambda: req("PUT", f"/job/{victim}/cancel",
                                       {**token, "jobId": victim})),
        "set": error_of(lambda: req("PUT", f"/job/{victim}", {**token, "param": {}})),
        "submit": error_of(lambda: req("POST", f"/job/{victim}/submit", token)),
        "folder": error_of(lambda: req("GET", f"/folder/{victim}", token)),
        "globus": error_of(lambda: req("POST", f"/folder/{victim}/download/globus-init",
                                       {**token, "jobId": victim})),
        "listed": [j["id"] for j in req("GET", "/user/job", token)["job"]],
    }


def foreign_host() -> dict:
    cg = compute("hub.elsewhere.example:8000")
    token = {"jupyterhubApiToken": cg.jupyterhubApiToken}
    return {"username": cg.username,
            "user": error_of(lambda: cg.client.request("GET", "/user", token)),
            "create": error_of(lambda: cg.client.request(
                "POST", "/job", {**token, "maintainer": "community_contribution"}))}


def through_proxy() -> dict:
    """The calls of a notebook on the hub, through the hub's proxy (GETs with bodies)."""
    cg = compute(os.environ["CG_HUB"])
    job = cg.create_job(hpc=HPC)
    job.set(localExecutableFolder={"type": "git", "gitId": APP}, param={"lines": 1})
    status = job.status(raw=True)
    cg.job = job
    cg.cancel_job()  # a draft: discarded
    return {"username": cg.username, "git": sorted(cg.list_git(raw=True)),
            "param": status["param"], "after_cancel": error_of(job.status)}


if __name__ == "__main__":
    result = {"alice": alice, "bob": bob, "foreign-host": foreign_host,
              "proxy": through_proxy}[sys.argv[1]]()
    print("RESULT " + json.dumps(result))
