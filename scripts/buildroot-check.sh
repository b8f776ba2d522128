#!/usr/bin/env bash
# Checks the Buildroot external tree (buildroot/) without the internet:
#
#   scripts/buildroot-check.sh [check|build|all]     (default: all)
#
#   check  1. utils/check-package over every file of the tree: no warnings.
#          2. every configs/*_defconfig resolves (make <name>_defconfig) with
#             no unknown symbol, and make savedefconfig gives back the file.
#   build  3. the offline CI build of the QEMU malta (mipsel) defconfig: its
#             uroute package and rootfs (rootfs.cpio), see docs/buildroot.md
#             "Offline CI mode". Prints the rootfs path on its last line;
#             qemu-test/buildroot_test.go boots it.
#
# Buildroot is the source release $BUILDROOT_TARBALL (default
# ../shared/buildroot/buildroot-2026.05.1.tar.xz beside the checkout),
# unpacked once into $UROUTE_CACHE/buildroot-<sha256> (UROUTE_CACHE default
# ~/.cache/uroute). The build's output directory is cached there too: a run
# whose inputs (Buildroot, the tree, the Go and cross toolchains, the kernel
# modules) have not changed only rebuilds uroute from the checkout, or
# nothing at all if the checkout has not changed either.
#
# Needs what scripts/deps.sh installs: /usr/bin/python3 with python3-magic
# and python3-flake8, shellcheck, gcc-mipsel-linux-gnu and
# libc6-dev-mipsel-cross, fakeroot, rsync, cpio, bc, unzip, wget (the last
# three only because Buildroot checks for them). Go modules come from
# $GOPROXY (the module proxy) through the module cache.
set -euo pipefail

what=${1:-all}
case $what in check|build|all) ;; *) echo "usage: $0 [check|build|all]" >&2; exit 2 ;; esac

repo=$(cd "$(dirname "$0")/.." && pwd)
ext=$repo/buildroot
cache=${UROUTE_CACHE:-$HOME/.cache/uroute}
tarball=${BUILDROOT_TARBALL:-$repo/../shared/buildroot/buildroot-2026.05.1.tar.xz}
[ -f "$tarball" ] || tarball=/work/shared/buildroot/buildroot-2026.05.1.tar.xz
[ -f "$tarball" ] || { echo "$0: no Buildroot release tarball (set BUILDROOT_TARBALL)" >&2; exit 1; }
jobs=${BUILDROOT_JOBS:-2}

log() { echo "buildroot-check: $*" >&2; }
# Buildroot's own make, quiet unless it fails.
brmake() {
	local out=$1; shift
	if ! nice -n 10 make -C "$br" BR2_EXTERNAL="$ext" "$@" > "$out" 2>&1; then
		tail -n 60 "$out" >&2
		log "make $* failed (whole log: $out)"
		return 1
	fi
}

# --- unpack, keyed by the tarball's sha256 -----------------------------------
sha=$(sha256sum "$tarball" | cut -d' ' -f1)
sums=$(dirname "$tarball")/SHA256SUMS
if [ -f "$sums" ] && ! grep -q "^$sha  $(basename "$tarball")\$" "$sums"; then
	echo "$0: $tarball does not match $sums" >&2
	exit 1
fi
brroot=$cache/buildroot-$sha
if [ ! -f "$brroot/.unpacked" ]; then
	log "unpacking $(basename "$tarball") into $brroot"
	rm -rf "$brroot"
	mkdir -p "$brroot"
	tar -xJf "$tarball" -C "$brroot"
	touch "$brroot/.unpacked"
fi
br=$(echo "$brroot"/buildroot-*/)
br=${br%/}
work=$brroot/work
mkdir -p "$work"

# The external tree's inputs: Buildroot, every file of buildroot/ (tracked or
# not), the board profiles and this script.
tree_key() {
	{
		echo "$sha"
		(cd "$repo" && find buildroot board/profiles scripts/buildroot-check.sh -type f -print0 |
			sort -z | xargs -0 sha256sum)
	} | sha256sum | cut -d' ' -f1
}

# --- 1 and 2 ------------------------------------------------------------------
check_package() {
	log "1. utils/check-package over buildroot/"
	local files out
	mapfile -t files < <(cd "$repo" && git ls-files --cached --others --exclude-standard buildroot | sed "s|^|$repo/|")
	# check-package reads its own modules relative to itself and runs
	# ShellCheck and flake8; Debian's python modules need Debian's python.
	out=$(cd "$br" && /usr/bin/python3 utils/check-package -b "${files[@]}" 2>&1) || {
		echo "$out" >&2; log "check-package failed"; return 1; }
	echo "$out" | tail -n 2 >&2
	# It exits 0 with warnings; "0 warnings generated" is the only pass.
	if ! echo "$out" | grep -q '^0 warnings generated'; then
		echo "$out" >&2
		log "check-package: warnings"
		return 1
	fi
}

# The menuconfig choice of board profiles and board/profiles must agree:
# a profile without a choice cannot be picked, a choice without a profile
# fails the build.
check_profiles() {
	local f name names
	log "1. BR2_PACKAGE_UROUTE_BOARD offers every board/profiles/*.toml and no other"
	names=$(sed -n 's/^\tdefault "\(.*\)" if BR2_PACKAGE_UROUTE_BOARD_.*/\1/p' "$ext/package/uroute/Config.in" | sort)
	if ! diff -u <(for f in "$repo"/board/profiles/*.toml; do basename "$f" .toml; done | sort) \
		<(echo "$names"); then
		log "board/profiles (-) and package/uroute/Config.in (+) differ"
		return 1
	fi
}

# options prints a defconfig's lines but its comments, keeping
# "# BR2_... is not set".
options() { awk '!/^#/ || /^# BR2_.* is not set$/' "$1"; }

check_defconfigs() {
	local d name o
	for d in "$ext"/configs/*_defconfig; do
		name=$(basename "$d")
		o=$work/defconfig-${name%_defconfig}
		log "2. $name: resolves, and savedefconfig gives it back"
		rm -rf "$o"
		mkdir -p "$o"
		brmake "$o/defconfig.log" O="$o" "$name"
		# Kconfig warns of a value of the wrong type or an override...
		if grep -E 'warning:' "$o/defconfig.log"; then
			log "$name: kconfig warnings (above)"
			return 1
		fi
		# ...but drops a symbol no Config.in defines, or one whose
		# dependencies are not met, without a word: every option of the
		# defconfig must be in .config with its value.
		local line sym missing=0
		while IFS= read -r line; do
			case $line in
			"# BR2_"*" is not set") sym=${line#\# }; sym=${sym%% *} ;;
			BR2_*=*) sym=${line%%=*} ;;
			*) continue ;;
			esac
			if ! grep -qxF -- "$line" "$o/.config"; then
				log "$name: $sym: want '$line', .config has '$(grep -E "^$sym=|^# $sym is not set" "$o/.config" || echo nothing)'"
				missing=1
			fi
		done < "$d"
		[ "$missing" = 0 ] || return 1
		brmake "$o/savedefconfig.log" O="$o" BR2_DEFCONFIG="$o/saved_defconfig" savedefconfig
		# Comments other than "# BR2_... is not set" are for readers
		# (and check-package) and savedefconfig drops them.
		if ! diff -u <(options "$d") <(options "$o/saved_defconfig"); then
			log "$name: savedefconfig differs (an option was dropped or is not minimal)"
			return 1
		fi
	done
}

# --- 3: the offline build -------------------------------------------------------
build() {
	local base=$ext/configs/uroute_qemu_malta_defconfig
	local modules=$cache/kernel-mipsle/modules
	local gomodcache goproxy uroot moddir o key srckey
	[ -f "$modules/load-order" ] || { echo "$0: no $modules (scripts/fetch-kernel.sh mipsle $cache/kernel-mipsle)" >&2; return 1; }
	gomodcache=$(go env GOMODCACHE)
	goproxy=$(go env GOPROXY)
	# u-root, the version go.mod pins, from the module cache.
	uroot=$(cd "$repo" && go mod download -json github.com/u-root/u-root | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
	# Where uinit loads modules from (firmware/cmd/uinit/modules.go), so
	# the overlay follows it: /lib/modules, or a directory under it.
	moddir=$(sed -n 's/^\tmodulesDir *= *"\(\/lib\/modules[^"]*\)"$/\1/p' "$repo/firmware/cmd/uinit/modules.go")
	[ -n "$moddir" ] || { echo "$0: cannot find modulesDir in firmware/cmd/uinit/modules.go" >&2; return 1; }
	[ -d "$uroot" ] || { echo "$0: cannot find u-root in the module cache" >&2; return 1; }

	o=$cache/buildroot-out-malta-ci
	# What the toolchain, host tools and packages are built from; when it
	# changes the output directory starts over.
	key=$( {
		tree_key
		go version; go env GOROOT
		mipsel-linux-gnu-gcc --version | head -n1
		dpkg-query -W libc6-dev-mipsel-cross fakeroot 2>/dev/null || true
		sha256sum "$modules"/*
		echo "$uroot $moddir"
	} | sha256sum | cut -d' ' -f1)
	# What uroute's package is built from: the checkout (tracked files and
	# untracked ones not ignored, as the override's rsync copies them).
	srckey=$( (cd "$repo" && git ls-files -s && git diff HEAD && git ls-files --others --exclude-standard | xargs -r sha256sum) | sha256sum | cut -d' ' -f1)

	if [ "$(cat "$o/.uroute-ci-key" 2>/dev/null)" != "$key" ]; then
		log "3. offline build: inputs changed, starting over in $o"
		rm -rf "$o"
	fi
	mkdir -p "$o"
	export UROUTE_CI_GOROOT UROUTE_CI_UROOT UROUTE_CI_GOPROXY UROUTE_CI_GOMODCACHE
	UROUTE_CI_GOROOT=$(go env GOROOT)
	UROUTE_CI_UROOT=$uroot
	UROUTE_CI_GOPROXY=$goproxy
	UROUTE_CI_GOMODCACHE=$gomodcache
	if [ -f "$o/images/rootfs.cpio" ] && [ "$(cat "$o/.uroute-ci-srckey" 2>/dev/null)" = "$srckey" ]; then
		log "3. offline build: inputs and checkout unchanged, cached"
	else
		local t0=$SECONDS
		if [ ! -f "$o/.config" ]; then
			# The malta defconfig, then the offline mode (later lines win),
			# then the Debian kernel's modules as an overlay.
			mkdir -p "$o/overlay$(dirname "$moddir")"
			cp -r "$modules" "$o/overlay$moddir"
			{ cat "$base" "$ext/ci/offline.config"
			  echo "BR2_ROOTFS_OVERLAY=\"$o/overlay\""
			} > "$o/ci_defconfig"
			brmake "$o/defconfig.log" O="$o" BR2_DEFCONFIG="$o/ci_defconfig" defconfig
			# The mode must have taken: Debian's compiler, no init
			# system, no BusyBox, no kernel.
			local want
			for want in 'BR2_TOOLCHAIN_EXTERNAL_CUSTOM_PREFIX="mipsel-linux-gnu"' \
				BR2_INIT_NONE=y BR2_PACKAGE_UROUTE=y BR2_PACKAGE_U_ROOT=y \
				'# BR2_PACKAGE_BUSYBOX is not set' '# BR2_LINUX_KERNEL is not set'; do
				if ! grep -qxF -- "$want" "$o/.config"; then
					log "offline mode: .config lacks '$want'"
					return 1
				fi
			done
		else
			# Same inputs, new checkout: copy uroute again and rebuild it.
			brmake "$o/dirclean.log" O="$o" uroute-dirclean
		fi
		log "3. offline build (make -j1 BR2_JLEVEL=$jobs, nice 10): log $o/build.log"
		# No network but the module proxy: make Buildroot's downloads fail
		# fast instead of hanging, so that a package that would need one
		# shows up as an error.
		brmake "$o/build.log" O="$o" BR2_JLEVEL="$jobs" \
			BR2_PRIMARY_SITE= BR2_BACKUP_SITE= all
		if grep -E '>>> .* Downloading|wget .*http' "$o/build.log"; then
			log "the offline build downloaded something (above)"
			return 1
		fi
		echo "$srckey" > "$o/.uroute-ci-srckey"
		log "3. offline build took $((SECONDS - t0)) s"
	fi
	echo "$key" > "$o/.uroute-ci-key"
	log "rootfs: $(du -b "$o/images/rootfs.cpio" | cut -f1) bytes; target files: $(du -sb "$o/target" | cut -f1) bytes"
	echo "$o/images/rootfs.cpio"
}

# Steps 1 and 2 depend on nothing but tree_key's inputs: a pass is
# remembered, and the same inputs are not checked again.
checks() {
	local stamp
	stamp=$work/checks-passed-$(tree_key)
	if [ -f "$stamp" ]; then
		log "1, 2: passed before with these inputs ($(basename "$stamp"))"
		return 0
	fi
	check_package
	check_profiles
	check_defconfigs
	rm -f "$work"/checks-passed-*
	touch "$stamp"
}

case $what in
check) checks ;;
build) build ;;
all) checks; build ;;
esac
