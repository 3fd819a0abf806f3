#!/usr/bin/env bash
# Instructions per request of the verify paths, counted by callgrind, against the baseline in
# bench/instructions.json: fails (exit 1) when a verify path costs more than the baseline's
# margin above it. Instruction counts do not depend on what else the machine runs, so this
# can run on a shared CI machine where seconds cannot.
#
#   scripts/instructions.sh                  # every scenario, checked against the baseline
#   scripts/instructions.sh verify device    # only these (the ceiling always runs)
#   scripts/instructions.sh --update         # measure every scenario, write the baseline
#   scripts/instructions.sh --profile verify # where one scenario's instructions go, per
#                                            # function (callgrind_annotate --inclusive=yes)
#
# Each scenario runs twice under callgrind, serving N1 and then N2 requests in process
# (auth-bench-instructions: the real application, no socket, no HTTP/1 codec); only the
# serving loop is counted, and instructions per request = (I(N2) - I(N1)) / (N2 - N1), so
# what a run costs once (the first call, the loop's set-up) drops out.
#
# Settings (environment): INSTRUCTIONS_REQUESTS ("200 1000": N1 and N2), INSTRUCTIONS_OUT
# (callgrind files; target/instructions), INSTRUCTIONS_NO_BUILD (use the binary already built).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

BASELINE=$root/bench/instructions.json
read -r N1 N2 <<< "${INSTRUCTIONS_REQUESTS:-200 1000}"
SCENARIOS=(ceiling live verify verify-token key-cached key-churn device)

mode=check
profile=
wanted=()
while [ $# -gt 0 ]; do
  case "$1" in
    --update) mode=update ;;
    --profile) mode=profile; profile=${2:?--profile needs a scenario: ${SCENARIOS[*]}}; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    *) wanted+=("$1") ;;
  esac
  shift
done
for s in "${wanted[@]}" $profile; do
  [[ " ${SCENARIOS[*]} " == *" $s "* ]] || { echo "unknown scenario $s (${SCENARIOS[*]})" >&2; exit 2; }
done
[ "$mode" = update ] && [ ${#wanted[@]} -gt 0 ] && { echo "--update measures every scenario" >&2; exit 2; }

if ! command -v valgrind >/dev/null || ! command -v callgrind_annotate >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing valgrind with apt-get" >&2
    { apt-get install -y -qq valgrind ||
      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind; }; } >&2
  else
    echo "valgrind not found: install it (Debian: apt-get install valgrind)" >&2; exit 1
  fi
fi

# The release profile, as the server is built: what is counted is what runs in production.
if [ -z "${INSTRUCTIONS_NO_BUILD:-}" ]; then
  echo "building auth-bench-instructions (release)" >&2
  cargo build --release -q -p auth-bench --bin auth-bench-instructions
fi
target=$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
bin=$target/release/auth-bench-instructions
OUT=${INSTRUCTIONS_OUT:-$target/instructions}
mkdir -p "$OUT"

# count SCENARIO N: callgrind's total for the counted loop of N requests (file $OUT/SCENARIO.N.out).
# The environment is emptied so that no setting of the caller's changes what is counted.
count() {
  local file=$OUT/$1.$2.out
  rm -f "$file"
  if ! env -i PATH="$PATH" valgrind --tool=callgrind -q --callgrind-out-file="$file" \
      --collect-atstart=no --toggle-collect='auth_bench_instructions::measured*' \
      "$bin" "$1" --requests "$2" >"$OUT/$1.$2.log" 2>&1; then
    echo "$1 ($2 requests) failed:" >&2; cat "$OUT/$1.$2.log" >&2; return 1
  fi
  local total
  total=$(sed -n 's/^totals: \([0-9]*\).*/\1/p' "$file")
  if [ -z "$total" ] || [ "$total" = 0 ]; then
    echo "$1: nothing counted (did the loop's name change? see --toggle-collect)" >&2; return 1
  fi
  echo "$total"
}

if [ "$mode" = profile ]; then
  echo "profiling $profile: $N2 requests under callgrind" >&2
  count "$profile" "$N2" >/dev/null
  echo "# $profile: $N2 requests; divide by $N2 for instructions per request" >&2
  callgrind_annotate --inclusive=yes "$OUT/$profile.$N2.out"
  exit 0
fi

if [ ${#wanted[@]} -eq 0 ]; then run=("${SCENARIOS[@]}"); else run=(ceiling "${wanted[@]}"); fi
# Every count at once, as many at a time as there are cores: counts do not depend on load.
jobs=()
for s in "${run[@]}"; do for n in "$N1" "$N2"; do jobs+=("$s $n"); done; done
if ! printf '%s\n' "${jobs[@]}" |
    xargs -P "$(nproc)" -L 1 bash -c "$(declare -f count); OUT='$OUT' bin='$bin' count \"\$0\" \"\$1\" > '$OUT'/\$0.\$1.total"; then
  echo "counting failed (above)" >&2; exit 1
fi

results=()
for s in "${run[@]}"; do
  results+=("$s=$(cat "$OUT/$s.$N1.total") $(cat "$OUT/$s.$N2.total")")
done
rustc_version=$(rustc --version)
valgrind_version=$(valgrind --version)
python3 - "$mode" "$BASELINE" "$N1" "$N2" "$rustc_version" "$valgrind_version" "${results[@]}" <<'PY'
import datetime, json, sys

mode, path, n1, n2, rustc, valgrind = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
per_request = {}
for arg in sys.argv[7:]:
    name, counts = arg.split("=")
    i1, i2 = (int(c) for c in counts.split())
    per_request[name] = round((i2 - i1) / (n2 - n1))

if mode == "update":
    try:
        with open(path) as f:
            old = json.load(f)
    except FileNotFoundError:
        old = {}
    baseline = {
        "about": "Instructions per request of each scenario, in process (scripts/instructions.sh, "
                 "docs/benchmarks.md). Regenerate with scripts/instructions.sh --update.",
        "margin": old.get("margin", 0.25),
        "guarded": old.get("guarded", ["verify", "verify-token", "key-cached", "device"]),
        "taken_with": {"rustc": rustc, "valgrind": valgrind, "profile": "release",
                       "requests": [n1, n2], "date": datetime.date.today().isoformat()},
        "instructions_per_request": per_request,
    }
    with open(path, "w") as f:
        json.dump(baseline, f, indent=2)
        f.write("\n")
    print(f"{'scenario':<14}{'instr/request':>14}{'x ceiling':>11}")
    for name, value in per_request.items():
        print(f"{name:<14}{value:>14,}{value / per_request['ceiling']:>11.2f}")
    print(f"baseline written to {path}")
    sys.exit(0)

with open(path) as f:
    baseline = json.load(f)
margin, guarded = baseline["margin"], set(baseline["guarded"])
before = baseline["instructions_per_request"]
taken = baseline["taken_with"]
print(f"{'scenario':<14}{'instr/request':>14}{'x ceiling':>11}{'baseline':>12}{'change':>10}")
failed = []
for name, value in per_request.items():
    base = before.get(name)
    change = "" if base is None else f"{(value - base) / base:+.1%}"
    flag = ""
    if base is not None and name in guarded and value > base * (1 + margin):
        failed.append(name)
        flag = f"  REGRESSION (more than +{margin:.0%})"
    base_text = "" if base is None else f"{base:,}"
    print(f"{name:<14}{value:>14,}{value / per_request['ceiling']:>11.2f}{base_text:>12}{change:>10}{flag}")
if (taken["rustc"], taken["valgrind"]) != (rustc, valgrind):
    print(f"note: the baseline was taken with {taken['rustc']} and {taken['valgrind']}; this run used "
          f"{rustc} and {valgrind}: a new compiler or dependency moves every count a little")
if failed:
    print(f"\n{', '.join(failed)} cost more than {margin:.0%} above the baseline ({path}).")
    print("Find where with: scripts/instructions.sh --profile SCENARIO (and the same on the parent commit).")
    print("If the cost is intended (a new check on the path, a dependency upgrade), regenerate the")
    print("baseline with scripts/instructions.sh --update and commit bench/instructions.json, saying why.")
    sys.exit(1)
print(f"every verify path within {margin:.0%} of the baseline")
PY
