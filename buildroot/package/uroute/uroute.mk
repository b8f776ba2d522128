################################################################################
#
# uroute
#
################################################################################

UROUTE_VERSION = v0.1.0
UROUTE_SITE = https://github.com/uroute/uroute.git
UROUTE_SITE_METHOD = git
UROUTE_GOMOD = github.com/uroute/uroute

# The programs, as scripts/build-image.sh builds them.
UROUTE_BUILD_TARGETS = \
	firmware/cmd/ifmgrd \
	firmware/cmd/ifctl \
	firmware/cmd/uinit \
	$(if $(BR2_PACKAGE_UROUTE_TEST_TOOLS),firmware/cmd/uroute-probe)

# Buildroot's Go infrastructure has no GOARCH for 32-bit MIPS (its
# HOST_GO_TARGET_ENV is not even defined there), so the target
# environment is spelled out here, for every architecture alike.
# uroute is pure Go: no cgo, static binaries, like the u-root image.
ifeq ($(BR2_mipsel),y)
UROUTE_GOARCH = mipsle
else ifeq ($(BR2_mips),y)
UROUTE_GOARCH = mips
else
UROUTE_GOARCH = $(GO_GOARCH)
endif

UROUTE_GO_TARGET_ENV = \
	$(HOST_GO_COMMON_ENV) \
	CGO_ENABLED=0 \
	GOOS=linux \
	GOARCH=$(UROUTE_GOARCH) \
	$(if $(GO_GOARM),GOARM=$(GO_GOARM)) \
	$(if $(GO_GO386),GO386=$(GO_GO386)) \
	$(if $(filter mips%,$(UROUTE_GOARCH)),GOMIPS=softfloat)

# -trimpath and an empty build ID, as in scripts/build-image.sh, so the
# same source gives the same bytes; -s -w drops the symbol table and
# DWARF, which a router's flash has no room for. The version is the one
# Go stamps into the binary from the module (go version -m).
# The Go infrastructure adds these to UROUTE_BUILD_OPTS with -trimpath.
UROUTE_LDFLAGS = -s -w -buildid=

define UROUTE_BUILD_CMDS
	$(foreach d,$(UROUTE_BUILD_TARGETS),\
		cd $(@D) && $(UROUTE_GO_TARGET_ENV) \
			$(GO_BIN) build $(UROUTE_BUILD_OPTS) \
			-o $(@D)/bin/$(notdir $(d)) $(UROUTE_GOMOD)/$(d)
	)
endef

UROUTE_BOARD = $(call qstrip,$(BR2_PACKAGE_UROUTE_BOARD))

# The paths are those the image is built around (firmware/cmd/uinit):
# /bin/ifmgrd, /bin/uinit, /etc/uroute/board.toml, /data/uroute.
define UROUTE_INSTALL_TARGET_CMDS
	$(INSTALL) -D -m 0755 $(@D)/bin/ifmgrd $(TARGET_DIR)/usr/bin/ifmgrd
	$(INSTALL) -D -m 0755 $(@D)/bin/ifctl $(TARGET_DIR)/usr/bin/ifctl
	$(INSTALL) -D -m 0755 $(@D)/bin/uinit $(TARGET_DIR)/usr/bin/uroute-uinit
	$(if $(BR2_PACKAGE_UROUTE_TEST_TOOLS),
		$(INSTALL) -D -m 0755 $(@D)/bin/uroute-probe \
			$(TARGET_DIR)/usr/bin/uroute-probe)
	$(INSTALL) -D -m 0644 $(@D)/board/profiles/$(UROUTE_BOARD).toml \
		$(TARGET_DIR)/etc/uroute/board.toml
	mkdir -p $(TARGET_DIR)/etc/uroute/profiles $(TARGET_DIR)/data
	$(INSTALL) -m 0644 $(@D)/board/profiles/*.toml \
		$(TARGET_DIR)/etc/uroute/profiles/
endef

# Without a merged /usr, /bin is a directory of its own: link the two
# paths uinit runs.
ifneq ($(BR2_ROOTFS_MERGED_USR),y)
define UROUTE_INSTALL_BIN_LINKS
	mkdir -p $(TARGET_DIR)/bin
	ln -sf /usr/bin/ifmgrd $(TARGET_DIR)/bin/ifmgrd
	ln -sf /usr/bin/uroute-uinit $(TARGET_DIR)/bin/uroute-uinit
endef
UROUTE_POST_INSTALL_TARGET_HOOKS += UROUTE_INSTALL_BIN_LINKS
endif

# With no init system, u-root's init is /init: it mounts /dev, /proc,
# /sys and /tmp, runs /bin/uinit (uroute's boot step, which starts a
# supervised ifmgrd) and then /bin/defaultsh on the console.
ifeq ($(BR2_INIT_NONE),y)
define UROUTE_INSTALL_UINIT
	mkdir -p $(TARGET_DIR)/bin
	ln -sf /usr/bin/uroute-uinit $(TARGET_DIR)/bin/uinit
endef
UROUTE_POST_INSTALL_TARGET_HOOKS += UROUTE_INSTALL_UINIT
endif

define UROUTE_INSTALL_INIT_SYSV
	$(INSTALL) -D -m 0755 $(UROUTE_PKGDIR)/S40ifmgrd \
		$(TARGET_DIR)/etc/init.d/S40ifmgrd
endef

define UROUTE_INSTALL_INIT_SYSTEMD
	$(INSTALL) -D -m 0644 $(UROUTE_PKGDIR)/ifmgrd.service \
		$(TARGET_DIR)/usr/lib/systemd/system/ifmgrd.service
endef

define UROUTE_LINUX_CONFIG_FIXUPS
	$(call KCONFIG_ENABLE_OPT,CONFIG_BRIDGE)
	$(call KCONFIG_ENABLE_OPT,CONFIG_BRIDGE_VLAN_FILTERING)
	$(call KCONFIG_ENABLE_OPT,CONFIG_VLAN_8021Q)
endef

$(eval $(golang-package))
