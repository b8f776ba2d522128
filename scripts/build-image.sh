#!/usr/bin/env bash
# Builds uroute's initramfs for one architecture:
#
#   scripts/build-image.sh ARCH OUT.cpio     ARCH: amd64 | arm64 | armv7 | mipsle
#
# The image holds u-root's core commands (one busybox-style binary in /bbin,
# built by u-root), uroute's own ifmgrd, ifctl and uinit (built separately,
# in this module, with this module's Go version and dependencies), the board
# profiles, and /bin/uinit -> uroute-uinit, which u-root's /init runs before
# it starts the shell. See docs/image.md.
#
# Environment:
#   BOARD=NAME      profile to install as /etc/uroute/board.toml
#                   (default: qemu-$ARCH; file board/profiles/NAME.toml)
#   BOARD_FILE=PATH profile file to install instead (overrides BOARD; e.g.
#                   a test profile from qemu-test/profiles)
#   COMPRESS=gz|xz  also write OUT.cpio.gz or OUT.cpio.xz (default: none)
#   MODULES_DIR=D   copy directory D (kernel modules *.ko plus a load-order
#                   file naming them, one a line) to /lib/modules/uroute,
#                   out of u-root init's reach (it loads /lib/modules/*.ko
#                   in name order); uinit loads them in that order
#   KEEP_TMP=1      keep the work directory and print its path
#   EXTRA_CMDS="C"  also build these ./firmware/cmd commands into /bin (test
#                   tools a router does not carry: the crash test's
#                   uroute-crashload)
#   UPGRADE_KEYS=F  trusted firmware signing keys (hex ed25519 public keys,
#                   one a line) to install as /etc/uroute/upgrade.pub;
#                   without it the image refuses every upgrade
#                   (docs/upgrade.md)
#
# u-root is pinned in go.mod (a tool dependency). Same inputs give the same
# bytes: u-root zeroes the cpio metadata (mtime, uid, inode) and builds with
# -trimpath and no build ID, and so do we.
set -euo pipefail

usage() { echo "usage: $0 amd64|arm64|armv7|mipsle OUT.cpio" >&2; exit 2; }
[ $# -eq 2 ] || usage
arch=$1
out=$2
case $arch in
amd64)  goarch=amd64;  goarm=;  gomips= ;;
arm64)  goarch=arm64;  goarm=;  gomips= ;;
armv7)  goarch=arm;    goarm=7; gomips= ;;
mipsle) goarch=mipsle; goarm=;  gomips=softfloat ;;
*) usage ;;
esac

repo=$(cd "$(dirname "$0")/.." && pwd)
case $out in /*) ;; *) out=$PWD/$out ;; esac
mkdir -p "$(dirname "$out")"
board=${BOARD:-qemu-$arch}
profile=$repo/board/profiles/$board.toml
if [ -n "${BOARD_FILE:-}" ]; then
	case $BOARD_FILE in /*) profile=$BOARD_FILE ;; *) profile=$PWD/$BOARD_FILE ;; esac
fi
[ -f "$profile" ] || { echo "$0: no board profile $profile" >&2; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/uroute-image.XXXXXX")
if [ "${KEEP_TMP:-}" = 1 ]; then
	echo "work directory: $tmp" >&2
else
	trap 'rm -rf "$tmp"' EXIT
fi

cd "$repo"
export CGO_ENABLED=0 GOFLAGS=${GOFLAGS:-}
# The variables the target build uses must not leak into the host build.
unset GOOS GOARCH GOARM GOMIPS GO386 GOAMD64 GOARM64

# 1. u-root itself, for the host. "GOARCH=x go tool u-root" would build the
#    tool for the target, so build it first and run it with the target's
#    environment.
go build -o "$tmp/u-root" github.com/u-root/u-root
uroot_dir=$(go list -m -f '{{.Dir}}' github.com/u-root/u-root)

# 2. uroute's programs, for the target, in module mode.
target_env=(GOOS=linux "GOARCH=$goarch")
[ -n "$goarm" ] && target_env+=("GOARM=$goarm")
[ -n "$gomips" ] && target_env+=("GOMIPS=$gomips")
mkdir -p "$tmp/bin"
# shellcheck disable=SC2206 # EXTRA_CMDS is a word list
extra_cmds=(${EXTRA_CMDS:-})
for cmd in ifmgrd ifctl uinit uroute-probe "${extra_cmds[@]}"; do
	env "${target_env[@]}" go build -trimpath -ldflags='-s -w -buildid=' \
		-o "$tmp/bin/$cmd" "./firmware/cmd/$cmd"
done

# 3. The image. gosh is built with the goshsmall tag: a plain "$ " line
#    prompt on the tty's own line discipline instead of the full-screen
#    editor, which at times froze for good when a line arrived while it was
#    redrawing (seen in about 1 of 35 commands on a serial console with
#    ifmgrd logging to it). A router's console must not lock up.
#    u-root builds its core commands from its own module (the
#    pinned version in the module cache, whose go.mod lists their
#    dependencies; ours does not), so it runs there, and adds our binaries
#    and the profiles as plain files.
files=(
	-files "$tmp/bin/ifmgrd:bin/ifmgrd"
	-files "$tmp/bin/ifctl:bin/ifctl"
	-files "$tmp/bin/uinit:bin/uroute-uinit"
	-files "$tmp/bin/uroute-probe:bin/uroute-probe"
	-files "$profile:etc/uroute/board.toml"
	-files "$repo/board/profiles:etc/uroute/profiles"
)
for cmd in "${extra_cmds[@]}"; do
	files+=(-files "$tmp/bin/$cmd:bin/$cmd")
done
if [ -n "${UPGRADE_KEYS:-}" ]; then
	files+=(-files "$UPGRADE_KEYS:etc/uroute/upgrade.pub")
fi
if [ -n "${MODULES_DIR:-}" ]; then
	# Kernel modules (*.ko) and their load-order file, for uinit.
	[ -f "$MODULES_DIR/load-order" ] || { echo "$0: $MODULES_DIR/load-order missing" >&2; exit 1; }
	files+=(-files "$MODULES_DIR:lib/modules/uroute")
fi
(
	mkdir -p "$tmp/uroot"
	cd "$uroot_dir"
	go mod download
	env "${target_env[@]}" "$tmp/u-root" \
		-o "$out" \
		-tmp-dir "$tmp/uroot" \
		-skip-ldd \
		-uinitcmd=/bin/uroute-uinit \
		-go-build-tags goshsmall \
		"${files[@]}" \
		'github.com/u-root/u-root/cmds/core/*'
) 2> "$tmp/u-root.log" || { cat "$tmp/u-root.log" >&2; exit 1; }

case ${COMPRESS:-} in
"") ;;
gz) gzip -9 -n -c "$out" > "$out.gz" ;;
xz) xz -9 --check=crc32 -T1 -c "$out" > "$out.xz" ;;
*) echo "$0: COMPRESS=$COMPRESS: want gz or xz" >&2; exit 2 ;;
esac
ls -l "$out"* >&2
