#!/usr/bin/env bash
# Fetches a Debian kernel for one target architecture and lays it out for the
# QEMU image: vmlinuz, a flat modules/ dir with a load-order, kernel.version
# and config.
#
# usage: scripts/fetch-kernel.sh ARCH OUTDIR     ARCH: amd64 arm64 armv7 mipsle
#
# env:
#   FLAVOUR        Debian kernel flavour (default per arch: cloud-amd64, arm64,
#                  armmp, 4kc-malta). FLAVOUR=amd64 gives the generic amd64
#                  kernel, which unlike cloud-amd64 has MTD/UBI/UBIFS/JFFS2.
#   UROUTE_CACHE   cache root (default ~/.cache/uroute); kernels live in
#                  $UROUTE_CACHE/kernels so they survive fresh clones.
#   KERNEL_LISTS_MAX_AGE  minutes before the per-arch apt lists are refreshed
#                  (default 1440); within that a warm run needs no network.
#
# Apt runs with a private state per architecture (lists, cache, empty dpkg
# status), so the host's apt and dpkg are never touched and no foreign
# architecture has to be added to dpkg.
set -euo pipefail

usage() {
	echo "usage: $0 amd64|arm64|armv7|mipsle OUTDIR" >&2
	exit 2
}
[ $# -eq 2 ] || usage
arch=$1
outdir=$2

case $arch in
amd64) debarch=amd64 flavour=${FLAVOUR:-cloud-amd64} ;;
arm64) debarch=arm64 flavour=${FLAVOUR:-arm64} ;;
armv7) debarch=armhf flavour=${FLAVOUR:-armmp} ;;
mipsle) debarch=mipsel flavour=${FLAVOUR:-4kc-malta} ;;
*) usage ;;
esac
meta=linux-image-$flavour

# Which modules the image carries and their load order are decided in Go
# (firmware/kmod: kmod.RouterModules, their dependencies from each module's
# .modinfo, and the soft dependencies .modinfo does not show), by
# firmware/cmd/uroute-modules, built here into $UROUTE_CACHE/bin.
repo=$(cd "$(dirname "$0")/.." && pwd)

for tool in apt-get apt-cache dpkg-deb go; do
	if ! command -v "$tool" >/dev/null; then
		echo "fetch-kernel: $tool missing" >&2
		exit 1
	fi
done

cache=${UROUTE_CACHE:-$HOME/.cache/uroute}/kernels
bindir=${UROUTE_CACHE:-$HOME/.cache/uroute}/bin
state=$cache/$debarch
debdir=$cache/debs
mkdir -p "$state/lists/partial" "$state/cache/archives/partial" \
	"$state/etc/sources.list.d" "$debdir" "$outdir"
: >"$state/status"

# The host's sources, with arch restrictions removed: an [arch=amd64] line or
# an Architectures: field would otherwise hide the mirror from other arches.
# Regenerated every run so it follows changes to the host's sources.
srcetc=$state/etc
# strip_arch: sources.list lines without [arch=...] options (or their
# deb822 Architectures: fields).
strip_arch() {
	case $1 in
	*.sources) grep -viE '^architectures(-add|-remove)?:' "$1" || true ;;
	*) sed -E -e ':a' -e 's/(\[[^]]*)\barch(-add|-remove)?=[^] ]*/\1/' -e 'ta' -e 's/\[ *\]//' "$1" ;;
	esac
}
: >"$srcetc/sources.list"
[ ! -f /etc/apt/sources.list ] || strip_arch /etc/apt/sources.list >"$srcetc/sources.list"
rm -f "$srcetc/sources.list.d/"*
for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
	[ ! -f "$f" ] || strip_arch "$f" >"$srcetc/sources.list.d/${f##*/}"
done

aptopts=(
	-q
	-oAPT::Architecture="$debarch" -oAPT::Architectures="$debarch"
	-oDir::State::Lists="$state/lists" -oDir::Cache="$state/cache"
	-oDir::State::Status="$state/status"
	-oDir::Etc::SourceList="$srcetc/sources.list"
	-oDir::Etc::SourceParts="$srcetc/sources.list.d"
	-oAcquire::Languages=none
	-oAcquire::IndexTargets::deb::DEP-11::DefaultEnabled=false
)
# As root, apt hands downloads to the _apt user, which cannot write under a
# 0700 $HOME; staying root avoids a warning on every download.
[ "$(id -u)" -ne 0 ] || aptopts+=(-oAPT::Sandbox::User=root)

# Only the main suite matters: e.g. bookworm-security's armhf index has been
# seen failing mid-sync, and mipsel has no security suite at all.
have_main_index() {
	find "$state/lists" -maxdepth 1 -name "*_dists_*_main_binary-${debarch}_Packages*" |
		grep -qvE '_dists_[^_]*-(security|updates|backports)_'
}

stamp=$state/updated
maxage=${KERNEL_LISTS_MAX_AGE:-1440}
if [ -z "$(find "$stamp" -mmin "-$maxage" 2>/dev/null)" ] || ! have_main_index; then
	ok=
	for try in 1 2; do
		if apt-get "${aptopts[@]}" update >"$state/update.log" 2>&1; then
			ok=1
			break
		fi
		echo "fetch-kernel: apt-get update ($debarch) failed, try $try" >&2
	done
	if [ -z "$ok" ]; then
		grep -E '^(E|W):' "$state/update.log" | head -5 >&2 || true
		if ! have_main_index; then
			echo "fetch-kernel: no main Packages index for $debarch; see $state/update.log" >&2
			exit 1
		fi
		echo "fetch-kernel: continuing with the indexes that were fetched" >&2
	fi
	touch "$stamp"
fi

# field PKG NAME: a control field of the candidate version.
field() {
	apt-cache "${aptopts[@]}" show --no-all-versions "$1" 2>/dev/null |
		sed -n "s/^$2: //p" | head -1
}

# The metapackage's Depends names the ABI-versioned image package; newer
# Debian may add a separate linux-modules-* package, fetched if so.
realpkg=$(field "$meta" Depends | sed -E 's/[,|]/\n/g' | sed -E 's/^ +//; s/ .*//' |
	grep -E '^linux-image-[0-9]' | head -1 || true)
if [ -z "$realpkg" ]; then
	echo "fetch-kernel: cannot resolve $meta for $debarch (no such package?)" >&2
	exit 1
fi
pkgs=("$realpkg")
while read -r p; do
	[ -n "$p" ] && pkgs+=("$p")
done < <(field "$realpkg" Depends | sed -E 's/[,|]/\n/g' | sed -E 's/^ +//; s/ .*//' |
	grep -E '^linux-modules-[0-9]' || true)

debstate=cached
debs=()
for p in "${pkgs[@]}"; do
	ver=$(field "$p" Version)
	deb=$debdir/${p}_${ver#*:}_${debarch}.deb
	if [ -s "$deb" ]; then
		echo "fetch-kernel: $p $ver: cached $deb" >&2
	else
		echo "fetch-kernel: $p $ver: downloading" >&2
		# apt-get download writes into the current directory; a scratch
		# dir keeps a half-written .deb from ever looking cached.
		tmp=$(mktemp -d "$debdir/.dl.XXXXXX")
		(cd "$tmp" && apt-get "${aptopts[@]}" download "$p=$ver" >&2)
		mv "$tmp"/*.deb "$deb"
		rmdir "$tmp"
		debstate=downloaded
	fi
	debs+=("$deb")
done

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
for deb in "${debs[@]}"; do
	dpkg-deb -x "$deb" "$root"
done

cfg=$(find "$root/boot" -maxdepth 1 -name 'config-*' | head -1)
kver=${cfg##*/config-}
moddir=$(find "$root" -maxdepth 3 -type d -path "*/modules/$kver" | head -1)
# MIPS Malta ships an uncompressed ELF vmlinux rather than a vmlinuz.
kimg=$(find "$root/boot" -maxdepth 1 \( -name "vmlinuz-$kver" -o -name "vmlinux-$kver" \) | head -1)
if [ -z "$cfg" ] || [ -z "$moddir" ] || [ -z "$kimg" ]; then
	echo "fetch-kernel: unexpected layout in ${debs[*]}" >&2
	exit 1
fi

cp "$kimg" "$outdir/vmlinuz"
cp "$cfg" "$outdir/config"
echo "$kver" >"$outdir/kernel.version"

mkdir -p "$bindir"
(cd "$repo" && go build -o "$bindir/uroute-modules" ./firmware/cmd/uroute-modules)
summary=$("$bindir/uroute-modules" -moddir "$moddir" -out "$outdir/modules")
order=$outdir/modules/load-order
built=${summary#*builtin=}
built=${built%% *}
absent=${summary##*absent=}

nmods=$(wc -l <"$order")
modsize=$(du -sh "$outdir/modules" | cut -f1)
ksize=$(du -h "$outdir/vmlinuz" | cut -f1)
echo "fetch-kernel: $arch $realpkg $(field "$realpkg" Version) kernel=$kver" \
	"vmlinuz=$ksize modules=$nmods($modsize) builtin=$built absent=$absent deb=$debstate"
