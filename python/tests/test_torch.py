"""cgloo.torch, the torch.distributed backend, in real processes: every operation and dtype
against torch's gloo backend on the same inputs, under torchrun (static rendezvous with
--master_port, and --standalone: env://) and torch.multiprocessing.spawn (tcp://, file://),
with cgloo as the default group and as a new_group; DDP training on cgloo against gloo; a
rank killed or frozen during training.

The rank programs run each batch of checks once per run (torch_rank_program.py, with the checks
in torch_checks.py); the tests below read their results, one test per case."""

import importlib.util
import json
import os
import random
import socket
import subprocess
import sys

import pytest

if importlib.util.find_spec("torch") is None:
    pytest.skip("torch is missing (apt-get install python3-torch)", allow_module_level=True)

import cgloo  # noqa: E402
import cgloo_testlib  # noqa: E402
import torch_cases  # noqa: E402

PROGRAM = os.path.join(cgloo_testlib.HERE, "torch_rank_program.py")
# Debian's torch 1.13 torchrun crashes on Python 3.11 with its default --redirects 0 --tee 0.
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--redirects", "1", "--tee", "1"]


def free_port():
    """A free port below the ephemeral range: the rank that listens on it binds it seconds
    later (after importing torch), and in between the tests running beside these bind
    ephemeral ports by the thousand."""
    while True:
        port = random.randrange(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                pass


def results(out, size):
    """Each rank's JSON report."""
    return [json.load(open(out / f"rank{r}.json")) for r in range(size)]


# The ranks of this run every collective in the background (cgloo's non-blocking forms,
# completed by the group's completer thread), however small.
ALL_ASYNC = {"CGLOO_TORCH_ASYNC_MIN_BYTES": "0"}


def launch(make_cmd, out, size, timeout=240, env=None):
    """Run make_cmd(port) to the end, again with another port if someone took the first."""
    for _ in range(3):
        p = subprocess.run([str(c) for c in make_cmd(free_port())], timeout=timeout,
                           env=dict(cgloo_testlib.child_env(), **(env or {})),
                           capture_output=True, text=True)
        if p.returncode == 0 or "address already in use" not in (p.stdout + p.stderr).lower():
            break
    assert p.returncode == 0, p.stdout[-5000:] + p.stderr[-10000:]
    return results(out, size)


@pytest.fixture(scope="module")
def torchrun_full(tmp_path_factory):
    """Two ranks from torchrun's static rendezvous (env://); cgloo is the default group and
    runs every collective in the background."""
    out = tmp_path_factory.mktemp("torchrun")
    return launch(lambda port: TORCHRUN + ["--nproc_per_node", "2", "--master_port", port,
                                           PROGRAM, out, "full"], out, 2, env=ALL_ASYNC)


@pytest.fixture(scope="module")
def spawn_full(tmp_path_factory):
    """Three ranks from torch.multiprocessing.spawn over tcp://; gloo is the default group,
    cgloo a new_group; a subgroup of ranks 0 and 2 too. Collectives below 1 MiB block."""
    out = tmp_path_factory.mktemp("spawn")
    return launch(lambda port: [sys.executable, PROGRAM, out, "full", "--spawn", "3", "--init",
                                f"tcp://127.0.0.1:{port}", "--default", "gloo", "--subgroup"],
                  out, 3)


def case_params():
    """Every case (every operation and dtype)."""
    return [pytest.param(case, id=case) for case in torch_cases.cases()]


def check(reports, case):
    for rank, report in enumerate(reports):
        status = report["checks"].get(case, "not run: the ranks stopped at an earlier failure")
        assert status == "ok", f"rank {rank}: {status}"


@pytest.mark.parametrize("case", case_params())
def test_torchrun_2_ranks(torchrun_full, case):
    check(torchrun_full, case)


@pytest.mark.parametrize("case", case_params())
def test_spawn_3_ranks(spawn_full, case):
    check(spawn_full, case)


def test_backend_name(torchrun_full, spawn_full):
    assert {r["backend"] for r in torchrun_full + spawn_full} == {"cgloo"}


def test_import_cgloo_leaves_torch_alone():
    """Only import cgloo.torch imports torch, so that cgloo stays light without it."""
    code = "import sys, cgloo; assert 'torch' not in sys.modules, 'torch imported'"
    p = cgloo_testlib.run_python(code)
    assert p.returncode == 0, p.stderr


def test_barrier(torchrun_full):
    assert torchrun_full[0]["checks"]["barrier"] == "ok"


def test_unsupported_raises_clearly(torchrun_full):
    """GPU (here meta) tensors, PREMUL_SUM, AVG on integers and several tensors per process
    raise NotImplementedError naming the operation."""
    errors = {k: v for k, v in torchrun_full[0]["checks"].items() if k.startswith("error/")}
    assert errors == {k: "ok" for k in errors} and len(errors) == 4, errors


def test_ddp_matches_gloo_exactly(torchrun_full):
    """300 steps of DDP on 2 ranks: the same parameters as on gloo, bit for bit."""
    assert [r["ddp_max_diff"] for r in torchrun_full] == [0.0, 0.0]


def test_ddp_3_ranks_matches_gloo(spawn_full):
    """On 3 ranks the two backends sum in different orders: equal to 1e-6."""
    for r in spawn_full:
        assert r["ddp_max_diff"] <= 1e-6, r["ddp_max_diff"]


def test_subgroup(spawn_full):
    """new_group([0, 2]) on cgloo: its members run the quick cases, rank 1 is not in it."""
    assert spawn_full[1]["subgroup"] == {}
    for rank in (0, 2):
        sub = spawn_full[rank]["subgroup"]
        assert sub and sub == {k: "ok" for k in sub}, sub


def test_torchrun_standalone(tmp_path):
    """torchrun --standalone (its c10d rendezvous), every operation on two dtypes."""
    reports = launch(lambda port: TORCHRUN + ["--standalone", "--nproc_per_node", "2", PROGRAM,
                                              tmp_path, "quick"], tmp_path, 2)
    for case in torch_cases.cases(torch_cases.QUICK_DTYPES):
        check(reports, case)


def test_spawn_file_init(tmp_path):
    """file:// through torch.multiprocessing.spawn, every operation on two dtypes."""
    reports = launch(lambda port: [sys.executable, PROGRAM, tmp_path, "quick", "--spawn", "2",
                                   "--init", f"file://{tmp_path}/store"], tmp_path, 2)
    for case in torch_cases.cases(torch_cases.QUICK_DTYPES):
        check(reports, case)


def run_kill(tmp_path, how, timeout, extra_env=None):
    """Three ranks over env:// training with DDP; rank 1 dies or freezes. The reports of
    ranks 0 and 2."""
    env = dict(cgloo_testlib.child_env(), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()),
               WORLD_SIZE="3", **(extra_env or {}))
    procs = [subprocess.Popen([sys.executable, PROGRAM, str(tmp_path), f"kill-{how}",
                               "--timeout", str(timeout)], env=dict(env, RANK=str(r)),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for r in range(3)]
    try:
        logs = [procs[r].communicate(timeout=60)[0] for r in (0, 2)]
    finally:
        for p in procs:
            p.kill()  # rank 1, frozen by SIGSTOP, stays until killed
            p.wait()
    assert [procs[r].returncode for r in (0, 2)] == [0, 0], logs
    return [json.load(open(tmp_path / f"rank{r}.json")) for r in (0, 2)]


def test_killed_rank_raises_at_once(tmp_path):
    """SIGKILL on rank 1: the others' DDP step raises well within the 10 s timeout, and every
    later call raises at once."""
    for r in run_kill(tmp_path, "sigkill", 10):
        assert r["error"] and "PeerError" in r["error"], r
        assert r["took"] < 3, r
        assert "unusable" in r["later"] and r["later_took"] < 1, r


def test_killed_rank_raises_with_background_collectives(tmp_path):
    """The same with DDP's all-reduces in the background: the failure reaches torch's C++ code
    as a completed Future, and the group's next call raises it, naming the peer."""
    for r in run_kill(tmp_path, "sigkill", 10, ALL_ASYNC):
        assert r["error"] and "PeerError" in r["error"], r
        assert r["took"] < 3, r
        assert "unusable" in r["later"] and r["later_took"] < 1, r


def test_frozen_rank_times_out(tmp_path):
    """SIGSTOP on rank 1: the others' DDP step raises once the 3 s timeout is up."""
    for r in run_kill(tmp_path, "sigstop", 3):
        assert r["error"] and "TimeoutError" in r["error"], r
        assert 2.9 < r["took"] < 6, r
        assert "unusable" in r["later"] and r["later_took"] < 1, r
