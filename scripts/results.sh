#!/usr/bin/env bash
# Regenerates docs/results.md: runs scripts/bench and scripts/soak (root,
# throw-away network namespaces, ~40 minutes on a loaded 2-core machine) and
# scripts/image-sizes.sh, and writes the page from their output, with the
# commands, machine and date.
#
#   scripts/results.sh                 full: N = 100,1000,4000, 5-minute soak
#                                      (4 runs per contender, alternated: two
#                                      cannot tell 1.0x from 1.3x on a shared host)
#   scripts/results.sh -quick          N = 1000, teardown N = 100, 300 events, 2-minute soak
#   scripts/results.sh -page-only      rewrite the page from bench-out/ and soak-out/
#
# The soak's plot and samples are kept next to the page (docs/results-soak.*).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-full}
case $mode in
full) bench=(-reps 4 -n 100,1000,4000 -teardown-n 100,300 -events 1000); soak=(-duration 5m) ;;
-quick) bench=(-reps 4 -n 1000 -teardown-n 100 -events 300); soak=(-duration 2m) ;;
-page-only) ;;
*) echo "usage: scripts/results.sh [-quick|-page-only]" >&2; exit 2 ;;
esac
if [ "$mode" != -page-only ]; then
	# -page-only names the run it re-renders, not itself.
	mkdir -p bench-out && echo "$mode" >bench-out/results-mode
	./scripts/bench -out bench-out "${bench[@]}"
	./scripts/soak -out soak-out "${soak[@]}" || echo "scripts/results.sh: the soak failed; its failures are on the page" >&2
	# The initramfs per arch (images cached by content; four builds when
	# the image's sources changed).
	./scripts/image-sizes.sh -max-xz 3000000 -json bench-out/image-sizes.json ||
		echo "scripts/results.sh: the image is over its size target; the page says so" >&2
fi
cp soak-out/soak.png docs/results-soak.png 2>/dev/null || true
cp soak-out/soak.csv docs/results-soak.csv 2>/dev/null || true
ran=$mode
if [ "$mode" = -page-only ]; then
	ran=$(cat bench-out/results-mode 2>/dev/null || echo unknown)
fi
cmd="scripts/results.sh $([ "$ran" = full ] || echo "$ran")"
[ "$mode" = -page-only ] && cmd="$cmd (page re-rendered by scripts/results.sh -page-only)"
go run ./internal/results -bench bench-out -soak soak-out -png results-soak.png \
	-cmd "$cmd" -o docs/results.md
echo "wrote docs/results.md"
