#!/bin/sh
# Replays every committed input of tests/fuzz (the seed corpora and the
# regressions of crashes found) through the harnesses built without
# libFuzzer, one input at a time, and names each input that fails.
cd "$(dirname "$0")" || exit 2
rc=0
for name in batch conf status atr verify; do
	n=0
	for f in corpus/$name/* regress/$name/*; do
		[ -f "$f" ] || continue
		n=$((n + 1))
		if ! ./run_$name "$f" >/dev/null 2>&1; then
			echo "tests/fuzz/$f: run_$name fails:"
			./run_$name "$f" 2>&1 | tail -5
			rc=1
		fi
	done
	echo "fuzz regressions: $name: $n inputs replayed"
done
[ $rc -eq 0 ] && echo "fuzz regressions: all passed"
exit $rc
