#!/usr/bin/env bash
# Signs a router image for upgrades: appends an ed25519 signature trailer
# to the FIT from scripts/build-fit.sh (docs/upgrade.md, package
# firmware/fwimage):
#
#   scripts/sign-image.sh IN.itb OUT.img   sign IN (checked first) into OUT
#   scripts/sign-image.sh --public-key     make the key pair if needed and
#                                          print the public key's path
#
# The image only takes upgrades signed by a key it trusts: build it with
# UPGRADE_KEYS=$(scripts/sign-image.sh --public-key) scripts/build-image.sh ...
#
# Environment:
#   UROUTE_SIGNING_KEY=FILE  the private key (hex ed25519 seed; FILE.pub is
#                            its public key). Default: a development key
#                            made on first use in $UROUTE_CACHE/signing-key.
#                            A release build points this at its own key.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${UROUTE_CACHE:-$HOME/.cache/uroute}
key=${UROUTE_SIGNING_KEY:-$cache/signing-key}
fw() { (cd "$repo" && CGO_ENABLED=0 go run ./firmware/cmd/uroute-fw "$@"); }

case $# in
1) [ "$1" = --public-key ] || { echo "usage: $0 IN.itb OUT.img | --public-key" >&2; exit 2; } ;;
2) ;;
*) echo "usage: $0 IN.itb OUT.img | --public-key" >&2; exit 2 ;;
esac
mkdir -p "$(dirname "$key")"
abs() { case $1 in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
key=$(abs "$key")
if [ ! -f "$key" ]; then
	[ -z "${UROUTE_SIGNING_KEY:-}" ] || { echo "$0: no signing key $key" >&2; exit 1; }
	fw keygen "$key" "$key.pub"
	echo "sign-image: made development signing key $key" >&2
fi
if [ "$1" = --public-key ]; then
	# The file itself, not a symlink to it: build-image.sh's u-root copies
	# a symlink as a symlink, which would dangle in the image (a cache dir
	# that links the shared key, as the team's brief sets one up).
	readlink -f "$key.pub"
	exit 0
fi
fw sign "$key" "$(abs "$1")" "$(abs "$2")"
fw verify "$key.pub" "$(abs "$2")" >&2
