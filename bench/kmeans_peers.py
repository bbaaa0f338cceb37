#!/usr/bin/env python3
"""Peer k-means runs for bench_kmeans (scripts/bench.sh kmeans-vs-faiss).

Reads N x d fp32 points and K x d fp32 initial centroids (raw little-endian files), runs one peer
for exactly `--iters` Lloyd iterations from those centroids with no subsampling, then a final
assignment, writes the final centroids (K x d fp32) to --out and prints one JSON line
{"impl", "seconds", "iters"}. Timing covers the iterations and the final assignment, not loading.
"""
import argparse
import json
import time

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", required=True)
    ap.add_argument("--init", required=True)
    ap.add_argument("--d", type=int, required=True)
    ap.add_argument("--iters", type=int, required=True)
    ap.add_argument("--impl", choices=["faiss", "sklearn-lloyd", "sklearn-elkan"], required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    x = np.fromfile(a.points, dtype=np.float32).reshape(-1, a.d)
    init = np.fromfile(a.init, dtype=np.float32).reshape(-1, a.d)
    k = init.shape[0]
    if a.impl == "faiss":
        import faiss
        clus = faiss.Clustering(a.d, k)
        clus.niter = a.iters
        clus.max_points_per_centroid = (1 << 31) - 1  # never subsample (an int in faiss)
        clus.min_points_per_centroid = 1
        clus.seed = 1234
        faiss.copy_array_to_vector(init.ravel(), clus.centroids)  # same start for everyone
        index = faiss.IndexFlatL2(a.d)
        t0 = time.perf_counter()
        clus.train(x, index)
        index.reset()
        cen = faiss.vector_to_array(clus.centroids).reshape(k, a.d)
        index.add(cen)
        index.search(x, 1)  # final reassignment, as the reference does
        secs = time.perf_counter() - t0
    else:
        from sklearn.cluster import KMeans
        algo = "lloyd" if a.impl == "sklearn-lloyd" else "elkan"
        km = KMeans(n_clusters=k, init=init, n_init=1, max_iter=a.iters, tol=0.0, algorithm=algo)
        t0 = time.perf_counter()
        km.fit(x)  # ends with its own final assignment (labels_)
        secs = time.perf_counter() - t0
        cen = km.cluster_centers_.astype(np.float32)
    cen.astype(np.float32).tofile(a.out)
    print(json.dumps({"impl": a.impl, "seconds": secs, "iters": a.iters}))


if __name__ == "__main__":
    main()
