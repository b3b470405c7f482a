"""The Geneformer side of ``benchmarks/tokenize.py``: one timed ``TranscriptomeTokenizer.tokenize_data`` call.

Run by that benchmark with the Python of the Geneformer venv (``benchmarks/geneformer_env.sh``), as
``python -P _geneformer_worker.py SPEC_JSON``; not meant to be run by hand. ``-P`` keeps this folder off
``sys.path``, where the benchmark's own ``tokenize.py`` would shadow the standard library's ``tokenize``.

SPEC_JSON keys: ``data_dir`` (holds the one input ``.h5ad``), ``out_dir``, ``prefix``, ``dicts`` (a dict of the
three dictionary files by constructor argument), ``nproc``, ``model_input_size``, ``result`` (JSON file written
with ``import_s``, ``work_s`` and ``setup_s``: seconds spent loading the module, building the tokenizer + tokenising,
and of that building the tokenizer).
"""
import importlib.metadata
import importlib.util
import json
import sys
import time
from pathlib import Path


def load_tokenizer_module():
    """helical's geneformer_tokenizer.py, loaded from its file: ``helical.models`` would import torch/transformers."""
    path = importlib.metadata.distribution("helical").locate_file("helical/models/geneformer/geneformer_tokenizer.py")
    spec = importlib.util.spec_from_file_location("gf_tokenizer", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(spec: dict) -> None:
    start = time.perf_counter()
    module = load_tokenizer_module()
    import_s = time.perf_counter() - start
    start = time.perf_counter()
    tokenizer = module.TranscriptomeTokenizer(
        custom_attr_name_dict=None, nproc=spec["nproc"], chunk_size=512, model_input_size=spec["model_input_size"],
        special_token=False, collapse_gene_ids=True, **spec["dicts"])
    setup_s = time.perf_counter() - start
    tokenizer.tokenize_data(Path(spec["data_dir"]), Path(spec["out_dir"]), spec["prefix"], file_format="h5ad")
    work_s = time.perf_counter() - start
    Path(spec["result"]).write_text(json.dumps({"import_s": import_s, "work_s": work_s, "setup_s": setup_s,
                                                "helical": importlib.metadata.version("helical")}))


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
