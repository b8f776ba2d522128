# BR2_PACKAGE_OVERRIDE_FILE of uroute's offline CI build
# (scripts/buildroot-check.sh; docs/buildroot.md, "Offline CI mode").
# Every package of the build comes from this machine, none is downloaded:
#
#   uroute       the checkout this external tree is in
#   u-root       the module cache's copy of the version go.mod pins
#                ($(UROUTE_CI_UROOT), passed by the script)
#   host-go      the machine's Go tree ($(UROUTE_CI_GOROOT))
#   host-fakeroot, host-tar, host-patchelf: Debian's programs (links)
#   host-acl, host-attr: nothing (only fakeroot's own build needs them)
#
# Debian bookworm's tar is 1.34; Buildroot wants 1.35 for the tarballs it
# makes of downloads (1.35 changed devmajor/devminor in them), and this
# build makes none.
#
# The Go modules of uroute and u-root are vendored after the sources are
# copied (the step that, with a download, Buildroot's go post-process does),
# from $(UROUTE_CI_GOPROXY) through the machine's module cache.

UROUTE_OVERRIDE_SRCDIR = $(BR2_EXTERNAL_UROUTE_PATH)/..
U_ROOT_OVERRIDE_SRCDIR = $(UROUTE_CI_UROOT)
HOST_GO_BIN_OVERRIDE_SRCDIR = $(UROUTE_CI_GOROOT)

UROUTE_CI_LINK = $(BR2_EXTERNAL_UROUTE_PATH)/ci/debian-host-tool/link
UROUTE_CI_NONE = $(BR2_EXTERNAL_UROUTE_PATH)/ci/debian-host-tool/none
HOST_FAKEROOT_OVERRIDE_SRCDIR = $(UROUTE_CI_LINK)
HOST_FAKEROOT_INSTALL_OPTS = install LINKS=fakeroot=/usr/bin/fakeroot-sysv
HOST_TAR_OVERRIDE_SRCDIR = $(UROUTE_CI_LINK)
HOST_TAR_INSTALL_OPTS = install LINKS=tar=/usr/bin/tar
HOST_PATCHELF_OVERRIDE_SRCDIR = $(UROUTE_CI_LINK)
HOST_PATCHELF_INSTALL_OPTS = install LINKS=patchelf=/usr/bin/patchelf
HOST_ACL_OVERRIDE_SRCDIR = $(UROUTE_CI_NONE)
HOST_ATTR_OVERRIDE_SRCDIR = $(UROUTE_CI_NONE)
# attr's autoreconf would pull in host-autoconf, -automake, -libtool, -m4.
HOST_ATTR_AUTORECONF = NO

# Not the build's Go (host-go may not be built yet when the sources are
# copied) but the same tree it is copied from.
UROUTE_CI_VENDOR_ENV = \
	GOFLAGS=-mod=mod \
	GOPROXY=$(UROUTE_CI_GOPROXY) \
	GOMODCACHE=$(UROUTE_CI_GOMODCACHE) \
	GOTOOLCHAIN=local \
	GOROOT=$(UROUTE_CI_GOROOT)

# The source's own vendor/ (if a developer made one) is replaced.
define UROUTE_CI_VENDOR
	rm -rf $(@D)/vendor
	cd $(@D) && $(UROUTE_CI_VENDOR_ENV) $(UROUTE_CI_GOROOT)/bin/go mod vendor
endef
UROUTE_POST_RSYNC_HOOKS += UROUTE_CI_VENDOR

define U_ROOT_CI_VENDOR
	rm -rf $(@D)/vendor
	cd $(@D) && $(UROUTE_CI_VENDOR_ENV) $(UROUTE_CI_GOROOT)/bin/go mod vendor
endef
U_ROOT_POST_RSYNC_HOOKS += U_ROOT_CI_VENDOR
