"""Samples per second of the event-frame input pipeline, with and without the bit-packed frame cache.

    python benchmarks/frame_pipeline.py [--root DIR] [--n-time-bins 100] [--batch-size 128] [--device cuda]

On the N-MNIST recordings under ``--root`` (default ``../shared/data/nmnist_small``), side by
side in one process (each pass of the loaders alternates, so load on the machine hits all alike):

* ``read_and_frame``: today's path without the cache -- every sample's file read and framed
  by tonic's ``ToFrame`` at access (``--data.frame_cache false``), batches of ``--batch-size``;
* ``cache_build``: building the cache once (read + frame + ``np.packbits`` every recording,
  written atomically), timed separately;
* ``cache_cpu_unpack``: shuffled batches read from the memory-mapped cache and unpacked to
  float32 on the CPU (the default data path);
* ``cache_packed_loader``: the host side of the next one alone -- shuffled packed ``uint8``
  batches gathered from the mapped file, not unpacked (what the CPU can feed a GPU);
* ``cache_packed_to_<device>``: shuffled packed ``uint8`` batches (``PackedFrames``) moved to
  the device and unpacked there with ``unpack_bits`` (``--data.unpack_on_device true``);
* ``unpack_kernel_<device>``: ``unpack_bits`` alone on a packed batch already on the device;
* ``ones_index_build``: deriving the index of every recording's ones from the packed cache
  once (``FrameCache.build_ones_index``, what ``setup`` does with ``--data.sparse_input true``),
  timed separately;
* ``cache_sparse_batches``: shuffled ``SparseFrames`` batches (CSR indices of the frames and
  their transpose) assembled from that index (``--data.sparse_input true``; on the CPU).

The cache lives in a temporary folder (the user's cache is neither used nor changed).
Writes ``benchmarks/results/frame_pipeline.json`` (``--output``).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, RandomSampler

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from measure import sync  # noqa: E402

from lightning_local.files import write_text_atomic  # noqa: E402

FULL_NMNIST_RECORDINGS = 70_000  # 60,000 train + 10,000 test


def _seconds(pass_fn, device: torch.device) -> float:
    """Wall time of one ``pass_fn()``, device work included."""
    sync(device)
    start = time.perf_counter()
    pass_fn()
    sync(device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(HERE.parents[1] / "shared" / "data" / "nmnist_small"))
    parser.add_argument("--n-time-bins", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5, help="passes per contender (median)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--output", default=str(HERE / "results" / "frame_pipeline.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="frame_pipeline_") as scratch:
        os.environ["LIGHTNING_LOCAL_CACHE"] = scratch  # file-check verdicts and frames stay out of ~/.cache
        report = measure(args, torch.device(args.device), Path(scratch))
    write_text_atomic(args.output, json.dumps(report, indent=2) + "\n")
    print(f"{report['recordings']} recordings, T={args.n_time_bins}, {report['num_inputs']} inputs, "
          f"batch {args.batch_size}, device {report['device']}")
    for name, row in report["results"].items():
        print(f"  {name:28s} {row['samples_per_s']:>12,.0f} samples/s")
    print(f"  cache: {report['packed_bytes_per_sample']} B/sample "
          f"({report['full_nmnist_cache_gb_estimate']} GB for all of N-MNIST); ones index: "
          f"{report['ones_index_bytes_per_sample']:,.0f} B/sample ({report['ones_index_vs_cache_file']}x the cache file, "
          f"{report['ones_density']:.2%} ones)")
    print(f"wrote {args.output}")


def measure(args: argparse.Namespace, device: torch.device, scratch: Path) -> dict:
    """Build the cache in ``scratch`` and time every contender; the report as a dict."""
    from lightning_local.data import NMNIST, EventFrameDataset
    from lightning_local.data.frame_cache import FrameCache, PackedFrames, SparseBatch, SparseSamples, unpack_bits

    module = NMNIST(root=args.root, download=False, n_time_bins=args.n_time_bins, frame_cache=False)
    module.setup("fit")
    records = [r for split in (module.train_dataset, module.val_dataset, module.test_dataset) for r in split.records]
    plain = EventFrameDataset(records, module.read_events, module.to_frames)
    num_inputs, samples = module.num_inputs, len(records)

    start = time.perf_counter()
    settings = {"benchmark": "frame_pipeline", "n_time_bins": args.n_time_bins}
    cache = FrameCache.open([r.path for r in records], plain.flat_frames, (args.n_time_bins, num_inputs), settings,
                            "benchmark", scratch / "frames")
    build_seconds = time.perf_counter() - start
    start = time.perf_counter()
    cache.build_ones_index()
    index_seconds = time.perf_counter() - start
    cached = EventFrameDataset(records, module.read_events, module.to_frames, cache, range(samples))
    packed = PackedFrames(cache, range(samples), [r.label for r in records])
    sparse = SparseSamples(cache, range(samples), [r.label for r in records])
    generator = torch.Generator().manual_seed(0)

    def loader(dataset, shuffle: bool) -> DataLoader:
        sampler = RandomSampler(dataset, generator=generator) if shuffle else None
        collate = SparseBatch(args.n_time_bins, num_inputs) if dataset is sparse else None
        return DataLoader(dataset, batch_size=args.batch_size, sampler=sampler, collate_fn=collate)

    def drain(dataset, shuffle: bool = True):
        """One pass over a loader of ``dataset``, as a contender."""
        return lambda: collections.deque(loader(dataset, shuffle), maxlen=0)

    def cache_packed_to_device() -> None:
        for frames, _ in loader(packed, shuffle=True):
            unpack_bits(frames.to(device, non_blocking=True), num_inputs)

    batch = torch.from_numpy(cache.packed(list(range(min(args.batch_size, samples))))).to(device)
    kernel_batches = 50

    def unpack_kernel() -> None:
        for _ in range(kernel_batches):
            unpack_bits(batch, num_inputs)

    # Equal frames first: the contenders must give the same frames, bit for bit.
    for i in range(0, samples, max(1, samples // 40)):
        assert torch.equal(cached[i][0], plain[i][0])
    first_packed = next(iter(loader(packed, shuffle=False)))[0].to(device)
    first_dense = next(iter(loader(cached, shuffle=False)))[0]
    assert torch.equal(unpack_bits(first_packed, num_inputs).cpu(), first_dense)
    assert torch.equal(next(iter(loader(sparse, shuffle=False)))[0].to_dense(), first_dense)

    contenders = {
        "read_and_frame": (drain(plain, shuffle=False), samples),
        "cache_cpu_unpack": (drain(cached), samples),
        "cache_packed_loader": (drain(packed), samples),
        "cache_sparse_batches": (drain(sparse), samples),
        f"cache_packed_to_{device.type}": (cache_packed_to_device, samples),
        f"unpack_kernel_{device.type}": (unpack_kernel, kernel_batches * len(batch)),
    }
    for fn, _ in contenders.values():  # warm-up: page cache, allocator, first CUDA launches
        fn()
    seconds: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(args.repeats):  # interleaved passes
        for name, (fn, _) in contenders.items():
            seconds[name].append(_seconds(fn, device))
    table = {}
    for name, (_, count) in contenders.items():
        median = statistics.median(seconds[name])
        table[name] = {"samples_per_s": round(count / median, 1), "seconds_per_pass": round(median, 4),
                       "samples_per_pass": count, "passes": args.repeats}
    table["cache_build"] = {"samples_per_s": round(samples / build_seconds, 1), "seconds": round(build_seconds, 3),
                            "samples": samples}
    table["ones_index_build"] = {"samples_per_s": round(samples / index_seconds, 1), "seconds": round(index_seconds, 3),
                                 "samples": samples}
    bytes_per_sample = cache.array.shape[1] * cache.array.shape[2]
    index_bytes = cache.ones_path.stat().st_size
    ones = sum(len(indices) for indices in cache.sample_indices(range(samples)))
    return {
        "root": str(Path(args.root).resolve()),
        "recordings": samples,
        "n_time_bins": args.n_time_bins,
        "num_inputs": num_inputs,
        "batch_size": args.batch_size,
        "device": str(device) + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""),
        "cpu_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cache_file_bytes": cache.path.stat().st_size,
        "packed_bytes_per_sample": bytes_per_sample,
        "float32_bytes_per_sample": args.n_time_bins * num_inputs * 4,
        "full_nmnist_cache_gb_estimate": round(FULL_NMNIST_RECORDINGS * bytes_per_sample / 1e9, 2),
        "ones_index_file_bytes": index_bytes,
        "ones_index_bytes_per_sample": round(index_bytes / samples, 1),
        "ones_index_vs_cache_file": round(index_bytes / cache.path.stat().st_size, 3),
        "ones_density": round(ones / (samples * args.n_time_bins * num_inputs), 4),
        "speedup_vs_read_and_frame": {
            name: round(row["samples_per_s"] / table["read_and_frame"]["samples_per_s"], 1)
            for name, row in table.items() if name != "read_and_frame"
        },
        "results": table,
    }


if __name__ == "__main__":
    main()
