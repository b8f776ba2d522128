################################################################################
#
# u-root
#
################################################################################

# The version uroute's go.mod pins.
U_ROOT_VERSION = 0.16.0
U_ROOT_SITE = $(call github,u-root,u-root,v$(U_ROOT_VERSION))
U_ROOT_LICENSE = BSD-3-Clause
U_ROOT_LICENSE_FILES = LICENSE
U_ROOT_GOMOD = github.com/u-root/u-root
U_ROOT_BUILD_TARGETS = cmds/core/init cmds/core/gosh
U_ROOT_TAGS = goshsmall
U_ROOT_LDFLAGS = -s -w -buildid=

# uroute.mk's target environment: it covers 32-bit MIPS, which
# Buildroot's Go infrastructure does not.
define U_ROOT_BUILD_CMDS
	$(foreach d,$(U_ROOT_BUILD_TARGETS),\
		cd $(@D) && $(UROUTE_GO_TARGET_ENV) \
			$(GO_BIN) build $(U_ROOT_BUILD_OPTS) \
			-o $(@D)/bin/$(notdir $(d)) $(U_ROOT_GOMOD)/$(d)
	)
endef

# /bin/sh only where no other package put one (BusyBox, installed first).
U_ROOT_DEPENDENCIES = $(if $(BR2_PACKAGE_BUSYBOX),busybox)

# Absolute link targets: /bin may be a link to usr/bin (merged /usr).
define U_ROOT_INSTALL_TARGET_CMDS
	$(INSTALL) -D -m 0755 $(@D)/bin/init $(TARGET_DIR)/usr/sbin/u-root-init
	$(INSTALL) -D -m 0755 $(@D)/bin/gosh $(TARGET_DIR)/usr/bin/gosh
	ln -sf usr/sbin/u-root-init $(TARGET_DIR)/init
	mkdir -p $(TARGET_DIR)/bin
	ln -sf /usr/bin/gosh $(TARGET_DIR)/bin/defaultsh
	if [ ! -e $(TARGET_DIR)/bin/sh ] && [ ! -L $(TARGET_DIR)/bin/sh ]; then \
		ln -sf /usr/bin/gosh $(TARGET_DIR)/bin/sh; \
	fi
endef

$(eval $(golang-package))
