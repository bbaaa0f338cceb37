#!/usr/bin/env python3
"""PyTorch brute-force Lloyd k-means on the GPU: the baseline of bench/gpu/bench_kmeans_gpu.cu.

Same points and initial centroids as the cluscomp run (raw float32 files the benchmark writes).
Per iteration: distances in GEMM form ||x||^2 - 2 x.c + ||c||^2 over chunks of points (a chunk's
(chunk, K) matrix bounded to ~4 GiB), argmin, then the means by index_add_ (float32 atomics: not
deterministic, the usual PyTorch way), empty clusters keep their centroid. Times `ITERS` iterations
after one warm-up with CUDA events; prints `TORCH iter_ms=...` (median).

    kmeans_torch.py POINTS.f32 INIT.f32 D K [ITERS]
"""
import sys

import numpy as np
import torch


def main():
    if len(sys.argv) < 5:
        print(__doc__)
        sys.exit(2)
    points, init, d, k = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    iters = int(sys.argv[5]) if len(sys.argv) > 5 else 3
    if not torch.cuda.is_available():
        print("TORCH no CUDA device")
        sys.exit(1)
    dev = torch.device("cuda")
    x = torch.from_numpy(np.fromfile(points, dtype=np.float32).reshape(-1, d)).to(dev)
    c = torch.from_numpy(np.fromfile(init, dtype=np.float32).reshape(k, d)).to(dev)
    n = x.shape[0]
    chunk = max(1024, (1 << 30) // k)  # (chunk, K) fp32 distances: ~4 GiB
    x2 = (x * x).sum(1)
    codes = torch.empty(n, dtype=torch.int64, device=dev)

    def iteration(c):
        c2 = (c * c).sum(1)
        for s in range(0, n, chunk):
            e = min(n, s + chunk)
            dist = torch.addmm(c2.unsqueeze(0), x[s:e], c.t(), beta=1.0, alpha=-2.0)
            dist.add_(x2[s:e].unsqueeze(1))
            codes[s:e] = dist.argmin(1)
        sums = torch.zeros_like(c).index_add_(0, codes, x)
        counts = torch.zeros(k, device=dev, dtype=torch.float32).index_add_(0, codes, torch.ones(n, device=dev))
        nonempty = counts > 0
        return torch.where(nonempty.unsqueeze(1), sums / counts.clamp(min=1).unsqueeze(1), c)

    c = iteration(c)  # warm-up
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        c = iteration(c)
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    times.sort()
    print(f"torch {torch.__version__} on {torch.cuda.get_device_name(0)}: N = {n}, d = {d}, K = {k}, "
          f"chunk {chunk}, per-iteration ms {['%.1f' % t for t in times]}")
    print(f"TORCH iter_ms={times[len(times) // 2]:.3f}")


if __name__ == "__main__":
    main()
