#!/usr/bin/env bash
# Checks scripts/fetch-kernel.sh against the real Debian archive for every
# target arch (plus the generic amd64 flavour, the one with the flash stack):
# layout, load-order soundness, and that a second run is served from cache.
#
# usage: scripts/fetch-kernel_test.sh [ARCH...]
# Uses the normal kernel cache (UROUTE_CACHE) so repeated runs stay cheap;
# point UROUTE_CACHE at an empty dir to exercise a cold fetch. A cold run
# downloads 30-70 MB per kernel.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
fetch=$here/fetch-kernel.sh

cases=("$@")
[ ${#cases[@]} -gt 0 ] || cases=(amd64 arm64 armv7 mipsle amd64:amd64)

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0

bad() {
	echo "FAIL $c: $*" >&2
	ok=
}

# present OUT MOD CONFIG_SYM: module shipped, or built in per the config.
present() {
	[ -f "$1/modules/$2.ko" ] || grep -qx "$3=y" "$1/config"
}

for c in "${cases[@]}"; do
	arch=${c%%:*}
	flav=
	[ "$c" = "$arch" ] || flav=${c#*:}
	out=$tmp/$c
	ok=1
	t0=$(date +%s)
	if ! FLAVOUR=$flav "$fetch" "$arch" "$out/1" >"$tmp/$c.log1" 2>&1; then
		bad "first run failed"
		cat "$tmp/$c.log1" >&2
		fail=$((fail + 1))
		continue
	fi
	t1=$(date +%s)
	if ! FLAVOUR=$flav "$fetch" "$arch" "$out/2" >"$tmp/$c.log2" 2>&1; then
		bad "second run failed"
		cat "$tmp/$c.log2" >&2
		fail=$((fail + 1))
		continue
	fi
	t2=$(date +%s)
	o=$out/1

	# A kernel QEMU can boot: bzImage, arm64 Image, ARM zImage, or for
	# malta an ELF vmlinux (-z in case a flavour ships it gzipped).
	kind=$(file -bz "$o/vmlinuz")
	echo "$kind" | grep -qiE 'kernel|boot executable|zImage|ELF .*executable' ||
		bad "vmlinuz not recognised: $kind"
	[ -s "$o/kernel.version" ] || bad "kernel.version empty"
	grep -q '^CONFIG_' "$o/config" 2>/dev/null || bad "config missing"
	order=$o/modules/load-order
	[ -s "$order" ] || bad "load-order empty"

	# Each module's depends must already be loaded, i.e. earlier in order.
	declare -A seen=()
	n=0
	while IFS= read -r m; do
		n=$((n + 1))
		if [ ! -f "$o/modules/$m" ]; then
			bad "$m in load-order but not in modules/"
			continue
		fi
		case $(file -b "$o/modules/$m") in
		ELF*relocatable*) ;;
		*) bad "$m is not a plain (uncompressed) ELF module" ;;
		esac
		key=${m%.ko}
		key=${key//-/_}
		[ -z "${seen[$key]:-}" ] || bad "$m listed twice"
		deps=$(modinfo -F depends "$o/modules/$m")
		for d in ${deps//,/ }; do
			[ -n "${seen[${d//-/_}]:-}" ] || bad "$m needs $d, which is not earlier"
		done
		seen[$key]=1
	done <"$order"
	unset seen
	# Nothing but the listed modules (and load-order itself) is shipped.
	[ "$(find "$o/modules" -type f | wc -l)" -eq $((n + 1)) ] ||
		bad "modules/ holds files not in load-order"

	present "$o" 8021q CONFIG_VLAN_8021Q || bad "8021q neither module nor built in"
	present "$o" bridge CONFIG_BRIDGE || bad "bridge neither module nor built in"
	present "$o" ext4 CONFIG_EXT4_FS || bad "ext4 neither module nor built in"
	present "$o" virtio_net CONFIG_VIRTIO_NET || bad "virtio_net neither module nor built in"
	# UBIFS's init needs its crypto compressors (soft dependencies, which
	# modinfo's depends= does not list): each that is a module comes first.
	if grep -qx ubifs.ko "$order"; then
		line() { grep -nx "$1" "$order" | cut -d: -f1; }
		for comp in ZSTD:zstd DEFLATE:deflate LZO:lzo; do
			grep -qx "CONFIG_CRYPTO_${comp%%:*}=m" "$o/config" || continue
			cm=${comp#*:}.ko
			[ -n "$(line "$cm")" ] && [ "$(line "$cm")" -lt "$(line ubifs.ko)" ] ||
				bad "ubifs.ko is not preceded by its compressor $cm"
		done
	fi
	if [ "$flav" = amd64 ]; then
		present "$o" ubifs CONFIG_UBIFS_FS || bad "generic amd64 lacks ubifs"
		present "$o" block2mtd CONFIG_MTD_BLOCK2MTD || bad "generic amd64 lacks block2mtd"
	fi

	grep -q 'deb=cached' "$tmp/$c.log2" || bad "second run not served from cache"
	! grep -q 'downloading' "$tmp/$c.log2" || bad "second run downloaded"
	cmp -s "$o/vmlinuz" "$out/2/vmlinuz" || bad "second run gave another kernel"
	cmp -s "$order" "$out/2/modules/load-order" || bad "second run gave another load-order"

	echo "$c: first $((t1 - t0))s, second $((t2 - t1))s; $(grep '^fetch-kernel: .*kernel=' "$tmp/$c.log1" | sed 's/^fetch-kernel: //')"
	if [ -n "$ok" ]; then
		pass=$((pass + 1))
	else
		fail=$((fail + 1))
	fi
done

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
