"""Execute notebooks headlessly and fail on any error, including the ones evcxr reports as success.

evcxr answers `status: ok` for a panic or an `Err` returned through `?` and only prints to stderr, so a cell passes
here only when it has no `error` output and nothing on stderr (unless tagged `raises-exception`).

Usage: python .ci/run_notebooks.py OUT_DIR NOTEBOOK... [--timeout SECONDS] [--kernel NAME] [--in-place]
Prints one line per notebook and ends with "N passed, N failed"; exit status 1 when any failed.
"""
import argparse
import os
import re
import sys
import time

import nbformat
from nbclient import NotebookClient

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def problems(nb):
    """(cell index, text) for every failing cell."""
    out = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        allowed = "raises-exception" in cell.get("metadata", {}).get("tags", [])
        for o in cell.get("outputs", []):
            if o.output_type == "error" and not allowed:
                text = "\n".join(o.get("traceback", [])) or f"{o.get('ename')}: {o.get('evalue')}"
                out.append((i, ANSI.sub("", text)))
            elif o.output_type == "stream" and o.get("name") == "stderr" and not allowed:
                out.append((i, ANSI.sub("", o.get("text", ""))))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out_dir")
    ap.add_argument("notebooks", nargs="+")
    ap.add_argument("--timeout", type=int, default=1800)
    ap.add_argument("--kernel", default=None, help="kernel name (default: the notebook's own)")
    ap.add_argument("--in-place", action="store_true", help="also write the executed notebook over its source")
    a = ap.parse_args()
    os.makedirs(a.out_dir, exist_ok=True)
    passed = failed = 0
    for path in a.notebooks:
        nb = nbformat.read(path, as_version=4)
        kw = {"kernel_name": a.kernel} if a.kernel else {}
        client = NotebookClient(
            nb, timeout=a.timeout, allow_errors=True, coalesce_streams=True,
            resources={"metadata": {"path": os.path.dirname(os.path.abspath(path))}}, **kw,
        )
        t0 = time.time()
        try:
            client.execute()
            bad = problems(nb)
        except Exception as e:  # timeouts and dead kernels
            bad = [(-1, f"{type(e).__name__}: {e}")]
        secs = time.time() - t0
        nbformat.write(nb, os.path.join(a.out_dir, os.path.basename(path)))
        if a.in_place and not bad:
            nbformat.write(nb, path)
        if bad:
            failed += 1
            print(f"FAIL {path} ({secs:.0f} s)")
            for i, text in bad:
                print(f"  cell {i}:\n    " + text.strip().replace("\n", "\n    "))
        else:
            passed += 1
            print(f"ok   {path} ({secs:.0f} s)")
        sys.stdout.flush()
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
