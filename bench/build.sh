#!/usr/bin/env bash
# bench/build.sh: build the module (from a copy of the working tree) and the
# in-process console into $ET_BENCH_DIR/build. run-all.sh calls it.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
build
say "module: $MODULE"
say "console: $CONSOLE_SO"
