"""Embed a Sentinel-2 scene on a local dask cluster and stream the grid to Zarr.

    python examples/dask_cluster.py SCENE_FOLDER --weights /path/to/DOFA_ViT_base_e100.pth

Each worker process loads the model once (the graph carries only its name and weights path, so the path
must exist on every worker). Workers get OMP_NUM_THREADS=1 from distributed; with few workers give each
several torch threads via the nanny environment, as below.
"""

import argparse

from dask.distributed import Client, LocalCluster, progress

import xrembed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("scene")
    parser.add_argument("--weights", default=None)
    parser.add_argument("--out", default="scene_dofa.zarr")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True)
    with Client(cluster) as client:
        print(client.dashboard_link)
        da = xrembed.open_raster(args.scene)
        emb = da.rsembed.embed("dofa", weights=args.weights)
        write = emb.to_dataset().to_zarr(args.out, mode="w", compute=False)
        future = client.compute(write)
        progress(future)
        future.result()
    print("wrote", args.out)


if __name__ == "__main__":  # required: worker processes are spawned
    main()
