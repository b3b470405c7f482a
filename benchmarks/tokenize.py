"""Tokenizer benchmark: gc_lib's corpus tokenizer against Geneformer's ``TranscriptomeTokenizer`` (helical 3.1.4).

What: seconds end to end (``.h5ad`` on disk → tokenised dataset on disk), cells/s and peak memory of Geneformer's
``tokenize_data`` (own venv; one process whatever its ``nproc``), ours ``tokenize_files`` in one process (Parquet
shards, Arrow IPC shards, each with 1 thread and with 2: two shards at once, each read, ranked and written by its own
thread; ``build_corpus`` also in one process with 2 threads; Arrow IPC with 2 threads, and ``build_corpus`` with Arrow
IPC, also with the numba kernels, ``GC_LIB_KERNELS=numba``, beside the C kernels that run where they are built — column
``kernels``) and in ``--workers`` processes (Geneformer's gene order and medians, n_top = model_input_size = 2048,
library size 1e4 like Geneformer's n_counts × 1e4 normalisation), ours ``build_corpus`` (QC + medians + tokens) in each
shard format, and the **I/O floor** of each format measured the same way (one process reading the input's CSR slices
chunk by chunk and writing our shards' tables in that format, nothing else; with one thread and with two:
``_io_floor.py``), on one synthetic contract ``.h5ad`` (20,000 genes, 2,000–4,000 expressed per cell, integer counts)
that feeds both tools; a check of 50 cells' tokens against Geneformer's; and ``build_corpus``'s peak memory as cells
grow (``--memory-cells``; sparser cells, 200–600 genes each, so that 1M cells stay a few GB).
Why: speed is a feature, measured here next to the peer on the same input and cores (benchmarks/README.md).
How::

    bash benchmarks/geneformer_env.sh benchmarks/.venv-geneformer     # once: the peer's environment
    .venv/bin/python -P benchmarks/tokenize.py [--cells 20000] [--repeats 3] [--workers 2]
        [--memory-cells 100000,1000000] [--geneformer-venv PATH] [--workdir DIR] [--skip-geneformer] [--skip-memory]

Each run is a subprocess (imports and memory isolated). ``s`` is timed inside it around the work (imports excluded;
building the tokenizer and loading the ranking kernel included, and also given apart as ``set-up s``), ``wall s`` is the
whole subprocess; ``after set-up`` columns leave the set-up out (what a large input sees), and ``vs floor`` divides a
one-process ``tokenize_files`` run's seconds after set-up by the floor's of its shard format with one thread (the
issue's floor; it has no set-up), ``vs floor, same threads`` by the floor's with the run's threads; peak RSS is the
largest sum of the RSS of it and its children (polled every 50 ms); CPU s their user + system time. Before each run the
earlier runs' outputs are flushed to disk (``os.sync``, untimed), so no run pays for another's writeback. Times are
medians over ``--repeats``, peak RSS the largest. Results: printed, and in the workdir (default
``build/bench/tokenize``, which caches the inputs) as ``results.md`` and ``results.json`` (every run).
"""
import os
import sys

if sys.path and os.path.realpath(sys.path[0]) == os.path.dirname(os.path.realpath(__file__)):
    # this file is named tokenize.py (the name): with its folder first on sys.path it would shadow the
    # standard library's tokenize module, which numba and pandas import
    sys.exit("run this benchmark with `python -P benchmarks/tokenize.py …` (or `make bench`): -P keeps its folder "
             "off sys.path, where tokenize.py would shadow the standard library's tokenize")

import argparse
import contextlib
import json
import resource
import runpy
import shlex
import shutil
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import psutil
import pyarrow as pa
import scipy.sparse as sp

from gc_lib.corpus._count_store import row_reader
from gc_lib.corpus._kernels_native import first_pass_kernels
from gc_lib.corpus._kernels_native import kernel_name as first_pass_kernel_name
from gc_lib.corpus._native import KERNEL_VARIABLE
from gc_lib.corpus._rank_native import kernel_name, ranking_kernel
from gc_lib.corpus.builder import CorpusConfig, GeneAnnotation, build_corpus, shard_paths, tokenize_files
from gc_lib.corpus.shards import read_shard
from gc_lib.corpus.tokenizer import Tokenizer, rank_rows
from gc_lib.corpus.vocab import SPECIAL_TOKENS, build_vocabulary

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
INPUT = runpy.run_path(str(HERE / "_tokenize_input.py"))  # the synthetic input and Geneformer's dictionaries
N_GENES, SEED, DENSE, SPARSE, GF_OFFSET = (INPUT[k] for k in ("N_GENES", "SEED", "DENSE", "SPARSE", "GF_OFFSET"))
gene_ids, ensure_input, write_dictionaries = INPUT["gene_ids"], INPUT["ensure_input"], INPUT["write_dictionaries"]
FLOOR = runpy.run_path(str(HERE / "_io_floor.py"))  # the I/O floor, with one thread or several
ranked_tables, io_floor = FLOOR["ranked_tables"], FLOOR["io_floor"]
REPORT = runpy.run_path(str(HERE / "_report.py"))
md_table, cpu_facts = REPORT["md_table"], REPORT["cpu_facts"]
N_TOP, LIBRARY_SIZE, CHUNK = 2048, 1e4, 10_000  # CHUNK: cells per shard, ours (chunk_size) and the floor's
GF_PREFIX = "synthetic"                    # Geneformer's dataset name
F32_EPS = 2.0**-23                         # float32 rounding, relative: ratios closer than this may tie


def our_tokenizer(dicts: dict[str, str]) -> Tokenizer:
    """Our Tokenizer with Geneformer's gene order and medians, its n_top and library size."""
    tokens = json.loads(Path(dicts["token_dictionary_file"]).read_text())
    medians = json.loads(Path(dicts["gene_median_file"]).read_text())
    ids = sorted((g for g in tokens if not g.startswith("<")), key=tokens.get)
    vocab = build_vocabulary(pd.DataFrame({"gene_id": ids, "species": "human", "symbol": ids}))
    if list(vocab.genes["gene_id"]) != ids:
        raise RuntimeError("our vocabulary order differs from Geneformer's token dictionary")
    per_token = np.concatenate([np.full(len(SPECIAL_TOKENS), np.nan), [medians[g] for g in ids]])
    return Tokenizer(vocab, per_token, n_top=N_TOP, library_size=LIBRARY_SIZE)


def worker(spec: dict) -> None:
    """Inside the subprocess: one timed run of ours (``kind`` "files", "corpus" or "floor")."""
    start = time.perf_counter()
    if spec["kind"] == "floor":
        tokenizer, path = our_tokenizer(spec["dicts"]), Path(spec["input"])
        tables = ranked_tables(path, tokenizer, *tokenizer.column_tables(gene_ids(), "human"), CHUNK)
        floor = io_floor(path, tables, spec["format"], Path(spec["out"]), spec["threads"], CHUNK)
        return Path(spec["result"]).write_text(json.dumps(floor))
    if spec["kind"] == "files":
        tokenizer = our_tokenizer(spec["dicts"])
        rank_rows(sp.csr_matrix(np.ones((1, 1), np.float32)), np.array([4], np.int32), np.ones(1), n_top=1,
                  library_size=None, n_tokens=5)  # the ranking kernel loads (numba's compiles or loads its cache)
        setup = time.perf_counter() - start
        tokenize_files([spec["input"]], spec["out"], tokenizer, n_workers=spec["n_workers"], progress=False,
                       shard_format=spec["format"], threads=spec["threads"])
    else:  # every gene protein-coding, no orthologs: the bundle's gene tables are not needed
        setup = 0.0  # build_corpus makes its own tokenizer; its workers load the kernels as they start
        annotation = GeneAnnotation(pd.Series("protein_coding", index=gene_ids()),
                                    pd.DataFrame(columns=["mouse_id", "human_id", "homology_type"]))
        config = CorpusConfig(n_top=N_TOP, library_size=LIBRARY_SIZE, shard_format=spec["format"],
                              threads=spec["threads"])
        build_corpus([spec["input"]], spec["out"], config=config, annotation=annotation, n_workers=spec["n_workers"],
                     progress=False)
    Path(spec["result"]).write_text(json.dumps({"work_s": time.perf_counter() - start, "setup_s": setup,
                                                "kernel_used": kernels_used(spec["kind"])}))


def kernels_used(kind: str) -> str:
    """``c`` or ``numba``: the kernels a run used (the ranking kernel; ``build_corpus`` also the first pass's)."""
    ranking = kernel_name(ranking_kernel())
    first_pass = first_pass_kernel_name(first_pass_kernels())
    return ranking if kind != "corpus" or ranking == first_pass else f"{ranking} ranking, {first_pass} first pass"


class Run(NamedTuple):
    tool: str
    run: str
    kind: str        # "geneformer", "files", "corpus" or "floor"
    n_workers: int
    cores: int       # cores it can use (Geneformer: one process whatever its nproc)
    format: str = "parquet"  # our shard format
    threads: int = 1         # our threads per process
    kernel: str = "auto"     # our kernels (GC_LIB_KERNELS): the C libraries where built, else numba's

    @property
    def key(self) -> str:
        return f"{self.kind}-{self.n_workers}-{self.format}-{self.threads}-{self.kernel}"


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    with contextlib.suppress(psutil.Error):
        for p in [proc, *proc.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):  # a child may end between the listing and the reading
                total += p.memory_info().rss
    return total


def measure(run: Run, spec: dict, workdir: Path, gf_python: Path | None) -> dict:
    """Run one subprocess: its in-process work time, wall time, peak tree RSS and CPU time."""
    shutil.rmtree(spec["out"], ignore_errors=True)
    # the earlier runs' shards (~330 MB each) go to disk now, untimed: left dirty, the kernel's writeback of them ran
    # during whichever run came next and took a share of its two cores (the Arrow IPC floor swung 0.18–0.49 s)
    os.sync()
    spec, log = spec | {"result": str(workdir / "logs" / f"{run.key}.json")}, workdir / "logs" / f"{run.key}.log"
    if run.kind == "geneformer":
        cmd = [str(gf_python), "-P", str(HERE / "_geneformer_worker.py"), json.dumps(spec)]
    else:
        cmd = [sys.executable, "-P", str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    env = os.environ | {"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1",
                        "HF_HOME": str(workdir / "hf-home"), KERNEL_VARIABLE: run.kernel}
    cpu0, peak, start = resource.getrusage(resource.RUSAGE_CHILDREN), 0, time.perf_counter()
    with open(log, "w") as log_file:
        proc = psutil.Popen(cmd, cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT)
        while proc.poll() is None:
            peak = max(peak, tree_rss(proc))
            time.sleep(0.05)
    wall, cpu1 = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        raise RuntimeError(f"{run.tool} {run.run} failed (exit {proc.returncode}):\n{log.read_text()[-3000:]}")
    cpu = cpu1.ru_utime - cpu0.ru_utime + cpu1.ru_stime - cpu0.ru_stime
    return json.loads(Path(spec["result"]).read_text()) | {"wall_s": wall, "peak_rss_mb": peak / 2**20, "cpu_s": cpu}


def speed_runs(args, data: Path, dicts: dict, gf_python: Path | None) -> tuple[list[dict], dict[str, Path]]:
    """Every run ``--repeats`` times, interleaved; the last outputs stay for the check."""
    runs = [Run("Geneformer", f"tokenize_data (nproc={args.workers})", "geneformer", args.workers, 1)] * bool(gf_python)
    w = args.workers
    runs = list(dict.fromkeys(runs + [  # dict: with --workers 1, no repeated run
        Run("floor", "read + write, Parquet", "floor", 1, 1, "parquet"),
        Run("floor", "read + write, Arrow IPC", "floor", 1, 1, "arrow"),
        Run("floor", "read + write, Parquet, 2 threads", "floor", 1, 2, "parquet", 2),
        Run("floor", "read + write, Arrow IPC, 2 threads", "floor", 1, 2, "arrow", 2),
        Run("gc_lib", "tokenize_files, Parquet", "files", 1, 1, "parquet"),
        Run("gc_lib", "tokenize_files, Arrow IPC", "files", 1, 1, "arrow"),
        Run("gc_lib", "tokenize_files, Parquet, 2 threads", "files", 1, 2, "parquet", 2),
        Run("gc_lib", "tokenize_files, Arrow IPC, 2 threads", "files", 1, 2, "arrow", 2),
        Run("gc_lib", "tokenize_files, Arrow IPC, 2 threads", "files", 1, 2, "arrow", 2, "numba"),
        Run("gc_lib", "tokenize_files, Parquet", "files", w, w, "parquet"),
        Run("gc_lib", "tokenize_files, Arrow IPC", "files", w, w, "arrow"),
        Run("gc_lib", "build_corpus (QC + medians + tokens), Parquet", "corpus", w, w, "parquet"),
        Run("gc_lib", "build_corpus (QC + medians + tokens), Arrow IPC", "corpus", w, w, "arrow"),
        Run("gc_lib", "build_corpus (QC + medians + tokens), Arrow IPC, 2 threads", "corpus", 1, 2, "arrow", 2),
        Run("gc_lib", "build_corpus (QC + medians + tokens), Arrow IPC", "corpus", w, w, "arrow", kernel="numba")]))
    outs = {r.key: args.workdir / "out" / r.key for r in runs}
    common = {"input": str(data), "dicts": dicts, "data_dir": str(data.parent), "prefix": GF_PREFIX,
              "model_input_size": N_TOP}
    rows = []
    for repeat in range(args.repeats):
        for run in runs:
            spec = common | {"kind": run.kind, "n_workers": run.n_workers, "nproc": run.n_workers, "format": run.format,
                             "threads": run.threads, "out": str(outs[run.key]), "out_dir": str(outs[run.key])}
            rows.append(run._asdict() | {"repeat": repeat, "cells": args.cells}
                        | measure(run, spec, args.workdir, gf_python))
            print(f"  {run.tool} {run.run} ×{run.n_workers} #{repeat + 1}: {rows[-1]['work_s']:.2f} s", flush=True)
    return rows, outs


def memory_runs(args) -> list[dict]:
    """build_corpus on growing (sparser) inputs; each input is deleted after its run unless --keep-memory-inputs."""
    rows, run = [], Run("gc_lib", "build_corpus", "corpus", args.workers, args.workers)
    for n_cells in args.memory_cells:
        data, meta = ensure_input(args.workdir, n_cells, SPARSE)
        spec = {"kind": "corpus", "input": str(data), "n_workers": args.workers, "format": "parquet", "threads": 1,
                "out": str(args.workdir / "out" / f"memory-{n_cells}")}
        rows.append({"cells": n_cells, "input": meta} | measure(run, spec, args.workdir, None))
        print(f"  build_corpus {n_cells:,} cells: {rows[-1]['work_s']:.1f} s", flush=True)
        shutil.rmtree(spec["out"])
        if not args.keep_memory_inputs:
            shutil.rmtree(data.parent)
    return rows


def check_tokens(data: Path, dicts: dict, gf_out: Path, our_out: Path, n_cells: int, n_sample: int = 50) -> dict:
    """Compare Geneformer's and our tokens on random cells. A difference is explained by ties when, position by
    position, both genes have the same value up to float32 rounding (we rank float32 ratios, ties by token id;
    Geneformer float64 values with an unstable sort), and both sequences are descending."""
    gf = pa.concat_tables(pa.ipc.open_stream(p).read_all()  # HF save_to_disk: Arrow IPC streams
                          for p in sorted((gf_out / f"{GF_PREFIX}.dataset").glob("data-*.arrow")))["input_ids"]
    ours = pa.concat_tables(read_shard(p, ["input_ids", "values", "row"]) for p in shard_paths(our_out))
    position = pd.Series(np.arange(ours.num_rows), index=ours["row"].to_numpy())
    median_of = json.loads(Path(dicts["gene_median_file"]).read_text())
    medians = np.array([median_of[g] for g in gene_ids()])
    rows = np.random.default_rng(SEED).choice(n_cells, min(n_sample, n_cells), replace=False)
    identical, explained, values_ok = 0, 0, True
    with row_reader(data) as read:
        for row in map(int, rows):
            counts = read(row, row + 1)
            value = np.zeros(N_GENES)
            scaled = counts.data / counts.data.sum(dtype=np.float64) * LIBRARY_SIZE
            value[counts.indices] = scaled / medians[counts.indices]
            g_gf = np.asarray(gf[row].as_py()) - GF_OFFSET
            g_ours = np.asarray(ours["input_ids"][position[row]].as_py()) - len(SPECIAL_TOKENS)
            values_ok &= np.allclose(ours["values"][position[row]].as_py(), np.log2(1 + value[g_ours]), rtol=1e-6)
            same = np.array_equal(g_gf, g_ours)
            descending = all(np.all(np.diff(value[g]) <= F32_EPS * value[g][1:]) for g in (g_gf, g_ours))
            identical += same
            explained += same or (g_gf.size == g_ours.size and descending
                                  and np.allclose(value[g_gf], value[g_ours], rtol=F32_EPS, atol=0))
    return {"cells": len(rows), "identical": identical, "differing": len(rows) - identical,
            "explained_by_ties": explained - identical, "all_explained_by_ties": explained == len(rows),
            "our_values_match": bool(values_ok)}


def machine() -> dict:
    return cpu_facts() | {"ram_gb": round(psutil.virtual_memory().total / 2**30, 1)}


def speed_table(rows: list[dict]) -> list[str]:
    """One line per run: median times over the repeats, the largest peak RSS; ratios to Geneformer and to the floor
    of the run's shard format."""
    frame = pd.DataFrame(rows)
    frame["kernel_used"] = frame.get("kernel_used", pd.Series(dtype=str)).fillna("–")
    groups = list(frame.groupby(["kind", "n_workers", "format", "threads", "kernel"], sort=False))
    medians = {key: g["work_s"].median() for key, g in groups}
    after = {key: (g["work_s"] - g["setup_s"]).median() for key, g in groups}
    gf = next(((medians[k], after[k]) for k in medians if k[0] == "geneformer"), None)
    floors = {(fmt, threads): w for (kind, _, fmt, threads, _), w in medians.items() if kind == "floor"}
    lines = []
    for key, g in groups:
        (kind, _, fmt, threads, _), r, work, rest = key, g.iloc[0], medians[key], after[key]
        ours = kind in ("files", "corpus")
        floored = kind == "files" and r["n_workers"] == 1  # the tokenizer in one process: the floor's own work
        kernels = "/".join(sorted(set(g["kernel_used"])))
        lines.append([r["tool"], f"{r['run']} ×{r['n_workers']}" if ours else r["run"], kernels, r["cores"],
                      f"{r['cells']:,}",
                      f"{work:.2f}", f"{work - rest:.2f}", f"{g['wall_s'].median():.2f}", f"{r['cells'] / work:,.0f}",
                      f"{r['cells'] / rest:,.0f}", f"{r['cells'] / rest / r['cores']:,.0f}",
                      f"{gf[0] / work:.1f}×" if gf and kind != "floor" else "–",
                      f"{gf[1] / rest:.1f}×" if gf and kind != "floor" else "–",
                      f"{rest / floors[fmt, 1]:.2f}×" if floored and (fmt, 1) in floors else "–",
                      f"{rest / floors[fmt, threads]:.2f}×" if floored and (fmt, threads) in floors else "–",
                      f"{g['peak_rss_mb'].max():,.0f}", f"{g['cpu_s'].median():.1f}"])
    return md_table(["tool", "run", "kernels", "cores", "cells", "median s", "set-up s", "wall s", "cells/s",
                     "cells/s after set-up", "per core", "vs Geneformer", "vs Geneformer after set-up", "vs floor",
                     "vs floor, same threads", "peak RSS MB", "CPU s"], lines)


def memory_table(rows: list[dict], workers: int) -> list[str]:
    lines = [[f"{r['cells']:,}", f"{r['input']['nnz_per_cell']['median']:.0f}", f"{r['input']['bytes'] / 2**20:,.0f}",
              f"{r['work_s']:.1f}", f"{r['cells'] / r['work_s']:,.0f}", f"{r['peak_rss_mb']:,.0f}",
              f"{r['peak_rss_mb'] / rows[0]['peak_rss_mb']:.2f}×"] for r in rows]
    ratio = rows[-1]["peak_rss_mb"] / rows[0]["peak_rss_mb"]
    verdict = [f"Peak RSS at {rows[-1]['cells']:,} cells is {ratio:.2f}× that at {rows[0]['cells']:,} cells "
               f"(target ≤ 2×: {'met' if ratio <= 2 else 'NOT met'})."] * (len(rows) > 1)
    return [f"## Memory scaling: build_corpus, {workers} workers, sparser cells ({SPARSE[0]}–{SPARSE[1]} genes each), "
            "one run each", "", *md_table(["cells", "genes/cell (median)", "file MB", "s", "cells/s", "peak RSS MB",
                                           "RSS vs first"], lines), "", *verdict]


def report(args, info: dict, meta: dict, speed: list[dict], check: dict | None, memory: list[dict]) -> str:
    nnz, m = meta["nnz_per_cell"], info["machine"]
    lines = ["# Tokenizer benchmark", "", f"- date: {info['date']}", f"- machine: {m['cpu']}, {m['cores']} cores, "
             f"{m['ram_gb']} GB RAM; load average (1, 5, 15 min) before {m['load_average']}, after "
             f"{info['load_after']}", f"- command: `{info['command']}`", f"- input: {meta['cells']:,} cells × "
             f"{N_GENES:,} genes, {nnz['min']}–{nnz['max']} expressed genes per cell (median {nnz['median']:.0f}), "
             f"{meta['bytes'] / 2**20:,.0f} MB .h5ad; n_top 2048, library size 1e4", "", *speed_table(speed), ""]
    if check:
        lines.append(f"Check on {check['cells']} random cells: {check['identical']} token sequences identical to "
                     f"Geneformer's; {check['differing']} differ, {check['explained_by_ties']} of them only by tied "
                     f"values (all differences explained by ties: {check['all_explained_by_ties']}); our values "
                     f"= log2(1 + normalised count): {check['our_values_match']}.")
    return "\n".join(lines + ([""] + memory_table(memory, args.workers) if memory else [])) + "\n"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--cells", type=int, default=20_000, help="cells of the speed input (default 20000)")
    p.add_argument("--repeats", type=int, default=3, help="runs of each tool (default 3)")
    p.add_argument("--workers", type=int, default=2, help="processes for ours, Geneformer's nproc (default 2)")
    p.add_argument("--memory-cells", default="100000,1000000", type=lambda s: [int(x) for x in s.split(",") if x],
                   help="cells of the memory-scaling inputs (default 100000,1000000)")
    p.add_argument("--geneformer-venv", type=Path, default=HERE / ".venv-geneformer", help="made by geneformer_env.sh")
    p.add_argument("--workdir", type=Path, default=ROOT / "build" / "bench" / "tokenize", help="inputs and results")
    p.add_argument("--skip-geneformer", action="store_true", help="only ours (no peer, no token check)")
    p.add_argument("--skip-memory", action="store_true", help="no memory-scaling runs")
    p.add_argument("--keep-memory-inputs", action="store_true", help="keep the (large) memory-run inputs cached")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    return p.parse_args()


def main() -> None:
    args = parse_args()
    if args.worker:
        return worker(json.loads(args.worker))
    gf_python = None if args.skip_geneformer else args.geneformer_venv.resolve() / "bin" / "python"
    if gf_python and not gf_python.exists():
        sys.exit(f"No Geneformer venv at {args.geneformer_venv}: create it with\n  bash benchmarks/geneformer_env.sh "
                 f"{args.geneformer_venv}\nor pass --geneformer-venv PATH, or --skip-geneformer.")
    args.workdir = args.workdir.resolve()
    (args.workdir / "logs").mkdir(parents=True, exist_ok=True)
    info = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
            "command": shlex.join([os.path.relpath(sys.executable, ROOT), "-P", *sys.argv])}
    data, meta = ensure_input(args.workdir, args.cells, DENSE)
    dicts = write_dictionaries(args.workdir / "dictionaries")
    print(f"speed: {args.repeats} repeats on {args.cells:,} cells", flush=True)
    speed, outs = speed_runs(args, data, dicts, gf_python)
    check = check_tokens(data, dicts, outs[f"geneformer-{args.workers}-parquet-1-auto"], outs["files-1-parquet-1-auto"],
                         args.cells) if gf_python else None
    memory = [] if args.skip_memory else memory_runs(args)
    shutil.rmtree(args.workdir / "out", ignore_errors=True)
    info["load_after"] = [round(x, 2) for x in os.getloadavg()]
    text = report(args, info, meta, speed, check, memory)
    (args.workdir / "results.md").write_text(text)
    (args.workdir / "results.json").write_text(json.dumps(
        info | {"input": meta, "runs": speed, "check": check, "memory": memory}, indent=1, default=float))
    print("\n" + text + f"\n(written to {args.workdir / 'results.md'} and results.json)")


if __name__ == "__main__":
    main()
