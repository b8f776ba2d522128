package fwimage

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// The A/B state, in the variables RAUC's U-Boot integration uses:
// BOOT_ORDER lists the slots to try, first first; BOOT_x_LEFT is how many
// more times slot x may be tried. The boot script decrements the counter
// of the slot it boots before booting it; the system, once ifmgrd has
// converged, marks the slot good (its counter back to MaxAttempts, the slot
// first in BOOT_ORDER). A slot that keeps failing runs out of attempts and
// the script boots the next one: the rollback.
//
// Two uroute variables complete it:
//
//	uroute_gen       generation of this copy, hex; the copy with the higher
//	                 one is current, and a write goes to the other copy
//	uroute_trial     the slot an upgrade wrote and that has not proven
//	                 itself yet; cleared by mark-good
//	uroute_rollback  set by mark-good when the slot it marks was booted
//	                 because the trial slot ran out of attempts: "B"
//
// Counters and the generation are hex without "0x": U-Boot's setexpr
// prints hex and its itest compares hex.
const (
	VarOrder    = "BOOT_ORDER"
	VarGen      = "uroute_gen"
	VarTrial    = "uroute_trial"
	VarRollback = "uroute_rollback"
	MaxAttempts = 3
)

// Slots are the image slots, in their partitions' order.
var Slots = []string{"A", "B"}

// LeftVar is the name of slot's attempt counter.
func LeftVar(slot string) string { return "BOOT_" + slot + "_LEFT" }

// Other is the slot that is not slot.
func Other(slot string) string {
	if slot == "A" {
		return "B"
	}
	return "A"
}

// ValidSlot reports whether s names a slot.
func ValidSlot(s string) bool { return s == "A" || s == "B" }

// State is the current environment and where it came from.
type State struct {
	Env  Env
	Gen  uint64
	Copy int // index of the copy it was read from; -1 if none was valid
}

// Left is slot's remaining attempts (0 if unset or unreadable).
func (s State) Left(slot string) int {
	n, err := strconv.ParseUint(s.Env[LeftVar(slot)], 16, 8)
	if err != nil {
		return 0
	}
	return int(n)
}

// Order is BOOT_ORDER's slots.
func (s State) Order() []string { return strings.Fields(s.Env[VarOrder]) }

// FactoryEnv is the state of a freshly flashed router: slot A holds the
// image and is tried first; slot B is empty (no attempts).
func FactoryEnv() Env {
	return Env{VarOrder: "A B", LeftVar("A"): hexNum(MaxAttempts), LeftVar("B"): "0", VarGen: "1"}
}

func hexNum(n int) string { return strconv.FormatUint(uint64(n), 16) }

// SetLeft sets slot's attempt counter.
func (e Env) SetLeft(slot string, n int) { e[LeftVar(slot)] = hexNum(n) }

// EnvStore is the env partition: EnvCopies blocks of EnvSize, one after
// the other. Each write goes to the copy that is not current, with the
// generation one higher, so a power cut during a write leaves the current
// copy intact: the torn one fails its CRC and is ignored. (U-Boot's own
// redundant environment does the same with a flag byte; "env import -c"
// knows only the single-copy layout, hence the generation variable.)
type EnvStore struct {
	Dev interface {
		io.ReaderAt
		io.WriterAt
		Sync() error
	}
}

// Load reads both copies and returns the current one. If neither is valid
// it returns the factory state with Copy -1 and an error wrapping ErrEnv;
// the boot script falls back to the same state.
func (st EnvStore) Load() (State, error) {
	best := State{Copy: -1}
	var errs []error
	for i := 0; i < EnvCopies; i++ {
		block := make([]byte, EnvSize)
		if _, err := st.Dev.ReadAt(block, int64(i)*EnvSize); err != nil {
			errs = append(errs, fmt.Errorf("copy %d: %w", i, err))
			continue
		}
		env, err := DecodeEnv(block)
		if err != nil {
			errs = append(errs, fmt.Errorf("copy %d: %w", i, err))
			continue
		}
		gen, err := strconv.ParseUint(env[VarGen], 16, 64)
		if err != nil {
			errs = append(errs, fmt.Errorf("copy %d: %w: %s=%q", i, ErrEnv, VarGen, env[VarGen]))
			continue
		}
		if best.Copy < 0 || gen > best.Gen {
			best = State{Env: env, Gen: gen, Copy: i}
		}
	}
	if best.Copy < 0 {
		return State{Env: FactoryEnv(), Copy: -1}, fmt.Errorf("%w: no valid copy: %w", ErrEnv, errors.Join(errs...))
	}
	return best, nil
}

// Save writes env as the next generation after cur into the copy cur was
// not read from, and syncs it. It returns the new state.
func (st EnvStore) Save(cur State, env Env) (State, error) {
	next := State{Env: Env{}, Gen: cur.Gen + 1, Copy: 0}
	if cur.Copy == 0 {
		next.Copy = 1
	}
	for k, v := range env {
		next.Env[k] = v
	}
	next.Env[VarGen] = strconv.FormatUint(next.Gen, 16)
	block, err := next.Env.Encode()
	if err != nil {
		return cur, err
	}
	if _, err := st.Dev.WriteAt(block, int64(next.Copy)*EnvSize); err != nil {
		return cur, fmt.Errorf("write env copy %d: %w", next.Copy, err)
	}
	if err := st.Dev.Sync(); err != nil {
		return cur, fmt.Errorf("sync env copy %d: %w", next.Copy, err)
	}
	return next, nil
}
