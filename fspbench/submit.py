"""``fspbench submit``: the same grid as ``fspbench run``, as a Ray job on a cluster's job server.

The project folder travels as the job's working_dir (results, checkpoints and git data
excluded); the job runs ``python -m fspbench.cli run BENCHMARK --results DIR --address auto``
on the head node, its logs are streamed here, and the job's outcome is the exit status.
Token authentication is Ray's own: with ``RAY_AUTH_MODE=token`` the client reads
``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import time
from pathlib import Path

import fspbench
from fspbench.errors import BadInput
from fspbench.grid import resolve_benchmark
from fspbench.mlflow_sink import uri_problem

# never uploaded: results and checkpoints can be large, and the cluster has its own copies
EXCLUDES = ["results/", "reports/", ".git/", ".nox/", ".venv/", "**/__pycache__/", "*.pt", "*.pth", "*.ckpt"]


def project_root() -> Path:
    """The checkout holding the package and benchmarks/ (what travels as the job's working_dir)."""
    root = Path(fspbench.__file__).resolve().parent.parent
    if not (root / "benchmarks").is_dir() or not (root / "pyproject.toml").is_file():
        raise BadInput("submit: fspbench is not installed from a project checkout (pip install -e .); "
                       "submit from a clone so the code and benchmarks/ can travel with the job")
    return root


def _client(address: str):  # noqa: ANN202 - Ray's class, imported late
    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobSubmissionClient

    if not address.startswith(("http://", "https://")):
        raise BadInput(f"--address: expected the job server's URL, e.g. http://HEAD:8265; got {address!r}")
    try:
        return JobSubmissionClient(address)
    except AuthenticationError:
        raise BadInput(f"--address {address}: the cluster uses token authentication; set RAY_AUTH_MODE=token "
                       "and RAY_AUTH_TOKEN (or ~/.ray/auth_token) to its token") from None
    except (ConnectionError, RuntimeError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise BadInput(f"--address {address}: no Ray job server answers there ({first[:200]}); "
                       "check the dashboard address and port (default 8265)") from None


def submit(benchmark: str, address: str, results: str, poll_s: float = 1.0, autoscaling: bool = False,
           mlflow: str | None = None) -> int:
    """Submit the grid, stream its logs, and return 0 if the job succeeded, else its exit code or 1.

    ``autoscaling``: passed on to ``fspbench run`` (wait for nodes the cluster's autoscaler adds).
    ``mlflow``: passed on as ``--mlflow``; checked for its form here, for an answer by the job (on the head
    node, which may reach a server this machine does not).
    """
    from ray.job_submission import JobStatus

    problem = uri_problem(mlflow) if mlflow else None
    if problem:
        raise BadInput(f"--mlflow: {problem}")

    root = project_root()
    path = resolve_benchmark(benchmark).resolve()
    try:
        rel = path.relative_to(root)
    except ValueError:
        raise BadInput(f"{benchmark}: submit needs a benchmark file inside the project ({root}), "
                       "since only the project folder travels to the cluster") from None
    client = _client(address)
    entrypoint = " ".join(shlex.quote(a) for a in
                          ["python", "-m", "fspbench.cli", "run", str(rel), "--results", results, "--address", "auto",
                           *(["--autoscaling"] if autoscaling else []), *(["--mlflow", mlflow] if mlflow else [])])
    runtime_env: dict[str, object] = {"working_dir": str(root), "excludes": EXCLUDES}
    if results.startswith("s3://"):  # the job's driver reaches the bucket with this shell's endpoint and credentials
        from fspbench.store import AWS_ENV

        runtime_env["env_vars"] = {k: v for k in AWS_ENV if (v := os.environ.get(k))}
    job_id = client.submit_job(entrypoint=entrypoint, runtime_env=runtime_env)
    print(f"[fspbench] submitted job {job_id} to {address}: {entrypoint}", flush=True)

    async def tail() -> None:
        async for chunk in client.tail_job_logs(job_id):
            print(chunk, end="", flush=True)

    try:
        asyncio.run(tail())
    except KeyboardInterrupt:
        print(f"\n[fspbench] stopped following; the job goes on. Stop it with: ray job stop {job_id}")
        return 130
    while (status := client.get_job_status(job_id)) not in {JobStatus.SUCCEEDED, JobStatus.FAILED,
                                                             JobStatus.STOPPED}:
        time.sleep(poll_s)
    info = client.get_job_info(job_id)
    print(f"[fspbench] job {job_id}: {status.value}" + (f" ({info.message})" if info.message else ""), flush=True)
    if status == JobStatus.SUCCEEDED:
        return 0
    code = getattr(info, "driver_exit_code", None)
    return int(code) if code else 1
