#!/bin/sh
# Record the demo trace kernel_mix.lackey.gz from src/kernel_mix.c.
#
#   experiments/traces/record.sh            # writes experiments/traces/kernel_mix.lackey.gz
#   experiments/traces/record.sh OUT.gz     # writes OUT.gz instead
#
# Needs gcc (with static libc, e.g. Debian's libc6-dev), valgrind and gzip. The program is linked
# statically to keep the dynamic loader's relocation and symbol lookup out of the trace; the
# remaining start-up/exit accesses of libc are about 2% of the total.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
out=${1:-"$here/kernel_mix.lackey.gz"}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
trap 'exit 1' INT TERM

gcc -O1 -static -fno-pie -no-pie -o "$work/kernel_mix" "$here/src/kernel_mix.c"

# Lackey writes one line per instruction fetch (I), load (L), store (S) and modify (M) to the log
# file, next to valgrind's own "==PID==" messages; the program's stdout is not part of the log.
# Run from inside the scratch directory so the "Command:" line in the log names ./kernel_mix and
# not a path on the recording machine.
(cd "$work" && valgrind --tool=lackey --trace-mem=yes --log-file=kernel_mix.lackey ./kernel_mix)

# -n: no file name or time stamp in the gzip header, so the file depends only on the log (which
# still differs from run to run in the process ids of valgrind's "==PID==" lines).
gzip -9 -n -c "$work/kernel_mix.lackey" > "$out"

lines=$(wc -l < "$work/kernel_mix.lackey")
bytes=$(wc -c < "$out")
echo "recorded $lines lines, $bytes bytes compressed -> $out"
