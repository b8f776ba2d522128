#!/usr/bin/env bash
# Runs every fuzz target in the repository for a short time (FUZZTIME each,
# default 5s), so that an invariant a new input breaks fails CI. The seed
# corpora (testdata/fuzz) already run as plain tests in `go test`; this adds
# fresh inputs. A failing input is written to the package's testdata/fuzz,
# ready to commit as a seed.
#   FUZZTIME=30s ./scripts/fuzz.sh        longer
#   ./scripts/fuzz.sh ./ifmgr/api          only the targets under one path
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-5s}
paths=("${@:-.}")
# Every "func FuzzX(f *testing.F)" in a _test.go file, as "dir name".
mapfile -t targets < <(git ls-files -- "${paths[@]/%//*_test.go}" "${paths[@]/%/*_test.go}" 2>/dev/null | sort -u |
	xargs -r grep -Ho '^func Fuzz[A-Za-z0-9_]*(f \*testing\.F)' |
	sed -E 's|^(.*)/[^/]*_test\.go:func (Fuzz[A-Za-z0-9_]*)\(.*|\1 \2|' | sort -u)
if [ ${#targets[@]} -eq 0 ]; then
	echo "fuzz.sh: no fuzz targets found under ${paths[*]}" >&2
	exit 1
fi
failed=0
for t in "${targets[@]}"; do
	read -r dir name <<<"$t"
	echo "== fuzz $name in ./$dir for $fuzztime"
	# -parallel 1: CI machines are small, and one worker finds the same bugs.
	# Go's fuzzer sometimes ends a run at -fuzztime with a bare "context
	# deadline exceeded" and no failing input (a worker slow to stop on a
	# loaded machine; seen in CI on FuzzDecodeVLANData). That says nothing
	# about the code: such a run, and only such a run, is tried once more.
	# A real failure names its input (testdata/fuzz/NAME/...) and fails.
	for try in 1 2; do
		ft=$fuzztime
		[ $try -eq 1 ] || ft=$fuzztime_retry
		out=$(go test -run='^$' -fuzz="^${name}\$" -fuzztime="$ft" -parallel=1 "./$dir" 2>&1) && rc=0 || rc=$?
		echo "$out"
		[ $rc -ne 0 ] || break
		if [ $try -eq 1 ] && grep -q 'context deadline exceeded' <<<"$out" && ! grep -q 'testdata/fuzz' <<<"$out"; then
			# Again by count, which sets no deadline to trip over.
			echo "fuzz.sh: $name stopped with only 'context deadline exceeded' (no failing input): once more, 20000 inputs"
			fuzztime_retry=20000x
			continue
		fi
		failed=$((failed + 1))
		break
	done
done
if [ $failed -gt 0 ]; then
	echo "fuzz.sh: $failed of ${#targets[@]} fuzz targets failed" >&2
	exit 1
fi
echo "fuzz.sh: ${#targets[@]} fuzz targets ran for $fuzztime each"
