# Everyday recipes. `just` alone lists them. (Install just with `cargo install just`.)

# List the recipes.
default:
    @just --list

# Run the service (in-memory store unless DATABASE_URL is set).
run *ARGS:
    cargo run -p auth-server -- {{ARGS}}

# The whole test suite against a throwaway Postgres (or DATABASE_URL).
test *ARGS:
    scripts/test.sh {{ARGS}}

# Formatting, dependency direction, clippy with warnings denied.
lint:
    cargo fmt --all -- --check
    scripts/check-deps.sh
    cargo clippy --workspace --all-targets -- -D warnings

# Check deploy/ (YAML, probes, env names) against the built binary (`just test` builds it).
check-deploy:
    scripts/check-deploy.py target/debug/auth-server

# A TypeScript client generated from the OpenAPI document: strict tsc, then the first path run.
typescript-client:
    scripts/typescript-client.sh target/debug/auth-server

# The README's walk-through, run twice against a fresh server.
readme-walkthrough:
    scripts/readme-walkthrough.sh target/debug/auth-server

# The pages of mailed links in Chromium, offline (installs chromium if missing; `just test` builds the binary).
browser-test:
    scripts/browser-test.sh target/debug/auth-server

# Start a local throwaway Postgres and print the DATABASE_URL to export.
db:
    scripts/pg-temp.sh start

# Stop a Postgres started by `just db` (pass its PGTEMP_DIR).
db-stop DIR:
    scripts/pg-temp.sh stop {{DIR}}

# Apply migrations to DATABASE_URL.
migrate:
    cargo run -p auth-server -- migrate

# Everything CI runs.
ci:
    .ci/run

# The release build as the image ships it: profile-guided (instrumented, trained, rebuilt); prints where.
build-release:
    scripts/build-release.sh

# Load benchmarks: release server on a throwaway Postgres, wrk per scenario (docs/benchmarks.md).
bench *scenarios:
    scripts/bench.sh {{scenarios}}

# Instructions per request of the verify paths (callgrind) against bench/instructions.json; `--update`, `--profile verify`.
instructions *args:
    scripts/instructions.sh {{args}}

# Micro-benchmarks (criterion): key verification, JWT, refresh rotation, bcrypt.
bench-micro *args:
    cargo bench -p auth-infra --bench hot_paths -- {{args}}
