#!/usr/bin/env bash
# Rank programs under the launchers people use, with no CGLOO_ variable set: Debian's real
# mpirun (Open MPI) and torchrun (python3-torch; both of its stores), and Slurm and MPICH/PMI by
# hand (neither is installed: each process gets the variables srun or mpiexec would set). Each
# run is the rank program's full check of point-to-point and collectives at 3 ranks.
#   test_launchers.sh RANK_PROGRAM PYTHON_DIR [MPI_PROGRAM]
set -u
prog=$1
pydir=$2
mpiprog=${3:-}
passed=0
failed=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT
check() {
  local name=$1
  shift
  local bound=(timeout 120)
  declare -F "$1" >/dev/null && bound=() # a function here bounds its own processes
  if "${bound[@]}" "$@" >"$log" 2>&1; then
    passed=$((passed + 1))
    echo "ok   $name"
  else
    failed=$((failed + 1))
    echo "FAIL $name"
    sed 's/^/  /' "$log" | tail -30
  fi
}
skip() { echo "skip $1: $2"; }

# Every variable a launcher or cgloo-run might have left in our own environment.
clean=(env -u CGLOO_RANK -u CGLOO_SIZE -u CGLOO_STORE -u CGLOO_LOCAL_RANK -u CGLOO_LOCAL_SIZE
  -u CGLOO_RUN_ID -u CGLOO_WATCH_STORE -u RANK -u WORLD_SIZE -u OMPI_COMM_WORLD_RANK
  -u OMPI_COMM_WORLD_SIZE -u PMI_RANK -u PMI_SIZE -u SLURM_PROCID -u SLURM_NTASKS)

mpirun_args=(--allow-run-as-root --oversubscribe -n 3)
if command -v mpirun >/dev/null; then
  check mpirun_3 "${clean[@]}" mpirun "${mpirun_args[@]}" "$prog"
  if /usr/bin/python3 -c 'import numpy' 2>/dev/null && [ -d "$pydir/cgloo" ]; then
    check mpirun_python_3 "${clean[@]}" PYTHONPATH="$pydir:$(dirname "$0")/../python/tests" \
      mpirun "${mpirun_args[@]}" -x PYTHONPATH /usr/bin/python3 \
      "$(dirname "$0")/../python/tests/cgloo_rank_program.py" all
  else
    skip mpirun_python_3 "the Python package is not built (python3-dev, python3-numpy)"
  fi
  if [ -n "$mpiprog" ]; then
    check cgloo_mpi_3 "${clean[@]}" mpirun "${mpirun_args[@]}" "$mpiprog"
  fi
else
  skip mpirun_3 "mpirun is not installed (apt-get install openmpi-bin)"
fi

# torchrun crashes on Python 3.11 with its default --redirects 0 --tee 0 (Debian's 1.13).
torchrun=(/usr/bin/python3 -m torch.distributed.run --redirects 1 --tee 1 --nproc_per_node 3)
if /usr/bin/python3 -c 'import torch.distributed.run' 2>/dev/null; then
  # Static rendezvous: the agent serves a PyTorch TCPStore at --master_port. The port is one
  # that was free a moment ago; another process may take it meanwhile, so that is retried.
  torchrun_static() {
    local try out port
    for try in 1 2 3; do
      port=$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
      out=$(timeout 120 "${clean[@]}" "${torchrun[@]}" --nnodes 1 --master_addr 127.0.0.1 \
        --master_port "$port" --no_python "$prog" 2>&1) && return 0
      grep -q "Address already in use" <<<"$out" || break
    done
    echo "$out"
    return 1
  }
  check torchrun_agent_store_3 torchrun_static
  # --standalone (c10d rendezvous): nothing serves at MASTER_PORT; rank 0 does.
  check torchrun_standalone_3 "${clean[@]}" "${torchrun[@]}" --standalone --no_python "$prog"
else
  skip torchrun_3 "torch is not installed for /usr/bin/python3 (apt-get install python3-torch)"
fi

# run_by_hand starts 3 ranks, giving rank r the variables "$@" with {r} replaced by r.
run_by_hand() {
  local pids="" status=0
  for r in 0 1 2; do
    timeout 120 "${clean[@]}" "${@//\{r\}/$r}" "$prog" &
    pids="$pids $!"
  done
  for p in $pids; do wait "$p" || status=1; done
  return $status
}
job=$$
check slurm_one_node_3 run_by_hand SLURM_PROCID={r} SLURM_NTASKS=3 SLURM_LOCALID={r} \
  SLURM_JOB_ID="$job" SLURM_STEP_ID=0 SLURM_JOB_NODELIST=localhost
# Two nodes in the list: rank 0 serves on every interface, the others dial the first node.
check slurm_two_nodes_3 run_by_hand SLURM_PROCID={r} SLURM_NTASKS=3 SLURM_LOCALID={r} \
  SLURM_JOB_ID="$job" SLURM_STEP_ID=1 'SLURM_JOB_NODELIST=localhost,nodeb[1-2]'
check pmi_3 run_by_hand PMI_RANK={r} PMI_SIZE=3 MPI_LOCALRANKID={r} MPI_LOCALNRANKS=3 \
  PMI_JOBID="pmi-$job"

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
