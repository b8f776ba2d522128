#!/usr/bin/env bash
# Prints where the QEMU suite's boots spent their time, per architecture,
# as a Markdown table, from the log of a verbose run of the suite:
#
#   scripts/boot-times.sh LOG      e.g. the output of
#   UROUTE_QEMU=1 go test -count=1 -v ./qemu-test/ | tee LOG
#
# The harness logs each boot's phases ("ARCH boot phases: first output
# +0.2s (0.2s), u-root init +6.1s (6.3s), ..."; qemu-test/harness.go) and
# TestLifecycle "ARCH: shell ready Xs, profile converged Ys". Columns are
# min-max over the boots: kernel = QEMU's start to u-root's banner (the
# kernel's boot and initramfs unpacking), init = banner to uinit's last
# line (u-root's init setup and uinit's steps), shell = to the shell's
# first answer; then TestLifecycle's shell-ready and profile-converged
# times from QEMU's start.
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 LOG" >&2; exit 2; }
awk '
function secs(d,   m, s) {
	m = 0
	if (d ~ /ms$/) { sub(/ms$/, "", d); return d / 1000 }
	if (d ~ /m/) { split(d, p, "m"); m = p[1]; d = p[2] }
	sub(/s$/, "", d)
	return m * 60 + d
}
function note(arch, col, v,   key) {
	key = arch SUBSEP col
	if (!(key in lo) || v < lo[key]) lo[key] = v
	if (!(key in hi) || v > hi[key]) hi[key] = v
	n[key]++
	if (!(arch in seen)) { seen[arch] = 1; order[++narch] = arch }
}
function at(line, name,   r) {
	# "name +step (at)": the time from QEMU start
	if (match(line, name " \\+[^ ]+ \\([^)]+\\)")) {
		r = substr(line, RSTART, RLENGTH)
		sub(/.*\(/, "", r); sub(/\)/, "", r)
		return secs(r)
	}
	return -1
}
/ boot phases: / {
	line = $0
	arch = line; sub(/ boot phases:.*/, "", arch); sub(/.* /, "", arch)
	kt = at(line, "u-root init"); ut = at(line, "uinit console"); st = at(line, "shell answers")
	if (kt >= 0) note(arch, "kernel", kt)
	if (kt >= 0 && ut >= 0) note(arch, "init", ut - kt)
	if (ut >= 0 && st >= 0) note(arch, "shell", st - ut)
}
# "ARCH: shell ready" is TestLifecycle (the TestBuildroot line names no arch)
/ [a-z0-9]+: shell ready .*, profile converged / {
	line = $0
	arch = line; sub(/: shell ready.*/, "", arch); sub(/.* /, "", arch)
	r = line; sub(/.*shell ready /, "", r); sub(/,.*/, "", r)
	c = line; sub(/.*profile converged /, "", c); sub(/ .*/, "", c)
	note(arch, "ready", secs(r)); note(arch, "converged", secs(c))
}
function cell(arch, col,   k) {
	k = arch SUBSEP col
	if (!(k in lo)) return "-"
	return sprintf("%.1f-%.1f s", lo[k], hi[k])
}
END {
	print "| arch | boots | kernel | init + uinit | shell | shell answers | profile converged |"
	print "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
	for (i = 1; i <= narch; i++) {
		a = order[i]
		b = n[a SUBSEP "kernel"]
		if (n[a SUBSEP "ready"] > b) b = n[a SUBSEP "ready"]
		printf "| %s | %d | %s | %s | %s | %s | %s |\n", a, b, cell(a, "kernel"), cell(a, "init"), cell(a, "shell"), cell(a, "ready"), cell(a, "converged")
	}
}' "$1"
