package ifmgr

import (
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/uroute/uroute/ifmgr/ifname"
	"github.com/uroute/uroute/ifmgr/kernel"
	"github.com/uroute/uroute/persist"
)

// fakeKernel models the parts of the kernel ifmgr relies on: unique names,
// ifindexes that are never reused, VLAN uniqueness per parent, and link
// events. Hooks let tests interleave a "foreign process" with ifmgr's calls.
type fakeKernel struct {
	mu      sync.Mutex
	next    uint32
	links   map[uint32]kernel.Link
	events  chan []kernel.Event
	creates int
	deletes int
	masters int
	setups  int // SetUp calls
	dumps   int // Links calls
	gets    int // LinkByIndex calls
	batches int // Batch calls
	// groupDeletes: deletes by IFLA_GROUP (their links count in deletes)
	groupDeletes int
	// Bridge VLAN membership, by ifindex (a bridge's: its self side), and
	// the calls that changed it.
	vlans     map[uint32][]kernel.BridgeVLAN
	vlanAdds  int
	vlanDels  int
	vlanDumps int
	options   int // SetBridgeOptions calls
	// failVLAN, if set, refuses an AddBridgeVLAN it returns an error for.
	failVLAN func(index uint32, v kernel.BridgeVLAN) error
	// beforeCreate runs (without the lock) before each create; a test uses
	// it to slip a foreign link in under the name being created.
	beforeCreate func(name string)
	failCreate   func(name string) error
	// failDumps: the next this many Links calls fail as a dump the kernel
	// kept interrupting does; muted: changes emit no event (they are lost).
	failDumps int
	muted     bool
	// onBatch, if set, sees every batch before it runs (a test records
	// the order of requests with it).
	onBatch func(ops []kernel.Op)
	// aliasesOnUp counts aliases written on links that were up (each a
	// NETDEV_CHANGE in the real kernel; see kernel.CreateBridgeOp).
	aliasesOnUp int
}

func newFakeKernel() *fakeKernel {
	return &fakeKernel{next: 1, links: map[uint32]kernel.Link{}, vlans: map[uint32][]kernel.BridgeVLAN{}, events: make(chan []kernel.Event, 1<<16)}
}

func (k *fakeKernel) emit(t kernel.EventType, l kernel.Link) {
	if k.muted {
		return
	}
	select {
	case k.events <- []kernel.Event{{Type: t, Link: l}}:
	default: // a full queue is an overflow: the real watcher reports ENOBUFS
		select {
		case k.events <- []kernel.Event{{Type: kernel.EventResync}}:
		default:
		}
	}
}

// fakeWatcher is one subscription to the fake kernel's events.
type fakeWatcher struct {
	k      *fakeKernel
	closed chan struct{}
	once   sync.Once
}

func (k *fakeKernel) watch() *fakeWatcher { return &fakeWatcher{k: k, closed: make(chan struct{})} }

func (w *fakeWatcher) Receive() ([]kernel.Event, error) {
	select {
	case evs := <-w.k.events:
		return evs, nil
	case <-w.closed:
		return nil, kernel.ErrClosed
	}
}

func (w *fakeWatcher) Close() error { w.once.Do(func() { close(w.closed) }); return nil }

func (k *fakeKernel) Links() ([]kernel.Link, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.dumps++
	if k.failDumps > 0 {
		k.failDumps--
		return nil, fmt.Errorf("dump links: %w (5 attempts)", kernel.ErrDumpInterrupted)
	}
	out := make([]kernel.Link, 0, len(k.links))
	for _, l := range k.links {
		out = append(out, l)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Index < out[j].Index })
	return out, nil
}

func (k *fakeKernel) LinkByIndex(i uint32) (kernel.Link, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.gets++
	if l, ok := k.links[i]; ok {
		return l, nil
	}
	return kernel.Link{}, kernel.ErrNotFound
}

func (k *fakeKernel) LinkByName(name string) (kernel.Link, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, l := range k.links {
		if l.Name == name {
			return l, nil
		}
	}
	return kernel.Link{}, kernel.ErrNotFound
}

func (k *fakeKernel) byNameLocked(name string) bool {
	for _, l := range k.links {
		if l.Name == name {
			return true
		}
	}
	return false
}

// add creates a link as any process would; it is what ifmgr's creates and
// the tests' foreign links share.
func (k *fakeKernel) add(l kernel.Link) (kernel.Link, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.byNameLocked(l.Name) {
		return kernel.Link{}, fmt.Errorf("create %q: %w", l.Name, kernel.ErrExists)
	}
	if l.Kind == "vlan" {
		for _, o := range k.links {
			if o.Kind == "vlan" && o.IfLink == l.IfLink && o.VLANID == l.VLANID {
				return kernel.Link{}, fmt.Errorf("vlan %d: %w", l.VLANID, kernel.ErrExists)
			}
		}
		if _, ok := k.links[l.IfLink]; !ok {
			return kernel.Link{}, errors.New("no parent")
		}
	}
	l.Index = k.next
	k.next++
	k.links[l.Index] = l
	k.emit(kernel.EventNew, l)
	return l, nil
}

func (k *fakeKernel) create(l kernel.Link) (kernel.Link, error) {
	if k.beforeCreate != nil {
		k.beforeCreate(l.Name)
	}
	if k.failCreate != nil {
		if err := k.failCreate(l.Name); err != nil {
			return kernel.Link{}, err
		}
	}
	k.mu.Lock()
	k.creates++
	k.mu.Unlock()
	return k.add(l)
}

func (k *fakeKernel) CreateBridgeWith(name string, group uint32, opt kernel.BridgeOptions) (kernel.Link, error) {
	// As the real one: created up, with its settings.
	return k.create(kernel.Link{Name: name, Kind: "bridge", Group: group, Flags: iffUp, VLANFiltering: opt.VLANFiltering, DefaultPVID: opt.DefaultPVID})
}

func (k *fakeKernel) CreateBridgeDown(name string, group uint32, opt kernel.BridgeOptions) (kernel.Link, error) {
	return k.create(kernel.Link{Name: name, Kind: "bridge", Group: group, VLANFiltering: opt.VLANFiltering, DefaultPVID: opt.DefaultPVID})
}

func (k *fakeKernel) SetBridgeOptions(i uint32, opt kernel.BridgeOptions) error {
	k.mu.Lock()
	k.options++
	k.mu.Unlock()
	return k.modify(i, func(l *kernel.Link) { l.VLANFiltering, l.DefaultPVID = opt.VLANFiltering, opt.DefaultPVID })
}

func (k *fakeKernel) BridgeVLANs() (map[uint32][]kernel.BridgeVLAN, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.vlanDumps++
	out := map[uint32][]kernel.BridgeVLAN{}
	for i, vs := range k.vlans {
		if len(vs) > 0 {
			out[i] = append([]kernel.BridgeVLAN(nil), vs...)
		}
	}
	return out, nil
}

// vlanTarget checks that index can hold entries as asked: a port (self
// false) must be in a bridge, a bridge's own side (self) must be a bridge.
func (k *fakeKernel) vlanTargetLocked(i uint32, self bool, vid uint16) error {
	l, ok := k.links[i]
	switch {
	case !ok:
		return kernel.ErrNotFound
	case ifname.ValidVID(int(vid)) != nil:
		return ifname.ValidVID(int(vid))
	case self && l.Kind != "bridge":
		return fmt.Errorf("%s is not a bridge: operation not supported", l.Name)
	case !self && l.Master == 0:
		return fmt.Errorf("%s is not a bridge port: operation not supported", l.Name)
	}
	return nil
}

func (k *fakeKernel) AddBridgeVLAN(i uint32, self bool, v kernel.BridgeVLAN) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.vlanTargetLocked(i, self, v.VID); err != nil {
		return err
	}
	if k.failVLAN != nil {
		if err := k.failVLAN(i, v); err != nil {
			return err
		}
	}
	k.vlanAdds++
	k.setVLANLocked(i, v)
	return nil
}

// setVLANLocked is the kernel's add: one entry per VID, flags updated in
// place, one PVID per port (a new PVID takes the flag from the old).
func (k *fakeKernel) setVLANLocked(i uint32, v kernel.BridgeVLAN) {
	vs := k.vlans[i]
	found := false
	for j := range vs {
		if v.PVID && vs[j].VID != v.VID {
			vs[j].PVID = false
		}
		if vs[j].VID == v.VID {
			vs[j], found = v, true
		}
	}
	if !found {
		vs = append(vs, v)
		sort.Slice(vs, func(a, b int) bool { return vs[a].VID < vs[b].VID })
	}
	k.vlans[i] = vs
	k.emit(kernel.EventVLAN, kernel.Link{Index: i})
}

func (k *fakeKernel) DelBridgeVLAN(i uint32, self bool, vid uint16) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.vlanTargetLocked(i, self, vid); err != nil {
		return err
	}
	k.vlanDels++
	k.delVLANLocked(i, vid)
	return nil
}

func (k *fakeKernel) delVLANLocked(i uint32, vid uint16) {
	vs := k.vlans[i]
	for j := range vs {
		if vs[j].VID == vid {
			k.vlans[i] = append(vs[:j:j], vs[j+1:]...)
			k.emit(kernel.EventVLAN, kernel.Link{Index: i})
			return
		}
	}
}

// vlansOf returns a copy of link i's entries.
func (k *fakeKernel) vlansOf(i uint32) []kernel.BridgeVLAN {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]kernel.BridgeVLAN(nil), k.vlans[i]...)
}

// foreignVLAN changes an entry behind ifmgr's back (as `bridge vlan add`
// or `bridge vlan del` would).
func (k *fakeKernel) foreignVLAN(i uint32, add bool, v kernel.BridgeVLAN) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if add {
		k.setVLANLocked(i, v)
	} else {
		k.delVLANLocked(i, v.VID)
	}
}

func (k *fakeKernel) CreateVLAN(name string, parent uint32, vid uint16, group uint32) (kernel.Link, error) {
	return k.create(kernel.Link{Name: name, Kind: "vlan", Group: group, IfLink: parent, VLANID: vid})
}

func (k *fakeKernel) modify(i uint32, f func(*kernel.Link)) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	l, ok := k.links[i]
	if !ok {
		return kernel.ErrNotFound
	}
	f(&l)
	k.links[i] = l
	k.emit(kernel.EventNew, l)
	return nil
}

func (k *fakeKernel) SetAlias(i uint32, alias string) error {
	return k.modify(i, func(l *kernel.Link) {
		if l.Flags&iffUp != 0 {
			k.aliasesOnUp++ // modify holds k.mu
		}
		l.Alias = alias
	})
}

func (k *fakeKernel) SetUp(i uint32, up bool) error {
	k.mu.Lock()
	k.setups++
	k.mu.Unlock()
	return k.modify(i, func(l *kernel.Link) {
		if up {
			l.Flags |= 0x1
		} else {
			l.Flags &^= 0x1
		}
	})
}

func (k *fakeKernel) SetMaster(i, master uint32) error {
	k.mu.Lock()
	if _, ok := k.links[master]; master != 0 && !ok {
		k.mu.Unlock()
		return kernel.ErrNotFound
	}
	k.masters++
	if l, ok := k.links[i]; ok && l.Master != master {
		// A port leaving a bridge loses its entries; joining one, it gets
		// the bridge's default PVID, if any.
		delete(k.vlans, i)
		if b := k.links[master]; master != 0 && b.DefaultPVID != 0 {
			k.vlans[i] = []kernel.BridgeVLAN{{VID: b.DefaultPVID, PVID: true, Untagged: true}}
		}
	}
	k.mu.Unlock()
	return k.modify(i, func(l *kernel.Link) { l.Master = master })
}

func (k *fakeKernel) Delete(i uint32) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	l, ok := k.links[i]
	if !ok {
		return kernel.ErrNotFound
	}
	k.deletes++
	delete(k.links, i)
	delete(k.vlans, i)
	k.emit(kernel.EventDel, l)
	// The kernel releases a bridge's ports when it goes.
	for j, c := range k.links {
		if c.Master == i {
			c.Master = 0
			k.links[j] = c
			delete(k.vlans, j)
			k.emit(kernel.EventNew, c)
		}
	}
	// The kernel takes a parent's VLANs with it.
	for j, c := range k.links {
		if c.Kind == "vlan" && c.IfLink == i {
			delete(k.links, j)
			k.emit(kernel.EventDel, c)
		}
	}
	return nil
}

// Batch runs the ops one by one, as the real kernel runs a batch in order;
// a delete by group deletes the group's links as the kernel does
// (ErrNotFound if there are none).
func (k *fakeKernel) Batch(ops []kernel.Op) []kernel.Result {
	k.mu.Lock()
	k.batches++
	k.mu.Unlock()
	if k.onBatch != nil {
		k.onBatch(ops)
	}
	res := make([]kernel.Result, len(ops))
	for i, o := range ops {
		if o.Kind != kernel.OpDeleteGroup {
			res[i] = kernel.Sequential(k, ops[i:i+1])[0]
			continue
		}
		k.mu.Lock()
		var group []uint32
		for idx, l := range k.links {
			if l.Group == o.Group {
				group = append(group, idx)
			}
		}
		k.groupDeletes++
		k.mu.Unlock()
		if len(group) == 0 {
			res[i].Err = kernel.ErrNotFound
		}
		for _, idx := range group {
			if err := k.Delete(idx); err != nil && !errors.Is(err, kernel.ErrNotFound) {
				res[i].Err = err
			}
		}
	}
	return res
}

func (k *fakeKernel) rename(i uint32, name string) error {
	k.mu.Lock()
	taken := k.byNameLocked(name)
	k.mu.Unlock()
	if taken {
		return kernel.ErrExists
	}
	return k.modify(i, func(l *kernel.Link) { l.Name = name })
}

func (k *fakeKernel) names() map[string]kernel.Link {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := map[string]kernel.Link{}
	for _, l := range k.links {
		out[l.Name] = l
	}
	return out
}

// fakeStore is a map with a commit counter and a failure switch; the real
// bbolt store is tested in persist and end to end in the daemon tests.
type fakeStore struct {
	mu      sync.Mutex
	recs    map[persist.RecordKey]persist.Record
	commits uint64
	fail    error
}

func newFakeStore() *fakeStore { return &fakeStore{recs: map[persist.RecordKey]persist.Record{}} }

func (s *fakeStore) Records() ([]persist.Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]persist.Record, 0, len(s.recs))
	for _, r := range s.recs {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Cloner != out[j].Cloner {
			return out[i].Cloner < out[j].Cloner
		}
		return out[i].Unit < out[j].Unit
	})
	return out, nil
}

func (s *fakeStore) Apply(puts []persist.Record, dels []persist.RecordKey) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(puts) == 0 && len(dels) == 0 {
		return nil
	}
	if s.fail != nil {
		return s.fail
	}
	for _, k := range dels {
		delete(s.recs, k)
	}
	for _, r := range puts {
		s.recs[r.Key()] = r
	}
	s.commits++
	return nil
}

func (s *fakeStore) Commits() uint64 { s.mu.Lock(); defer s.mu.Unlock(); return s.commits }
func (s *fakeStore) Path() string    { return persist.MemoryPath }
func (s *fakeStore) Size() int64     { return 0 }

// nextBridgeName is the name the next wildcard bridge create gets: the lowest
// bridgeN not in use (the test's links are all ifmgr's).
func (k *fakeKernel) nextBridgeName() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	for u := 0; ; u++ {
		name := fmt.Sprintf("bridge%d", u)
		if !k.byNameLocked(name) {
			return name
		}
	}
}
