"""The cost of one gloo all-reduce between two processes on this machine.

    python benchmarks/gloo_allreduce.py [--sizes 1,4096,46082] [--calls 3000]

``skmlp.dask`` all-reduces the gradients once per step; this measures that
collective alone (two idle processes, one torch thread each, a TCPStore on
localhost), so the per-step overhead in ``benchmarks/dask_distributed.py`` can
be told apart from skmlp's own work. 46,082 float32 values are W2's gradients
plus the batch weight (184 KB). Prints wall and CPU milliseconds per call.
"""

import argparse
import datetime
import socket
import time


def _worker(rank, port, size, calls, queue):
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    timeout = datetime.timedelta(seconds=60)
    store = dist.TCPStore("127.0.0.1", port, 2, rank == 0, timeout=timeout)
    group = dist.ProcessGroupGloo(store, rank, 2, timeout)
    tensor = torch.randn(size)
    for _ in range(50):  # warm up the connections
        group.allreduce([tensor]).wait()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        group.allreduce([tensor]).wait()
    queue.put((rank, (time.perf_counter() - wall) / calls * 1e3,
               (time.process_time() - cpu) / calls * 1e3))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv=None):
    import torch.multiprocessing as mp

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,4096,46082")
    parser.add_argument("--calls", type=int, default=3000)
    args = parser.parse_args(argv)
    ctx = mp.get_context("spawn")
    print("| float32 values | KB | wall ms per all-reduce | CPU ms per process |\n|---|---|---|---|")
    for size in (int(s) for s in args.sizes.split(",")):
        queue = ctx.Queue()
        port = _free_port()
        procs = [ctx.Process(target=_worker, args=(r, port, size, args.calls, queue))
                 for r in range(2)]
        for p in procs:
            p.start()
        results = [queue.get() for _ in procs]
        for p in procs:
            p.join()
        wall = max(r[1] for r in results)
        cpu = sum(r[2] for r in results) / 2
        print(f"| {size:,} | {size * 4 / 1000:.1f} | {wall:.3f} | {cpu:.3f} |")


if __name__ == "__main__":
    main()
