"""torchrun from the tests: a free port, a launch that must succeed, and one worker run in 1 and in 2 processes."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(args, nproc):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
               f"--master_port={free_port()}", *args]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def one_and_two_processes(worker: Path, out_dir: Path) -> tuple[dict, dict]:
    """Run ``worker <out.json>`` once as a plain process and once under ``torchrun`` with 2 gloo ranks; return the
    two JSON results (the worker writes its file from rank 0)."""
    single = subprocess.run([sys.executable, str(worker), str(out_dir / "one.json")], capture_output=True, text=True,
                            timeout=300)
    assert single.returncode == 0, single.stderr[-3000:]
    torchrun([str(worker), str(out_dir / "two.json")], nproc=2)
    return tuple(json.loads((out_dir / f"{n}.json").read_text()) for n in ("one", "two"))
