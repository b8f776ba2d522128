# uroute's A/B boot, run by U-Boot from the uboot-script partition
# (scripts/make-flash.sh compiles this file with mkimage -T script).
# docs/upgrade.md explains the design; firmware/fwimage/state.go is the
# Linux side of the same state.
#
# The factory environment in U-Boot's own flash (make-flash.sh) sets:
#   ur_envaddr  RAM for one environment copy
#   ur_fitaddr  RAM the FIT is read to
#   ur_bootargs the kernel command line without uroute.slot
#
# State: the uboot-env partition holds two copies of an environment block
# (CRC32 + name=value list, 0x10000 bytes each). Each has uroute_gen; the
# higher valid one is current and a write goes to the other copy, so a
# power cut in the middle of a write leaves the current one intact.
# Numbers are hex, as setexpr and itest use them.

setenv ur_vars "BOOT_ORDER BOOT_A_LEFT BOOT_B_LEFT uroute_gen uroute_trial uroute_rollback"
setenv ur_clear 'setenv BOOT_ORDER; setenv BOOT_A_LEFT; setenv BOOT_B_LEFT; setenv uroute_gen 0; setenv uroute_trial; setenv uroute_rollback'
setenv ur_read1 'virtio read ${ur_envaddr} ${ur_env1} 80 && env import -c ${ur_envaddr} 10000 ${ur_vars}'
setenv ur_read2 'virtio read ${ur_envaddr} ${ur_env2} 80 && env import -c ${ur_envaddr} 10000 ${ur_vars}'

virtio scan
part start virtio 0 uboot-env ur_env1
setexpr ur_env2 ${ur_env1} + 80

setenv ur_g1 0
setenv ur_g2 0
run ur_clear
if run ur_read1; then setenv ur_g1 0${uroute_gen}; fi
run ur_clear
if run ur_read2; then setenv ur_g2 0${uroute_gen}; fi
# Now the environment holds copy 2 if it was valid. Take copy 1 if it
# is the newer one; with neither valid, the factory state.
setenv ur_wblk ${ur_env1}
if itest ${ur_g1} -gt ${ur_g2}; then
	run ur_clear
	run ur_read1
	setenv ur_wblk ${ur_env2}
elif itest ${ur_g2} -eq 0; then
	echo "uroute: no valid boot environment; factory state (slot A first)"
	run ur_clear
	setenv BOOT_ORDER "A B"
	setenv BOOT_A_LEFT 3
	setenv BOOT_B_LEFT 3
	setenv uroute_gen 0
fi

# ur_save writes the state as the next generation into the other copy.
setenv ur_save 'setexpr uroute_gen ${uroute_gen} + 1; env export -c -s 10000 ${ur_envaddr} ${ur_vars}; virtio write ${ur_envaddr} ${ur_wblk} 80; if test ${ur_wblk} = ${ur_env1}; then setenv ur_wblk ${ur_env2}; else setenv ur_wblk ${ur_env1}; fi'

echo "uroute: BOOT_ORDER=${BOOT_ORDER} A_LEFT=${BOOT_A_LEFT} B_LEFT=${BOOT_B_LEFT} trial=${uroute_trial} gen=${uroute_gen}"
setenv ur_skipped
for s in ${BOOT_ORDER}; do
	if test "${s}" = A; then
		setenv ur_left 0${BOOT_A_LEFT}
		setenv ur_part slot-a
	else
		setenv ur_left 0${BOOT_B_LEFT}
		setenv ur_part slot-b
	fi
	if itest ${ur_left} -gt 0; then
		# Count the attempt before making it: a kernel that hangs or
		# reboots must not get it back.
		setexpr ur_left ${ur_left} - 1
		if test "${s}" = A; then setenv BOOT_A_LEFT ${ur_left}; else setenv BOOT_B_LEFT ${ur_left}; fi
		run ur_save
		echo "uroute: booting slot ${s} (${ur_left} attempts left after this one)"
		setenv bootargs "${ur_bootargs} uroute.slot=${s} uroute.skipped=${ur_skipped}"
		part start virtio 0 ${ur_part} ur_pstart
		part size virtio 0 ${ur_part} ur_psize
		virtio read ${ur_fitaddr} ${ur_pstart} ${ur_psize}
		# bootm checks every hash in the FIT before it boots; a slot
		# whose image is damaged comes back here.
		bootm ${ur_fitaddr}#uroute ${ur_fitaddr}#uroute ${fdtcontroladdr}
		echo "uroute: slot ${s} did not boot"
	else
		echo "uroute: slot ${s} has no attempts left"
	fi
	setenv ur_skipped "${ur_skipped}${s}"
done

# Nothing bootable: as RAUC does, give every slot its attempts back and
# start over rather than stop (a router must keep trying to come up).
echo "uroute: no slot could be booted; resetting the attempts"
setenv BOOT_A_LEFT 3
setenv BOOT_B_LEFT 3
run ur_save
reset
