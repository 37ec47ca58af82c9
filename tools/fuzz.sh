#!/bin/sh
# Builds the libFuzzer targets of fuzz/ with clang in build/fuzz and runs each for a while
# (docs/fuzzing.md). New inputs go to a scratch directory first; afterwards only those that add
# coverage are merged into fuzz/corpus/T, so the committed corpus stays small. A crash, leak,
# timeout or broken invariant leaves its input in build/fuzz/findings/T/ and fails the run.
#
#   FUZZ_SECONDS=60        seconds per target
#   FUZZ_TARGETS="a b"     targets to run (default: all of them, one after the other)
#   FUZZ_JOBS=1            libFuzzer worker processes per target (-fork=N when above 1)
#   FUZZ_BUILD_JOBS=1      parallel compile jobs
#   FUZZ_FLAGS=...         extra libFuzzer flags, e.g. -seed=1 or -max_len=16384
set -eu
cd "$(dirname "$0")/.."
ROOT=$(pwd)

ALL_TARGETS="event json settings cursor text delete_body http regulation fql"
SECONDS_EACH=${FUZZ_SECONDS:-60}
TARGETS=${FUZZ_TARGETS:-$ALL_TARGETS}
JOBS=${FUZZ_JOBS:-1}
BUILD_JOBS=${FUZZ_BUILD_JOBS:-1}
EXTRA=${FUZZ_FLAGS:-}
BUILD="$ROOT/build/fuzz"

for t in $TARGETS; do
    case " $ALL_TARGETS " in
    *" $t "*) ;;
    *) echo "fuzz: unknown target '$t' (known: $ALL_TARGETS)" >&2; exit 2 ;;
    esac
done

./tools/deps.sh clang libclang-rt-14-dev
CC=clang cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPS_FUZZ=ON \
    -DPS_SANITIZE=OFF -DPS_WERROR=ON >/dev/null
build_targets=""
for t in $TARGETS; do build_targets="$build_targets fuzz_$t"; done
# shellcheck disable=SC2086 # one word per target
cmake --build "$BUILD" -j "$BUILD_JOBS" --target $build_targets

export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
mkdir -p "$BUILD/logs"
failed=""
summary=""
for t in $TARGETS; do
    scratch="$BUILD/scratch/$t"
    findings="$BUILD/findings/$t"
    corpus="$ROOT/fuzz/corpus/$t"
    log="$BUILD/logs/$t.log"
    rm -rf "$scratch"
    mkdir -p "$scratch" "$findings" "$corpus"
    dict=""
    [ -f "fuzz/$t.dict" ] && dict="-dict=$ROOT/fuzz/$t.dict"
    fork=""
    [ "$JOBS" -gt 1 ] && fork="-fork=$JOBS"
    before=$(find "$corpus" -type f | wc -l)
    touch "$log.start" # findings newer than this are this run's
    echo "fuzz: $t for ${SECONDS_EACH}s (log: $log)"
    rc=0
    # shellcheck disable=SC2086 # optional flags are empty or one word each
    "$BUILD/bin/fuzz_$t" -max_total_time="$SECONDS_EACH" -timeout=5 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$findings/" $dict $fork $EXTRA \
        "$scratch" "$corpus" >"$log" 2>&1 || rc=$?

    # keep what the run learned, whatever its outcome: only inputs that add coverage
    # shellcheck disable=SC2086
    "$BUILD/bin/fuzz_$t" -merge=1 -timeout=5 -rss_limit_mb=2048 $dict "$corpus" "$scratch" \
        >"$log.merge" 2>&1 || echo "fuzz: $t: merge failed, see $log.merge" >&2
    after=$(find "$corpus" -type f | wc -l)

    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    if [ -z "$execs" ]; then # fork mode prints progress lines "#N: cov: ..." instead
        execs=$(sed -n 's/^#\([0-9][0-9]*\):* .*/\1/p' "$log" | tail -1)
    fi
    line="$t: ${execs:-?} executions, corpus $before -> $after files"
    if [ "$rc" -ne 0 ]; then
        line="$line, FINDING (exit $rc)"
        failed="$failed $t"
        grep -E "^(==[0-9]+==ERROR|SUMMARY|.*runtime error|.*fuzz invariant failed)" "$log" |
            head -5 >&2 || true
        find "$findings" -type f -newer "$log.start" | sed 's/^/  input: /' >&2
    fi
    echo "fuzz: $line"
    summary="$summary
  $line"
done

echo "fuzz: summary:$summary"
if [ -n "$failed" ]; then
    echo "fuzz: findings in:$failed (inputs in build/fuzz/findings/, logs in build/fuzz/logs/)" >&2
    exit 1
fi
