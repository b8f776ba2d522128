# shellcheck shell=bash
# Sourced by scripts that install a missing tool on demand:
#
#   need CMD PKG    install Debian package PKG if command CMD is missing
#
# apt-get install --no-install-recommends (QEMU's recommended EFI firmware
# is ~400 MB that -kernel boots never use), with one apt-get update and a
# retry if the package lists are stale; sudo when not root. Exits if CMD is
# still missing afterwards. scripts/deps.sh installs everything the tests
# need in one batch instead.
need() {
	command -v "$1" >/dev/null && return 0
	local me=${0##*/}
	echo "${me%.sh}: $1 missing, installing $2" >&2
	local sudo=
	[ "$(id -u)" -eq 0 ] || sudo=sudo
	export DEBIAN_FRONTEND=noninteractive
	$sudo apt-get install -y -q --no-install-recommends "$2" >&2 ||
		{ $sudo apt-get update -q >&2 && $sudo apt-get install -y -q --no-install-recommends "$2" >&2; }
	command -v "$1" >/dev/null || { echo "${me%.sh}: $1 still missing after installing $2" >&2; exit 1; }
}
