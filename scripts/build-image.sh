#!/usr/bin/env bash
# Builds uroute's initramfs for one architecture:
#
#   scripts/build-image.sh ARCH OUT.cpio     ARCH: amd64 | arm64 | armv7 | mipsle
#
# The image holds one busybox-style binary, /bbin/bb, built by u-root from
# uroute's ifmgrd, ifctl and uinit (with this module's dependency versions)
# and the u-root commands a router needs, with symlinks /bin/ifmgrd,
# /bin/ifctl and /bin/uroute-uinit; the board profiles; and /bin/uinit ->
# uroute-uinit, which u-root's /init runs before it starts the shell. See
# docs/image.md.
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
#   EXTRA_CMDS="C"  also build these ./firmware/cmd commands into /bin, each
#                   a static binary of its own (test tools a router does not
#                   carry: uroute-probe, the crash test's uroute-crashload)
#   UPGRADE_KEYS=F  trusted firmware signing keys (hex ed25519 public keys,
#                   one a line) to install as /etc/uroute/upgrade.pub;
#                   without it the image refuses every upgrade
#                   (docs/upgrade.md)
#
# u-root is pinned in go.mod (a tool dependency). Same inputs give the same
# bytes: u-root zeroes the cpio metadata (mtime, uid, inode) and builds with
# -trimpath and no build ID, and so do we (EXTRA_CMDS).
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

target_env=(GOOS=linux "GOARCH=$goarch")
[ -n "$goarm" ] && target_env+=("GOARM=$goarm")
[ -n "$gomips" ] && target_env+=("GOMIPS=$gomips")

# 2. A Go workspace for the busybox build: this module (so ifmgrd, ifctl
#    and uinit get exactly this module's dependency versions: u-root v0.16.0
#    is already in our module graph, so the workspace selects the same
#    versions of everything they import), u-root's module (its commands'
#    dependencies, which our go.mod does not list), and a one-package alias
#    module. The busybox names each command after its import path's last
#    element and picks it by the name it is run as; the router's boot step
#    is called uroute-uinit (so the flag -uinitcmd makes /bin/uinit), and
#    typed as such from the shell, which passes the bare name as argv[0]:
#    github.com/uroute/uroute/bbalias/uroute-uinit is firmware/cmd/uinit
#    through a symlink, not a copy.
ws=$tmp/ws
mkdir -p "$ws/alias"
sed -e 's#^module .*#module github.com/uroute/uroute/bbalias#' -e '/^tool /d' go.mod > "$ws/alias/go.mod"
ln -s "$repo/firmware/cmd/uinit" "$ws/alias/uroute-uinit"
(cd "$ws" && go work init "$repo" "$uroot_dir" ./alias)

# 3. The image: one busybox-style binary, /bbin/bb, one Go runtime for
#    every command (before, ifmgrd, ifctl and uinit were three more static
#    binaries, each with its own runtime, reflection and netlink code:
#    5.9 MB xz with the modules on mipsle; docs/image.md, "Sizes").
#    Commands: uroute's, and of u-root's only what a router's console and
#    the boot need:
#      boot and console   init, gosh
#      files and flash    cat chmod cp dd df du find grep head hexdump ln ls
#                         mkdir mv readlink rm sort sync tail tee touch wc
#      system             date dmesg free kill pidof printenv ps seq sleep
#                         uname uptime
#      kernel, mounts     insmod lsmod mount rmmod umount
#      network            ip ping
#    Left out: u-root's shutdown and poweroff (they reboot at once, which to
#    ifmgrd and /data is a power cut: "uroute-uinit shutdown" is the
#    router's), and what a router has no use for or that drags in much
#    code: sshd, scp, wget, dhclient, ntpdate, netcat, gpgv, gpt, kexec,
#    tar, gzip, cpio, more, man, strace and the rest of cmds/core.
#    gosh is built with the goshsmall tag: a plain "$ " line prompt on the
#    tty's own line discipline instead of the full-screen editor, which at
#    times froze for good when a line arrived while it was redrawing (seen
#    in about 1 of 35 commands on a serial console with ifmgrd logging to
#    it). A router's console must not lock up.
#    u-root's defaults stay: -trimpath, stripped, no build ID, and
#    -gcflags=all=-l (no inlining: 17% smaller, docs/image.md).
core=github.com/u-root/u-root/cmds/core
cmds=(
	./firmware/cmd/ifmgrd ./firmware/cmd/ifctl github.com/uroute/uroute/bbalias/uroute-uinit
	"$core"/{init,gosh}
	"$core"/{cat,chmod,cp,dd,df,du,find,grep,head,hexdump,ln,ls,mkdir,mv,readlink,rm,sort,sync,tail,tee,touch,wc}
	"$core"/{date,dmesg,free,kill,pidof,printenv,ps,seq,sleep,uname,uptime}
	"$core"/{insmod,lsmod,mount,rmmod,umount}
	"$core"/{ip,ping}
)
# uinit runs /bin/ifmgrd and /bin/ifctl by path, the tests and the docs
# type /bin/uroute-uinit: symlinks to the busybox's own links in /bbin.
mkdir -p "$tmp/links"
for cmd in ifmgrd ifctl uroute-uinit; do
	ln -s "../bbin/$cmd" "$tmp/links/$cmd"
done
files=(
	-files "$tmp/links/ifmgrd:bin/ifmgrd"
	-files "$tmp/links/ifctl:bin/ifctl"
	-files "$tmp/links/uroute-uinit:bin/uroute-uinit"
	-files "$profile:etc/uroute/board.toml"
	-files "$repo/board/profiles:etc/uroute/profiles"
)
# Test tools are separate static binaries in /bin, so that a test image's
# busybox is byte for byte the router's.
# shellcheck disable=SC2206 # EXTRA_CMDS is a word list
extra_cmds=(${EXTRA_CMDS:-})
mkdir -p "$tmp/bin"
for cmd in "${extra_cmds[@]}"; do
	env "${target_env[@]}" go build -trimpath -ldflags='-s -w -buildid=' \
		-o "$tmp/bin/$cmd" "./firmware/cmd/$cmd"
	files+=(-files "$tmp/bin/$cmd:bin/$cmd")
done
if [ -n "${UPGRADE_KEYS:-}" ]; then
	# A copy, not the path: u-root copies a symlink as a symlink, which
	# would dangle in the image (a cache whose key file is a link).
	cp -L "$UPGRADE_KEYS" "$tmp/upgrade.pub"
	files+=(-files "$tmp/upgrade.pub:etc/uroute/upgrade.pub")
fi
if [ -n "${MODULES_DIR:-}" ]; then
	# Kernel modules (*.ko) and their load-order file, for uinit.
	[ -f "$MODULES_DIR/load-order" ] || { echo "$0: $MODULES_DIR/load-order missing" >&2; exit 1; }
	files+=(-files "$MODULES_DIR:lib/modules/uroute")
fi
mkdir -p "$tmp/uroot"
env "${target_env[@]}" GOWORK="$ws/go.work" "$tmp/u-root" \
	-o "$out" \
	-tmp-dir "$tmp/uroot" \
	-skip-ldd \
	-uinitcmd=/bin/uroute-uinit \
	-go-build-tags goshsmall \
	"${files[@]}" \
	"${cmds[@]}" 2> "$tmp/u-root.log" || { cat "$tmp/u-root.log" >&2; exit 1; }

case ${COMPRESS:-} in
"") ;;
gz) gzip -9 -n -c "$out" > "$out.gz" ;;
xz) xz -9 --check=crc32 -T1 -c "$out" > "$out.xz" ;;
*) echo "$0: COMPRESS=$COMPRESS: want gz or xz" >&2; exit 2 ;;
esac
ls -l "$out"* >&2
