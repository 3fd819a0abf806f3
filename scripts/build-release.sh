#!/usr/bin/env bash
# The release build as it ships: profile-guided. `auth-server` and the bench binaries are built
# instrumented, run through a training load, and built again with the profile they wrote, so
# that the compiler lays out and inlines the code by how it ran (docs/decisions.md:
# *Profile-guided release builds*). deploy/Dockerfile runs this script; scripts/bench.sh
# measures what it builds.
#
#   scripts/build-release.sh       # prints the directory of the optimised binaries
#
# The training load is scripts/bench.sh itself, shortened (2 s a scenario, 20,000 keys), on a
# throwaway Postgres: the ceiling, the health and verify paths, cached, cold, unknown and
# batched keys, devices, refresh, login, registration, and keys created, rotated and revoked on
# two instances. The profile is made fresh by every build, from the code being built: one written
# by older code would match fewer functions and gain less, without saying so.
#
# Needs: rustup (the script adds its llvm-tools component, for llvm-profdata), cargo-pgo
# (installed with `cargo install` when missing or of another version), and what
# scripts/bench.sh needs (wrk, the Postgres server binaries, psql, python3, curl: wrk and
# Postgres are installed with apt-get when running as root). Takes twice a plain release build
# (two builds of the workspace's release profile, with fat LTO) and about three minutes of
# training; a plain `cargo build --release` (target/release) is what to use for anything but
# shipping and measuring.
#
# Settings (environment): PGO_TRAINING_SECONDS (per scenario, 2), CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
target=$(realpath -m "${CARGO_TARGET_DIR:-$root/target}")
host=$(rustc -vV | sed -n 's/^host: //p')
# cargo-pgo builds for the host's triple explicitly, so that build scripts and procedural
# macros (compiled for the host without --target) are neither instrumented nor optimised.
out=$target/$host/release
# The server and what scripts/bench.sh runs besides it (each binary is linked with fat LTO on
# its own: the others of auth-bench are left out).
packages=(--locked -p auth-server -p auth-bench --bin auth-server --bin auth-bench-ceiling
  --bin auth-bench-seed --bin auth-bench-usage-memory)
cargo_pgo_version=0.3.0

log() { echo "build-release: $*" >&2; }

if ! rustup component list --installed 2>/dev/null | grep -q '^llvm-tools'; then
  log "adding the llvm-tools component (llvm-profdata merges the profiles)"
  rustup component add llvm-tools >&2
fi
if ! cargo install --list | grep -qx "cargo-pgo v$cargo_pgo_version:"; then
  log "installing cargo-pgo $cargo_pgo_version"
  cargo install --locked --quiet cargo-pgo --version "$cargo_pgo_version" >&2
fi

log "instrumented build"
cargo pgo instrument build -- "${packages[@]}" >&2

log "training (scripts/bench.sh, ${PGO_TRAINING_SECONDS:-2} s a scenario)"
# The training's seed files, logs and results stay in $target/pgo-training for a look.
training=$target/pgo-training
rm -rf "$training"
mkdir -p "$training"
if ! BENCH_NO_BUILD=1 BENCH_BIN_DIR=$out BENCH_OUT=$training BENCH_DURATION=${PGO_TRAINING_SECONDS:-2} \
  BENCH_SLICES=1 BENCH_KEYS=20000 BENCH_UNKNOWN_KEYS=20000 BENCH_MIXED_PROCS=1 \
  scripts/bench.sh verify verify-token key-cached key-cold key-batch key-batch-cold device \
    refresh login register memory mixed >"$training/bench.out" 2>"$training/bench.err"; then
  log "the training load failed ($training/bench.err):"
  tail -n 40 "$training/bench.err" >&2
  exit 1
fi
profiles=$(find "$target/pgo-profiles" -name '*.profraw' | wc -l)
[ "$profiles" -gt 0 ] || { log "the training wrote no profile to $target/pgo-profiles"; exit 1; }
log "$profiles raw profiles written"

log "optimised build"
cargo pgo optimize build -- "${packages[@]}" >&2
echo "$out"
