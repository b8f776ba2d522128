// Package ifmgr is the interface manager: it hands out interface unit numbers
// per cloner, records them in a store before the kernel sees them, and applies
// every change through one owner goroutine. Clients never touch its state:
// they send a request and wait for the answer, so two requests can never race
// (the "global serializer" the if_clone thread asks for) and no request sees a
// half-done change.
package ifmgr

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/uroute/uroute/board"
	"github.com/uroute/uroute/ifmgr/ifname"
	"github.com/uroute/uroute/ifmgr/kernel"
	"github.com/uroute/uroute/ifmgr/plan"
	"github.com/uroute/uroute/ifmgr/units"
	"github.com/uroute/uroute/persist"
)

// Kernel is the part of rtnetlink the owner goroutine needs. *kernel.Conn
// implements it; tests of the pure logic use a fake.
type Kernel interface {
	Links() ([]kernel.Link, error)
	LinkByIndex(index uint32) (kernel.Link, error)
	LinkByName(name string) (kernel.Link, error)
	// CreateBridgeWith returns the bridge already up (IFF_UP in the
	// creating message), with its VLAN-filtering settings. ifmgr itself
	// creates through Batch, down, and sets the bridge up behind its alias
	// (kernel.CreateBridgeOp).
	CreateBridgeWith(name string, group uint32, opt kernel.BridgeOptions) (kernel.Link, error)
	CreateVLAN(name string, parent uint32, vid uint16, group uint32) (kernel.Link, error)
	SetAlias(index uint32, alias string) error
	SetUp(index uint32, up bool) error
	SetMaster(index, master uint32) error
	Delete(index uint32) error
	// Batch carries out independent link changes pipelined, one result
	// per op (kernel.Conn.Batch); fakes run them one by one
	// (kernel.Sequential).
	Batch(ops []kernel.Op) []kernel.Result
	// SetBridgeOptions repairs a bridge's VLAN-filtering settings.
	SetBridgeOptions(index uint32, opt kernel.BridgeOptions) error
	// BridgeVLANs dumps the bridge VLAN membership of every port and
	// bridge (a bridge's own ifindex: its self side), by ifindex.
	BridgeVLANs() (map[uint32][]kernel.BridgeVLAN, error)
	// AddBridgeVLAN and DelBridgeVLAN change one entry of a port or (self)
	// of a bridge's own side; both are idempotent.
	AddBridgeVLAN(index uint32, self bool, v kernel.BridgeVLAN) error
	DelBridgeVLAN(index uint32, self bool, vid uint16) error
}

// Store is the allocation record store; *persist.Store implements it.
type Store interface {
	Records() ([]persist.Record, error)
	Apply(puts []persist.Record, dels []persist.RecordKey) error
	Commits() uint64
	Path() string
	Size() int64
}

// Watcher delivers link events. Events are hints: the owner re-reads the
// kernel for every link an event names, and re-dumps everything on
// EventResync.
type Watcher interface {
	Receive() ([]kernel.Event, error)
	Close() error
}

// DefaultOwnerGroup is the IFLA_GROUP value ifmgr stamps on links it creates.
// The kernel applies IFLA_GROUP inside the creating RTM_NEWLINK, so ownership
// is recorded atomically with the link and survives a lost database: ifmgr
// never deletes a link without it and never forgets one that has it.
const DefaultOwnerGroup = 0x75520000 // "uR" in the high half, unlikely to be an admin's group

// aliasPrefix starts the IFLA_IFALIAS text ifmgr writes on its links; the
// rest is the JSON identity, so a lost DB is rebuilt from the kernel. The
// encoding, and the bounds that make it fit, are persist's (identity.go).
const aliasPrefix = persist.AliasPrefix

// Config is what a Manager is built from.
type Config struct {
	Kernel     Kernel
	Store      Store
	Watcher    Watcher // nil: no kernel events (resync only on request)
	Cloners    []*Cloner
	OwnerGroup uint32 // 0 = DefaultOwnerGroup
	Logger     *slog.Logger
	QueueLen   int           // bounded request queue; 0 = 256
	BatchMax   int           // requests taken per batch (one DB transaction); 0 = 256
	ResyncTick time.Duration // safety-net re-dump period; 0 = 5 minutes, <0 = never
	// Profile, if set, is the board profile whose bridges and VLANs ifmgr
	// derives from the links present. Without one, ifmgr manages only what
	// ifctl asks for.
	Profile *board.Profile
	// Facts reads a link's driver and bus path (sysfs) for port matching.
	Facts func(ifname string) (driver, bus string)
	// MaxAbsent bounds, per cloner, the reservations kept for hardware
	// that is gone; 0 = DefaultMaxAbsent.
	MaxAbsent int
	// RetryMin and RetryMax bound the backoff between attempts at an
	// action the kernel or the DB refused; 0 = DefaultRetryMin and
	// DefaultRetryMax. A change of what the action depends on retries it
	// at once whatever the backoff.
	RetryMin, RetryMax time.Duration
}

// Manager owns the allocators, the store and the writing netlink socket.
// All of them are touched only from the goroutine running Run.
//
// Which goroutine runs what, by name:
//
//   - Exported methods (Create, Destroy, List, Status, Resync, Reload,
//     RejectProfile) are the client side: any goroutine may call them; they
//     only queue a request (requestQueue.call) and wait for its answer.
//   - Run is the owner goroutine, and every unexported method of Manager
//     runs on it and only on it, as do the methods of the state it holds
//     (linkTable, entryTable, units.Allocator, txn). Nothing else touches
//     that state, so none of it needs a lock.
//   - The one other goroutine, which reads the watcher socket, runs
//     forwardEvents: a function, not a method, so it cannot reach the state.
type Manager struct {
	cfg Config
	log *slog.Logger
	q   requestQueue

	// Owner-goroutine state.
	cloners      []*Cloner
	byCloner     map[string]*Cloner
	alloc        map[string]*units.Allocator // unit spaces, by cloner name
	links        linkTable                   // the kernel's links as last read
	entries      entryTable                  // the managed interfaces
	resyncs      map[string]uint64           // resync count by reason
	events       chan []kernel.Event         // watcher -> owner, for status
	clock        uint64                      // logical clock of LastSeen stamps: the highest on record
	profile      *board.Profile
	rejected     string                 // the last refused profile and why, for status
	lastConverge convergeResult         // what the last convergence that acted did, for status
	planner      plan.Planner           // the last plan, replanned in part after link events
	toldPlanner  map[uint32]plan.Link   // checkPlans (tests) only: each link as last told to the planner
	toldTargets  map[string]plan.Target // checkPlans (tests) only: the targets of the last plan
	refused      refusals               // refused actions, retried with backoff
	retry        *time.Timer            // fires when the earliest refused action is due
	redump       redumpTimer            // a failed resync's next try
	started      bool
}

// New checks the configuration; Run does the work.
func New(cfg Config) (*Manager, error) {
	if cfg.Kernel == nil || cfg.Store == nil {
		return nil, errors.New("ifmgr: Kernel and Store are required")
	}
	if len(cfg.Cloners) == 0 {
		return nil, errors.New("ifmgr: no cloners configured")
	}
	if cfg.OwnerGroup == 0 {
		cfg.OwnerGroup = DefaultOwnerGroup
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.QueueLen <= 0 {
		cfg.QueueLen = 256
	}
	if cfg.BatchMax <= 0 {
		cfg.BatchMax = 256
	}
	if cfg.ResyncTick == 0 {
		cfg.ResyncTick = 5 * time.Minute
	}
	m := &Manager{
		cfg:      cfg,
		log:      cfg.Logger,
		q:        requestQueue{reqs: make(chan *request, cfg.QueueLen), done: make(chan struct{})},
		byCloner: map[string]*Cloner{},
		alloc:    map[string]*units.Allocator{},
		links:    newLinkTable(),
		entries:  newEntryTable(),
		resyncs:  map[string]uint64{},
		refused:  newRefusals(cfg.RetryMin, cfg.RetryMax),
		retry:    time.NewTimer(time.Hour),
		redump:   newRedumpTimer(),
	}
	m.retry.Stop()
	for _, c := range cfg.Cloners {
		if _, dup := m.byCloner[c.Name]; dup {
			return nil, fmt.Errorf("ifmgr: cloner %q configured twice", c.Name)
		}
		for _, o := range m.cloners {
			// Templates may come from flags as well as from a profile:
			// the same rule as board's, one definition (ifname.Overlap).
			if name, cu, ou, ok := ifname.Overlap(c.template, c.MaxUnit, o.template, o.MaxUnit); ok {
				return nil, fmt.Errorf("ifmgr: cloner %q template %q renders %q (unit %d), which cloner %q template %q renders too (unit %d): %w",
					c.Name, c.Template(), name, cu, o.Name, o.Template(), ou, ErrBadTemplate)
			}
		}
		m.cloners = append(m.cloners, c)
		m.byCloner[c.Name] = c
		m.alloc[c.Name] = units.New(c.MaxUnit)
	}
	if err := m.setProfile(cfg.Profile); err != nil {
		return nil, err
	}
	return m, nil
}

// Run loads the records, reconciles them with the kernel and serves requests
// until ctx is cancelled. The request in hand is finished first; requests
// still queued are answered ErrClosed. Run returns only when every goroutine
// it started has exited.
func (m *Manager) Run(ctx context.Context) error {
	defer close(m.q.done)
	if m.started {
		return errors.New("ifmgr: Run called twice")
	}
	m.started = true

	events := make(chan []kernel.Event, 64)
	m.events = events
	watchDone := make(chan struct{})
	if m.cfg.Watcher != nil {
		go forwardEvents(m.cfg.Watcher, m.log, events, watchDone)
		forwarded := events
		defer func() {
			m.cfg.Watcher.Close()
			for range forwarded { // unblock the forwarder until it sees the closed socket
			}
			<-watchDone
		}()
	} else {
		close(watchDone)
		close(events)
		events = nil
	}

	if err := m.startup(); err != nil {
		m.refuseQueued()
		return err
	}

	var tick <-chan time.Time
	if m.cfg.ResyncTick > 0 {
		t := time.NewTicker(m.cfg.ResyncTick)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			m.refuseQueued()
			return nil
		case r := <-m.q.reqs:
			batch := m.takeBatch(r)
			// Kernel news first: a request should see every change the
			// watcher has already delivered, e.g. a foreign name gone.
			events = m.drainEvents(events)
			m.serve(batch)
		case evs, ok := <-events:
			if !ok {
				events = nil
				m.log.Error("link watcher stopped; relying on periodic resync")
				continue
			}
			evs, closed := burst(evs, events)
			m.handleEvents(evs)
			if closed {
				events = nil
				m.log.Error("link watcher stopped; relying on periodic resync")
			}
		case <-tick:
			m.resync("periodic")
		case <-m.retry.C:
			m.converge("retry")
		case <-m.redump.timer.C:
			m.resync(m.redump.reason)
		}
	}
}

// drainEvents handles events already delivered, without waiting. It returns
// nil once the watcher's channel is closed.
func (m *Manager) drainEvents(events chan []kernel.Event) chan []kernel.Event {
	for events != nil {
		select {
		case evs, ok := <-events:
			if !ok {
				m.log.Error("link watcher stopped; relying on periodic resync")
				return nil
			}
			evs, closed := burst(evs, events)
			m.handleEvents(evs)
			if closed {
				m.log.Error("link watcher stopped; relying on periodic resync")
				return nil
			}
		default:
			return events
		}
	}
	return nil
}

// maxEventBurst bounds the events one handleEvents takes at once.
const maxEventBurst = 4096

// burst appends to evs the batches already queued behind it, in order. The
// watcher delivers one datagram, usually one event, per batch, and a bulk
// bring-up makes several events per link: handled together they cost one
// re-read per touched link and one plan for the burst, not one per event
// (scripts/bench measured the per-event plan, O(links) each, as the bulk of
// ifmgrd's bring-up time). It reports whether the channel turned out closed.
func burst(evs []kernel.Event, events <-chan []kernel.Event) ([]kernel.Event, bool) {
	for len(evs) < maxEventBurst {
		select {
		case more, ok := <-events:
			if !ok {
				return evs, true
			}
			evs = append(evs, more...)
		default:
			return evs, false
		}
	}
	return evs, false
}

// forwardEvents is the only other goroutine: it reads the watcher socket and
// hands the events to the owner, never touching state itself.
func forwardEvents(w Watcher, log *slog.Logger, out chan<- []kernel.Event, done chan<- struct{}) {
	defer close(done)
	defer close(out)
	for failures := 0; ; {
		evs, err := w.Receive()
		switch {
		case errors.Is(err, kernel.ErrClosed):
			return
		case err != nil:
			// Not fatal: events may have been lost, so the owner re-reads
			// the kernel; back off so a broken socket cannot spin.
			failures++
			if failures > 100 {
				log.Error("link watcher keeps failing; giving up on it", "err", err)
				return
			}
			evs = []kernel.Event{{Type: kernel.EventResync, Reason: err.Error()}}
			time.Sleep(time.Duration(failures) * 10 * time.Millisecond)
		default:
			failures = 0
		}
		if len(evs) > 0 {
			out <- evs
		}
	}
}

// takeBatch drains what is already queued, so a burst of requests shares
// one DB transaction.
func (m *Manager) takeBatch(first *request) []*request {
	batch := []*request{first}
	for len(batch) < m.cfg.BatchMax {
		select {
		case r := <-m.q.reqs:
			batch = append(batch, r)
		default:
			return batch
		}
	}
	return batch
}

func (m *Manager) refuseQueued() {
	for {
		select {
		case r := <-m.q.reqs:
			r.answer(response{err: ErrClosed})
		default:
			return
		}
	}
}

func (m *Manager) startup() error {
	recs, err := m.cfg.Store.Records()
	if err != nil {
		return fmt.Errorf("ifmgr: read allocation records: %w", err)
	}
	for _, rec := range recs {
		c := m.byCloner[rec.Cloner]
		if c == nil {
			m.log.Warn("record of an unconfigured cloner kept untouched", "cloner", rec.Cloner, "unit", rec.Unit)
			continue
		}
		if err := m.alloc[c.Name].Alloc(rec.Unit); err != nil {
			m.log.Warn("record not loaded", "cloner", rec.Cloner, "unit", rec.Unit, "err", err)
			continue
		}
		m.entries.add(&entry{rec: rec, cloner: c})
		m.clock = max(m.clock, rec.LastSeen)
	}
	m.log.Info("allocation records loaded", "records", len(recs), "db", m.cfg.Store.Path())
	// A dump can be interrupted over and over while links churn (a boot
	// with many NICs appearing): retry a while before giving up.
	for attempt := 1; attempt <= 10; attempt++ {
		if err = m.resync("startup"); err == nil {
			return nil
		}
		time.Sleep(time.Duration(attempt) * 50 * time.Millisecond)
	}
	return fmt.Errorf("ifmgr: initial link dump: %w", err)
}

// response is what the owner answers.
type response struct {
	info   Info
	list   []Info
	status Status
	plan   []string
	err    error
}

type opKind int

const (
	opCreate opKind = iota
	opDestroy
	opList
	opStatus
	opResync
	opReload
	opReject
)

// request is one client call on its way to the owner. Each op reads only
// its own payload field.
type request struct {
	ctx     context.Context
	op      opKind
	create  CreateRequest // opCreate
	destroy string        // opDestroy: the interface name
	reload  reloadRequest // opReload
	refused error         // opReject: why the profile failed to load
	chain   *Chain        // nil: independent of the requests before it
	place   uint64        // its place in chain
	reply   chan response
}

// Chain links the requests of a batch that stops at its first failure
// (ifctl -batch without -force, like ip -batch): once one of them fails,
// every later one is answered ErrSkipped without being done. Requests are
// pipelined, so the later ones may already be queued, even in the owner's
// batch, when an earlier one fails: the owner checks the chain before it
// does anything for a request, and before it makes the link of a create
// whose record a batch already committed (that record is then deleted).
// Each request takes its place in the chain when it is queued; only those
// after the failure are skipped, whatever order a batch works in.
type Chain struct {
	last     atomic.Uint64 // the place of the last request queued
	failedAt atomic.Uint64 // the place of the first failure; 0: none
}

// place gives the next request its place in the chain.
func (c *Chain) place() uint64 {
	if c == nil {
		return 0
	}
	return c.last.Add(1)
}

// failAt records a failure at place p.
func (c *Chain) failAt(p uint64) {
	for {
		old := c.failedAt.Load()
		if old != 0 && old <= p {
			return
		}
		if c.failedAt.CompareAndSwap(old, p) {
			return
		}
	}
}

// Fail breaks the chain here: every request queued after this call is
// skipped. The control server calls it for a failure it answered itself (a
// bad line, a failed list), once every request before it is answered.
func (c *Chain) Fail() {
	if c != nil {
		c.failAt(c.place())
	}
}

// Failed reports whether a request of the chain failed.
func (c *Chain) Failed() bool { return c != nil && c.failedAt.Load() != 0 }

// skipped reports whether a request of r's chain before r failed.
func (r *request) skipped() bool {
	if r.chain == nil {
		return false
	}
	f := r.chain.failedAt.Load()
	return f != 0 && f < r.place
}

// skip answers r ErrSkipped if a request of its chain before it failed.
func (r *request) skip() bool {
	if !r.skipped() {
		return false
	}
	r.answer(response{err: ErrSkipped})
	return true
}

type reloadRequest struct {
	profile *board.Profile // nil: no profile
	dryRun  bool
}

func (r *request) answer(res response) {
	if res.err != nil && r.chain != nil {
		r.chain.failAt(r.place)
	}
	r.reply <- res // buffered: never blocks the owner
}

// requestQueue is the client side of the owner loop: the channel requests
// travel on, and done, closed when the owner has answered its last request.
type requestQueue struct {
	reqs chan *request
	done chan struct{}
}

// call queues a request and waits for the answer. If ctx ends after the owner
// took the request, the change still completes (no half-done state); only the
// answer is dropped.
func (q *requestQueue) call(ctx context.Context, r *request) response {
	if res, queued := q.send(ctx, r); !queued {
		return res
	}
	return q.wait(r)
}

// send queues r for the owner without waiting for its answer; it blocks
// only while the queue is full. It reports false, with the answer, if r
// could not be queued. Requests sent by one goroutine reach the owner in
// the order sent, which is what lets one connection pipeline them.
func (q *requestQueue) send(ctx context.Context, r *request) (response, bool) {
	r.ctx = ctx
	r.reply = make(chan response, 1)
	select {
	case q.reqs <- r:
		return response{}, true
	case <-ctx.Done():
		return response{err: fmt.Errorf("%w: %w", ErrQueueTimeout, ctx.Err())}, false
	case <-q.done:
		return response{err: ErrClosed}, false
	}
}

// wait is the second half of call: the answer to a sent request.
func (q *requestQueue) wait(r *request) response {
	select {
	case res := <-r.reply:
		return res
	case <-r.ctx.Done():
		return response{err: r.ctx.Err()}
	case <-q.done:
		select {
		case res := <-r.reply:
			return res
		default:
			return response{err: ErrClosed}
		}
	}
}

// serve answers a batch in order, grouping neighbouring creates and
// destroys so each group commits once.
func (m *Manager) serve(batch []*request) {
	live := batch[:0]
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.answer(response{err: err}) // the client gave up before we started: do nothing
			continue
		}
		live = append(live, r)
	}
	for i := 0; i < len(live); {
		j := i + 1
		for j < len(live) && live[j].op == live[i].op {
			j++
		}
		group := live[i:j]
		switch live[i].op {
		case opCreate:
			m.createBatch(group)
		case opDestroy:
			m.destroyBatch(group)
		case opList:
			for _, r := range group {
				r.answer(response{list: m.list()})
			}
		case opStatus:
			for _, r := range group {
				r.answer(response{status: m.status()})
			}
		case opResync:
			err := m.resync("requested")
			for _, r := range group {
				r.answer(response{err: err})
			}
		case opReload:
			for _, r := range group {
				r.answer(m.reload(r.reload.profile, r.reload.dryRun))
			}
		case opReject:
			for _, r := range group {
				m.rejected = r.refused.Error()
				m.log.Error("board profile refused; the one in force stays", "err", r.refused)
				r.answer(response{})
			}
		}
		i = j
	}
}

// Info describes one managed interface.
type Info struct {
	Name     string      `json:"name"`
	Kind     kernel.Kind `json:"kind"`
	Cloner   string      `json:"cloner"`
	Unit     uint32      `json:"unit"`
	Identity string      `json:"identity"`
	Index    uint32      `json:"ifindex,omitempty"`
	Parent   string      `json:"parent,omitempty"` // a VLAN's parent link, by name
	VID      uint16      `json:"vid,omitempty"`
	State    string      `json:"state"`
	// RenamedFrom: another process renamed the link; Name is its name
	// now, and this (the name Unit renders) stays reserved for it.
	RenamedFrom string `json:"renamed_from,omitempty"`
	// A VLAN-filtering bridge: its own (self) entries and every port's,
	// as last read from the kernel.
	VLANFiltering bool        `json:"vlan_filtering,omitempty"`
	SelfVLANs     VLANMembers `json:"self_vlans,omitempty"`
	Ports         []PortVLANs `json:"ports,omitempty"`
}

// PortVLANs is one bridge port's VLAN membership.
type PortVLANs struct {
	Port  string      `json:"port"`
	VLANs VLANMembers `json:"vlans"`
}

// VLANMember is one bridge VLAN entry of a port or of a bridge's own side.
type VLANMember struct {
	VID      uint16 `json:"vid"`
	PVID     bool   `json:"pvid,omitempty"`
	Untagged bool   `json:"untagged,omitempty"`
}

// String is OpenWrt's notation: "10:u*" (untagged, PVID), "20:t" (tagged).
func (v VLANMember) String() string {
	s := fmt.Sprintf("%d:t", v.VID)
	if v.Untagged {
		s = fmt.Sprintf("%d:u", v.VID)
	}
	if v.PVID {
		s += "*"
	}
	return s
}

// VLANMembers is a membership, ascending VID.
type VLANMembers []VLANMember

// String lists the entries in OpenWrt's notation, "1:u*,10:t"; "-" for none.
func (vs VLANMembers) String() string {
	if len(vs) == 0 {
		return "-"
	}
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = v.String()
	}
	return strings.Join(parts, ",")
}

func vlanMembers(vs []kernel.BridgeVLAN) VLANMembers {
	out := make(VLANMembers, len(vs))
	for i, v := range vs {
		out[i] = VLANMember(v)
	}
	return out
}

func (m *Manager) info(e *entry) Info {
	in := Info{
		Name:     e.name(),
		Kind:     e.cloner.Kind,
		Cloner:   e.cloner.Name,
		Unit:     e.rec.Unit,
		Identity: e.rec.Identity.Key(),
		Index:    e.index,
		Parent:   e.rec.ParentName,
		VID:      e.rec.VID,
		State:    "absent",
	}
	if l, ok := m.links.get(e.index); ok {
		in.State = linkState(l)
		if l.Name != in.Name {
			in.Name, in.RenamedFrom = l.Name, in.Name
		}
		if l.Kind == kernel.KindBridge && l.VLANFiltering {
			in.VLANFiltering = true
			in.SelfVLANs = vlanMembers(m.links.vlansOf(l.Index))
			m.links.each(func(p kernel.Link) {
				if p.Master == l.Index {
					in.Ports = append(in.Ports, PortVLANs{Port: p.Name, VLANs: vlanMembers(m.links.vlansOf(p.Index))})
				}
			})
			sort.Slice(in.Ports, func(i, j int) bool { return in.Ports[i].Port < in.Ports[j].Port })
		}
	}
	return in
}

func (m *Manager) list() []Info {
	out := make([]Info, 0, m.entries.len())
	m.entries.each(func(e *entry) { out = append(out, m.info(e)) })
	sort.Slice(out, func(i, j int) bool {
		if out[i].Cloner != out[j].Cloner {
			return out[i].Cloner < out[j].Cloner
		}
		return out[i].Unit < out[j].Unit
	})
	return out
}

// Status is the daemon's self-report.
type Status struct {
	DB         string            `json:"db"`
	DBProblem  string            `json:"db_problem,omitempty"` // why nothing persists, if so (filled in by ifmgrd)
	DBSize     int64             `json:"db_size"`
	Commits    uint64            `json:"commits"`
	Managed    map[string]int    `json:"managed"` // by kind
	Cloners    []ClonerStatus    `json:"cloners"`
	Resyncs    map[string]uint64 `json:"resyncs"`
	QueueDepth int               `json:"queue_depth"`       // requests waiting for the owner
	EventDepth int               `json:"event_queue_depth"` // event batches waiting for the owner
	Links      int               `json:"links"`
	Profile    string            `json:"profile,omitempty"`          // board and file in force
	Rejected   string            `json:"profile_rejected,omitempty"` // the last refused profile and why
	// Converged: a profile is in force, no event waits, the plan for the
	// links as last seen is empty and no action is refused. It is what a
	// boot's mark-good waits for (firmware/cmd/uinit); Pending counts the
	// planned actions when it is not.
	Converged bool `json:"converged"`
	Pending   int  `json:"pending_actions"`
	// LastConverge is what the last convergence to the profile did (absent
	// without a profile).
	LastConverge *ConvergeReport `json:"last_converge,omitempty"`
	// Refused lists the planned actions that keep being refused, why, and
	// when each is tried next (at once if what it depends on changes).
	Refused []RefusalReport `json:"refused,omitempty"`
	// BridgeVLANs counts the membership of ifmgr's VLAN-filtering bridges
	// (absent if none).
	BridgeVLANs *BridgeVLANStatus `json:"bridge_vlans,omitempty"`
	// Renamed maps each managed interface renamed by another process (by
	// the name its unit renders) to the name its link has now: the unit
	// stays reserved for it (see docs/design.md, "Renamed from outside").
	Renamed map[string]string `json:"renamed,omitempty"`
}

// BridgeVLANStatus counts the bridge VLAN membership ifmgr keeps.
type BridgeVLANStatus struct {
	Bridges     int `json:"bridges"`      // ifmgr's bridges that filter
	Ports       int `json:"ports"`        // their ports
	PortEntries int `json:"port_entries"` // the ports' entries
	SelfEntries int `json:"self_entries"` // the bridges' own entries
	// Pending: membership changes the profile still asks for (0 once
	// converged; see refused and last_converge for why not).
	Pending int `json:"pending"`
}

// ConvergeReport tells what one convergence did: how many actions were
// done, and each refused action with its error.
type ConvergeReport struct {
	Trigger string         `json:"trigger"`
	Rounds  int            `json:"rounds"`
	Done    int            `json:"done"`
	Failed  []ActionReport `json:"failed,omitempty"`
	DBError string         `json:"db_error,omitempty"` // a commit that failed
}

// ActionReport is a refused action: the action as a plan line and why.
type ActionReport struct {
	Action string `json:"action"`
	Error  string `json:"error"`
	// Retry: a foreign link held the name; a later round used another unit.
	Retry bool `json:"retry,omitempty"`
}

func (r convergeResult) report() *ConvergeReport {
	rep := &ConvergeReport{Trigger: r.trigger, Rounds: r.rounds, Done: r.done}
	for _, res := range r.results {
		if res.Done() {
			rep.Done++
			continue
		}
		rep.Failed = append(rep.Failed, ActionReport{Action: res.Action.String(), Error: res.Err.Error(), Retry: res.Retry})
	}
	if r.dbErr != nil {
		rep.DBError = r.dbErr.Error()
	}
	return rep
}

// ClonerStatus reports one cloner's unit space.
type ClonerStatus struct {
	Name      string `json:"name"`
	Template  string `json:"template"`
	MaxUnit   uint32 `json:"max_unit"`
	Allocated int    `json:"allocated"`
	Held      int    `json:"held_by_foreign"`
}

func (m *Manager) status() Status {
	st := Status{
		DB:         m.cfg.Store.Path(),
		DBSize:     m.cfg.Store.Size(),
		Commits:    m.cfg.Store.Commits(),
		Managed:    map[string]int{},
		Resyncs:    map[string]uint64{},
		QueueDepth: len(m.q.reqs),
		EventDepth: len(m.events),
		Links:      m.links.len(),
	}
	m.entries.each(func(e *entry) {
		if e.index != 0 {
			st.Managed[string(e.cloner.Kind)]++
		}
		if l, renamed := m.renamedLink(e); renamed {
			if st.Renamed == nil {
				st.Renamed = map[string]string{}
			}
			st.Renamed[e.name()] = l.Name
		}
	})
	st.BridgeVLANs = m.bridgeVLANStatus()
	if m.profile != nil {
		st.Profile = m.profile.Board + " (" + m.profile.Source + ")"
		st.LastConverge = m.lastConverge.report()
		st.Refused = m.refused.report()
		st.Pending = len(plan.Compute(m.profile, m.planLinks()).Actions)
		st.Converged = st.Pending == 0 && len(st.Refused) == 0 && st.EventDepth == 0 && m.rejected == ""
	}
	st.Rejected = m.rejected
	for _, c := range m.cloners {
		a := m.alloc[c.Name]
		st.Cloners = append(st.Cloners, ClonerStatus{c.Name, c.Template(), c.MaxUnit, a.Allocated(), a.HeldCount()})
	}
	for k, v := range m.resyncs {
		st.Resyncs[k] = v
	}
	return st
}

// bridgeVLANStatus counts the membership of ifmgr's filtering bridges, and
// what the profile still wants changed (nil: no filtering bridge).
func (m *Manager) bridgeVLANStatus() *BridgeVLANStatus {
	var st BridgeVLANStatus
	filtering := map[uint32]bool{}
	m.entries.each(func(e *entry) {
		if l, ok := m.links.get(e.index); ok && l.Kind == kernel.KindBridge && l.VLANFiltering {
			filtering[l.Index] = true
			st.Bridges++
			st.SelfEntries += len(m.links.vlansOf(l.Index))
		}
	})
	m.links.each(func(l kernel.Link) {
		if filtering[l.Master] {
			st.Ports++
			st.PortEntries += len(m.links.vlansOf(l.Index))
		}
	})
	if filters(m.profile) {
		for _, a := range plan.Compute(m.profile, m.planLinks()).Actions {
			if a.Kind == plan.AddVLAN || a.Kind == plan.DelVLAN {
				st.Pending++
			}
		}
	}
	if st.Bridges == 0 && st.Pending == 0 {
		return nil
	}
	return &st
}

// CreateRequest asks for a new interface. Name is a cloner name ("bridge":
// lowest free unit) or a full interface name ("bridge7": that unit).
type CreateRequest struct {
	Name string
	Dev  string // VLAN parent
	VID  int    // VLAN id
}

// Create makes an interface and returns what was made.
func (m *Manager) Create(ctx context.Context, req CreateRequest) (Info, error) {
	res := m.q.call(ctx, &request{op: opCreate, create: req})
	return res.info, res.err
}

// QueueCreate queues a create and returns at once (unless the request queue
// is full) with the function that waits for its answer. Creates queued one
// after another, by one goroutine, reach the owner in that order, and those
// queued together share one DB commit (the owner takes every request queued
// at that moment as one batch): a client with many creates pipelines them
// instead of paying a commit each. The promise is Create's: the answer
// comes only once the unit is committed and its link exists.
// With a chain, the create is skipped if a request of the chain before it
// failed, and its own failure makes the chain's later requests skipped.
func (m *Manager) QueueCreate(ctx context.Context, req CreateRequest, chain *Chain) func() (Info, error) {
	r := &request{op: opCreate, create: req, chain: chain, place: chain.place()}
	if res, queued := m.q.send(ctx, r); !queued {
		return func() (Info, error) { return res.info, res.err }
	}
	return func() (Info, error) {
		res := m.q.wait(r)
		return res.info, res.err
	}
}

// QueueDestroy is Destroy's QueueCreate: queued in order, answered later.
func (m *Manager) QueueDestroy(ctx context.Context, name string, chain *Chain) func() error {
	r := &request{op: opDestroy, destroy: name, chain: chain, place: chain.place()}
	if res, queued := m.q.send(ctx, r); !queued {
		return func() error { return res.err }
	}
	return func() error { return m.q.wait(r).err }
}

// Destroy deletes a managed interface and frees its unit. Interfaces ifmgr
// does not own are refused, never deleted.
func (m *Manager) Destroy(ctx context.Context, name string) error {
	return m.q.call(ctx, &request{op: opDestroy, destroy: name}).err
}

// List returns the managed interfaces, by cloner then unit.
func (m *Manager) List(ctx context.Context) ([]Info, error) {
	res := m.q.call(ctx, &request{op: opList})
	return res.list, res.err
}

// Status returns counters and the state of every cloner.
func (m *Manager) Status(ctx context.Context) (Status, error) {
	res := m.q.call(ctx, &request{op: opStatus})
	return res.status, res.err
}

// Resync re-reads the kernel and converges, as after a lost event.
func (m *Manager) Resync(ctx context.Context) error {
	return m.q.call(ctx, &request{op: opResync}).err
}

// Reload puts a new board profile in force (nil: manage only what ifctl
// asks for) and converges, touching only what the change affects. It
// answers the actions taken, one line each, a refused one followed by
// " -- failed: " and why. With dryRun it applies nothing and answers the
// plan, an action refused by the last convergence followed by
// " -- failed last time: " and why.
func (m *Manager) Reload(ctx context.Context, p *board.Profile, dryRun bool) ([]string, error) {
	res := m.q.call(ctx, &request{op: opReload, reload: reloadRequest{profile: p, dryRun: dryRun}})
	return res.plan, res.err
}

// RejectProfile records a profile that failed to load, for status; the
// profile in force stays.
func (m *Manager) RejectProfile(ctx context.Context, why error) error {
	if why == nil {
		return fmt.Errorf("%w: a profile refused without a reason", ErrBadRequest)
	}
	return m.q.call(ctx, &request{op: opReject, refused: why}).err
}

func (m *Manager) reload(p *board.Profile, dryRun bool) response {
	if !filters(m.profile) {
		// The membership was not read while no bridge filtered: read it
		// before planning a profile that has one.
		m.readBridgeVLANs(p, "reload")
	}
	if dryRun {
		return response{plan: m.planLines(p, m.lastConverge.results)}
	}
	unchanged := m.profile != nil && p != nil && m.profile.Equal(p)
	if err := m.setProfile(p); err != nil {
		m.rejected = err.Error()
		return response{err: err}
	}
	m.rejected = ""
	if unchanged {
		return response{} // nothing to touch
	}
	m.refused.expedite() // a new profile: try everything it plans now
	var lines []string
	for _, r := range m.converge("reload").results {
		line := r.Action.String()
		if !r.Done() {
			line += " -- failed: " + r.Err.Error()
		}
		lines = append(lines, line)
	}
	return response{plan: lines}
}

// planLines renders what profile p would do to the links now present,
// marking the actions that failed last time.
func (m *Manager) planLines(p *board.Profile, last []ActionResult) []string {
	if p == nil {
		return nil
	}
	failed := map[string]error{}
	for _, r := range last {
		if !r.Done() {
			failed[r.Action.String()] = r.Err
		}
	}
	for key, r := range m.refused.byAction {
		failed[key] = r.err // deferred by its backoff, so not in last
	}
	var lines []string
	for _, a := range plan.Compute(p, m.planLinks()).Actions {
		line := a.String()
		if err := failed[line]; err != nil {
			line += " -- failed last time: " + err.Error()
		}
		lines = append(lines, line)
	}
	return lines
}

// Interface flags (linux/if.h) that ifmgr reads.
const iffUp, iffLowerUp = 0x1, 0x10000

func linkState(l kernel.Link) string {
	switch {
	case l.Flags&iffUp == 0:
		return "down"
	case l.Flags&iffLowerUp == 0:
		return "no-carrier"
	default:
		return "up"
	}
}
