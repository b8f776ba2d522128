package ifmgr

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"testing"

	"github.com/uroute/uroute/ifmgr/kernel"
)

// TestRandomOpsKeepInvariants drives the manager with random creates,
// destroys, foreign links squatting on cloner names, renames and restarts,
// and checks after every step that records and owned links agree, and that
// the wildcard always returns the lowest unit no one holds.
func TestRandomOpsKeepInvariants(t *testing.T) {
	for seed := int64(1); seed <= 4; seed++ {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			rng := rand.New(rand.NewSource(seed))
			k, s := newFakeKernel(), newFakeStore()
			h := start(t, k, s, 40)
			var foreign []uint32
			ctx := context.Background()
			for step := 0; step < 600; step++ {
				switch op := rng.Intn(10); {
				case op < 3:
					h.settle()
					want := h.lowestFree(40)
					in, err := h.create("bridge")
					switch {
					case want < 0 && !errors.Is(err, ErrUnitRange):
						t.Fatalf("step %d: full cloner answered %v", step, err)
					case want >= 0 && (err != nil || in.Name != fmt.Sprintf("bridge%d", want)):
						t.Fatalf("step %d: wildcard gave %q %v, want bridge%d", step, in.Name, err, want)
					}
				case op < 4:
					u := rng.Intn(45)
					_, err := h.create(fmt.Sprintf("bridge%d", u))
					if err != nil && !errors.Is(err, ErrUnitRange) && !errors.Is(err, ErrUnitExists) && !errors.Is(err, ErrNameTaken) {
						t.Fatalf("step %d: specific bridge%d: %v", step, u, err)
					}
					if u > 40 && !errors.Is(err, ErrUnitRange) {
						t.Fatalf("step %d: bridge%d past max answered %v", step, u, err)
					}
				case op < 6:
					list, _ := h.m.List(ctx)
					if len(list) > 0 {
						if err := h.m.Destroy(ctx, list[rng.Intn(len(list))].Name); err != nil {
							t.Fatalf("step %d: destroy: %v", step, err)
						}
					}
				case op < 7:
					l, err := k.add(kernel.Link{Name: fmt.Sprintf("bridge%d", rng.Intn(45)), Kind: "veth"})
					if err == nil {
						foreign = append(foreign, l.Index)
					}
				case op < 8 && len(foreign) > 0:
					i := rng.Intn(len(foreign))
					k.rename(foreign[i], fmt.Sprintf("bridge%d", rng.Intn(45)))
				case op < 9 && len(foreign) > 0:
					i := rng.Intn(len(foreign))
					k.Delete(foreign[i])
					foreign = append(foreign[:i], foreign[i+1:]...)
				case op == 9 && rng.Intn(5) == 0:
					h.stop()
					h = start(t, k, s, 40)
				}
				if step%25 == 0 {
					h.checkConsistent()
					h.checkHeld(40)
				}
			}
			h.checkConsistent()
			h.checkHeld(40)
		})
	}
}

// lowestFree is the reference answer: the lowest unit whose name the kernel
// does not have (records and owned links agree, as checkConsistent checks).
func (h *harness) lowestFree(max int) int {
	names := h.k.names()
	for u := 0; u <= max; u++ {
		if _, taken := names[fmt.Sprintf("bridge%d", u)]; !taken {
			return u
		}
	}
	return -1
}

// checkHeld asserts the manager holds exactly the units foreign links have.
func (h *harness) checkHeld(max int) {
	h.t.Helper()
	h.settle()
	want := 0
	for name, l := range h.k.names() {
		var u int
		if n, _ := fmt.Sscanf(name, "bridge%d", &u); n == 1 && fmt.Sprintf("bridge%d", u) == name && u <= max && l.Group != DefaultOwnerGroup {
			want++
		}
	}
	st, _ := h.m.Status(context.Background())
	if st.Cloners[0].Held != want {
		h.t.Errorf("held %d units, foreign links have %d", st.Cloners[0].Held, want)
	}
}
