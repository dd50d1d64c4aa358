#!/usr/bin/python3
"""check_predict.py — `dlrun predict` on refcheck cases against PyTorch's inference.

usage: check_predict.py DLRUN CASEDIR [CASEDIR...]
For every case with an expected_infer.safetensors (written by gen_cases.py:
every output that does not depend on a label, computed in eval mode, batch
norm on the running statistics of params.safetensors), runs
  dlrun predict CASE/model.dl --load CASE/params.safetensors --feed CASE/feed.safetensors --out O
and compares O elementwise as ../../../shared/conformance/check.py does.
Prints one line per case and 'N passed, M failed'; exit 0 only when all pass.
"""
import os
import subprocess
import sys
import tempfile

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.environ.get("CONFORMANCE", os.path.join(here, "..", "..", "..", "shared", "conformance")))
import check  # noqa: E402
import st  # noqa: E402


def run_case(dlrun, case, timeout=120):
    want = os.path.join(case, "expected_infer.safetensors")
    with tempfile.TemporaryDirectory() as tmp:
        o = os.path.join(tmp, "o.safetensors")
        cmd = [dlrun, "predict", os.path.join(case, "model.dl"), "--load", os.path.join(case, "params.safetensors"),
               "--feed", os.path.join(case, "feed.safetensors"), "--out", o]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return [f"timeout after {timeout}s"]
        if r.returncode != 0:
            return [f"exit {r.returncode}: {(r.stderr or r.stdout).strip().splitlines()[:1]}"]
        return check.compare("infer", st.load(o), st.load(want))


def main():
    dlrun, cases = sys.argv[1], sys.argv[2:]
    passed = failed = 0
    for case in cases:
        if not os.path.exists(os.path.join(case, "expected_infer.safetensors")):
            continue
        problems = run_case(dlrun, case)
        name = os.path.basename(case.rstrip("/"))
        if problems:
            failed += 1
            print(f"FAIL {name} (predict): {problems[0]}" + (f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""))
        else:
            passed += 1
            print(f"ok   {name} (predict)")
    print(f"{passed} passed, {failed} failed")
    sys.exit(0 if failed == 0 and passed > 0 else 1)


if __name__ == "__main__":
    main()
