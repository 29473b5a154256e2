#!/usr/bin/env bash
# Build and run the libFuzzer targets (see fuzz/README.md).
#   fuzz/run.sh [SECONDS] [TARGET...]   default: 300 s each, all targets
# New inputs go to fuzz/work/<target>/ (the seed corpus in fuzz/corpus/ is
# only read), crashes to fuzz/work/artifacts/. Exits non-zero on a finding.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-300}
shift || true
targets=${*:-fuzz_form fuzz_url fuzz_capture fuzz_jsonrpc}
make -s
mkdir -p work/artifacts
rc=0
for t in $targets; do
    dict=json.dict
    [ "$t" = fuzz_url ] && dict=url.dict
    mkdir -p "work/$t"
    echo "== $t for ${secs}s"
    set +e
    ./"$t" -max_total_time="$secs" -print_final_stats=1 -timeout=10 \
        -rss_limit_mb=2048 -max_len=16384 -dict="$dict" \
        -artifact_prefix="work/artifacts/$t-" "work/$t" "corpus/$t" \
        >"work/$t.log" 2>&1
    r=$?
    set -e
    grep -E '^#[0-9]+ +DONE|^stat::number_of_executed_units|^stat::peak_rss|==ERROR|^SUMMARY|invariant failed' \
        "work/$t.log" || true
    if [ "$r" != 0 ]; then
        echo "== $t: FINDING (exit $r), see fuzz/work/$t.log and fuzz/work/artifacts/"
        rc=1
    fi
done
exit "$rc"
