#!/usr/bin/env python3
"""Resource usage of the hot CUDA kernels, and a check that they do not spill.

Compiles one kernels/*.cu file with `nvcc --resource-usage` (ptxas -v) for each architecture,
prints one line per kernel matching --kernel (registers, shared memory, spill bytes, stack) and
exits 1 when any of them spills (spill stores or loads > 0) or when none matched (a renamed kernel
must not silently pass). Needs nvcc only, no GPU. The build itself fails on a spill in
kernels/lookup_gemm.cu (ptxas --warn-on-spills --warning-as-error, CMakeLists.txt); this script
prints the per-kernel numbers recorded in docs/benchmarks.md.

  check_kernel_resources.py --nvcc NVCC --source kernels/lookup_gemm.cu --include DIR \
      --arch 80 --arch 90 --kernel lookup_gemv_kernel [--define X=1]
"""
import argparse
import concurrent.futures
import re
import subprocess
import sys

FUNC = re.compile(r"Compiling entry function '([^']+)' for '(sm_\d+)'")
SPILL = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
USED = re.compile(r"Used (\d+) registers")
SMEM = re.compile(r"(\d+) bytes smem")


def demangle(names):
    try:
        out = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True, check=True)
        return out.stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return names


def compile_arch(args, arch):
    cmd = [args.nvcc, "-c", "-o", "/dev/null", "-std=c++17", "-O3", "--resource-usage",
           f"--generate-code=arch=compute_{arch},code=sm_{arch}"]
    cmd += [f"-I{d}" for d in args.include] + [f"-D{d}" for d in args.define] + [args.source]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.stderr.write(p.stdout + p.stderr)
        raise SystemExit(f"check_kernel_resources: nvcc failed for sm_{arch}")
    return p.stdout + p.stderr


def parse(text):
    rows, cur = [], None
    for line in text.splitlines():
        m = FUNC.search(line)
        if m:
            cur = {"name": m.group(1), "arch": m.group(2), "regs": None, "smem": 0, "stack": 0,
                   "spill_st": 0, "spill_ld": 0}
            rows.append(cur)
            continue
        if cur is None:
            continue
        m = SPILL.search(line)
        if m:
            cur["stack"], cur["spill_st"], cur["spill_ld"] = (int(g) for g in m.groups())
        m = USED.search(line)
        if m:
            cur["regs"] = int(m.group(1))
            s = SMEM.search(line)
            cur["smem"] = int(s.group(1)) if s else 0
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nvcc", required=True)
    ap.add_argument("--source", required=True)
    ap.add_argument("--include", action="append", default=[])
    ap.add_argument("--define", action="append", default=[])
    ap.add_argument("--arch", action="append", required=True)
    ap.add_argument("--kernel", action="append", required=True, help="substring of the hot kernels' names")
    args = ap.parse_args()
    with concurrent.futures.ThreadPoolExecutor(len(args.arch)) as ex:
        texts = list(ex.map(lambda a: compile_arch(args, a), args.arch))
    rows = [r for t in texts for r in parse(t)]
    names = demangle([r["name"] for r in rows])
    hot, bad = 0, 0
    print("arch   regs  smem(static)  stack  spill_st  spill_ld  kernel")
    for r, n in zip(rows, names):
        if not any(k in n for k in args.kernel):
            continue
        hot += 1
        short = re.sub(r"cluscomp::v\d+_\d+::", "", n)
        flag = ""
        if r["spill_st"] or r["spill_ld"]:
            bad += 1
            flag = "  <-- SPILLS"
        print(f"{r['arch']:6} {r['regs']!s:>4} {r['smem']:>13} {r['stack']:>6} {r['spill_st']:>9} "
              f"{r['spill_ld']:>9}  {short}{flag}")
    if hot == 0:
        print("check_kernel_resources: no kernel matched " + ", ".join(args.kernel), file=sys.stderr)
        return 1
    if bad:
        print(f"check_kernel_resources: {bad} of {hot} hot kernels spill", file=sys.stderr)
        return 1
    print(f"check_kernel_resources: {hot} hot kernels, none spills")
    return 0


if __name__ == "__main__":
    sys.exit(main())
