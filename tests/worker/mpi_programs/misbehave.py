"""Rank programs that fail on purpose, to test the launcher: ``exit0``/``exit3`` (rank 1
calls sys.exit inside nncore's abort guard), ``raise`` (rank 1 raises
after a barrier), ``hang`` (every rank sleeps forever), ``slow`` (trains nothing, just
prints an event per second until killed)."""
import json
import sys
import time

from mpi4py import MPI

from nncore.distributed import MPIReducer, abort_unless_finished

mode = sys.argv[1]
comm = MPI.COMM_WORLD
if mode == "raise":
    comm.Barrier()
    if comm.Get_rank() == 1:
        raise RuntimeError("rank 1 broke on purpose")
    comm.Barrier()  # rank 0 would wait here forever without MPI_Abort
elif mode == "hang":
    while True:
        time.sleep(1)
elif mode == "slow":
    while True:
        if comm.Get_rank() == 0:
            print(json.dumps({"event": "tick"}), flush=True)
        comm.Barrier()
        time.sleep(0.2)
elif mode in ("exit0", "exit3"):
    with abort_unless_finished(MPIReducer()):
        comm.Barrier()
        if comm.Get_rank() == 1:
            sys.exit(int(mode[-1]))
        comm.Barrier()
