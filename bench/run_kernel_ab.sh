#!/usr/bin/env bash
# A/B timing of the attention kernels in one GPU-host call: builds grat_kernels (sm_90a only)
# from this checkout and from a baseline source folder in parallel, runs the GPU correctness
# tests on this checkout's build, then times the baseline and each variant of this build
# (ours / raster columns, no peers) on the same card, the baseline again last (drift check).
# usage: bench/run_kernel_ab.sh <out> <base_dir> <cases> [name:VAR=v,VAR2=w ...]
#   base_dir: e.g. `mkdir .base && git archive main kernels tests/gpu | tar -x -C .base`
#   (carry it). Env NCU_VARIANT=name profiles that variant on the first case, in each
#   pattern of NCU_PATTERNS (default "B"; "B X" to compare them);
#   SANITIZE=1 runs compute-sanitizer memcheck and racecheck on this build at the end;
#   NO_BASE2=1 skips the second baseline timing, SKIP_TESTS=1 the GPU tests; GIT_COMMIT and
#   BASE_COMMIT name the two trees in the JSON (pass them: the device copy's HEAD is stale).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
all_args="$*"  # for the summary's command
final=${1:?out dir}; base=$(cd "${2:?baseline source dir}" && pwd); cases=${3:?cases}
shift 3
out=$final/logs  # logs and JSON land under <out> as they come (a timeout keeps them)
rep=/tmp/ab-ncu  # ncu reports stay on the host: only their text pages come back
rm -rf "$out" "$rep" && mkdir -p "$out" "$rep"
variants=("$@")
((${#variants[@]})) || variants=("new:")
build_one() {  # src build log
  cmake -S "$1/tests/gpu" -B "$2" -G Ninja -DCMAKE_CUDA_ARCHITECTURES=90a >"$3" 2>&1 &&
    ninja -C "$2" -j8 grat_kernels >>"$3" 2>&1
}
t0=$SECONDS
build_one "$root" /tmp/ab-new "$out/build_new.log" &
pid_new=$!
build_one "$base" "/tmp/ab-base-$(basename "$base")" "$out/build_base.log" &
pid_base=$!
wait $pid_new || { echo "new build failed"; grep -E "error" "$out/build_new.log" | head; exit 1; }
wait $pid_base || { echo "base build failed"; grep -E "error" "$out/build_base.log" | head; exit 1; }
echo "builds: $((SECONDS - t0)) s"
new=/tmp/ab-new/kernels/libgrat_kernels.so
old="/tmp/ab-base-$(basename "$base")/kernels/libgrat_kernels.so"
test="$root/tests/gpu/test_attention_gpu.py"
if [[ "${SKIP_TESTS:-0}" != 1 ]]; then
  python3 "$test" "$new" --errors-only >"$out/gpu_tests.log" 2>&1 &&
    python3 "$test" "$new" >>"$out/gpu_tests.log" 2>&1
  echo "gpu tests rc=$? ($((SECONDS - t0)) s)"
  grep -E "FAIL|passed|seed=" "$out/gpu_tests.log" | tail -4
fi
bench() {  # tag lib [env assignments]
  local tag=$1 lib=$2
  shift 2
  env -u OUT "$@" python3 "$root/bench/attention_bench.py" "$lib" --cases "$cases" --no-flex --no-full \
    --no-portable --tag "ab_$tag" --out "$out" >"$out/ab_$tag.log" 2>&1
  echo "== $tag $* ($((SECONDS - t0)) s)"
  grep -E "^(flux|video)" "$out/ab_$tag.log" | awk '{print $1, $2, $7, $8, $12}'
}
# The device copy's git HEAD can be stale: commits come from the caller (GIT_COMMIT for this
# checkout, BASE_COMMIT for the baseline folder).
bench base "$old" GIT_COMMIT="${BASE_COMMIT:-base}"
for v in "${variants[@]}"; do
  name=${v%%:*}
  IFS=, read -r -a envs <<<"${v#*:}"
  bench "$name" "$new" "${envs[@]}"
  if [[ "${NCU_VARIANT:-}" == "$name" ]] && command -v ncu >/dev/null; then
    for pat in ${NCU_PATTERNS:-B}; do  # one profile per pattern: compare B with X per block
      tag="ncu_${name}_$pat"
      env -u OUT "${envs[@]}" ncu --kernel-name regex:attention_fwd_sm90 --launch-skip 3 \
        --launch-count 1 --set full -o "$rep/$tag" python3 "$root/bench/attention_bench.py" \
        "$new" --cases "${cases%%,*}" --patterns "$pat" --no-flex --no-full --no-portable \
        --tag ncu --out /tmp >"$out/$tag.log" 2>&1
      ncu -i "$rep/$tag.ncu-rep" --page details >"$out/$tag.txt" 2>&1
      ncu -i "$rep/$tag.ncu-rep" --page source --csv --print-source sass \
        >"$out/${tag}_sass.csv" 2>&1
      echo "-- ncu $name ${cases%%,*} $pat"
      grep -E "^ +(Duration|Compute \(SM\) Thro|Issue Slots Busy|Eligible Warps|L2 Hit Rate |DRAM Throughput)" \
        "$out/$tag.txt" | head -8
    done
  fi
done
[[ "${NO_BASE2:-0}" == 1 ]] || bench base2 "$old" GIT_COMMIT="${BASE_COMMIT:-base}"
if [[ "${SANITIZE:-0}" == 1 ]]; then  # after the timings: they matter more if time runs out
  for tool in memcheck racecheck; do
    compute-sanitizer --tool "$tool" --error-exitcode 3 python3 "$test" "$new" --small \
      >"$out/sanitize_$tool.log" 2>&1
    echo "compute-sanitizer $tool rc=$? ($((SECONDS - t0)) s)"
    grep -E "ERROR SUMMARY|hazard" "$out/sanitize_$tool.log" | tail -2
  done
fi
AB_COMMAND="bench/run_kernel_ab.sh $all_args" python3 - "$out" >"$final/ab_summary.json" <<'PY'
import glob, json, os, sys
res = {"command": os.environ["AB_COMMAND"]}
for f in sorted(glob.glob(os.path.join(sys.argv[1], "ab_*_2*.json"))):
    d = json.load(open(f))
    tag = os.path.basename(f).rsplit("_", 1)[0]
    res[tag] = dict(gpu=d["gpu"], commit=d["commit"], rows=d["rows"])
print(json.dumps(res, indent=1))
PY
tar -czf "$final/ab_logs.tgz" -C "$out" . && rm -rf "$out"
