package benchkit

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/uroute/uroute/ifmgr/kernel"
	"golang.org/x/sys/unix"
)

// Goal is a kernel state the bench waits for, judged link by link: Want says
// whether one link, given the others, counts towards the goal.
type Goal struct {
	Want  func(l kernel.Link, byIndex func(uint32) (kernel.Link, bool)) bool
	Count int // how many links must be wanted at once
}

// BridgedPorts: n links named prefix* are up and ports of an up bridge (the
// state of a "one bridge per port" bring-up).
func BridgedPorts(prefix string, n int) Goal {
	return Goal{Count: n, Want: func(l kernel.Link, get func(uint32) (kernel.Link, bool)) bool {
		if !strings.HasPrefix(l.Name, prefix) || l.Flags&unix.IFF_UP == 0 || l.Master == 0 {
			return false
		}
		m, ok := get(l.Master)
		return ok && m.Kind == "bridge" && m.Flags&unix.IFF_UP != 0
	}}
}

// UpBridges: n bridges named prefix* are up.
func UpBridges(prefix string, n int) Goal {
	return Goal{Count: n, Want: func(l kernel.Link, _ func(uint32) (kernel.Link, bool)) bool {
		return l.Kind == "bridge" && strings.HasPrefix(l.Name, prefix) && l.Flags&unix.IFF_UP != 0
	}}
}

// Watch follows every link of one namespace through RTNLGRP_LINK, and tells
// when a Goal is met and when each link first met it.
type Watch struct {
	w    *kernel.Watcher
	conn *kernel.Conn

	mu      sync.Mutex
	links   map[uint32]kernel.Link
	ports   map[uint32]map[uint32]bool // master -> its ports
	goal    *Goal
	met     map[uint32]bool
	metAt   map[string]time.Time // name -> when it first met the goal
	seenAt  map[string]time.Time // name -> when its first RTM_NEWLINK arrived
	doneAt  time.Time
	changed chan struct{}
	err     error
	events  int
	resyncs int
}

// NewWatch opens the watcher in ns and takes the initial dump.
func NewWatch(ns *NS) (*Watch, error) {
	wa := &Watch{links: map[uint32]kernel.Link{}, ports: map[uint32]map[uint32]bool{},
		seenAt: map[string]time.Time{}, changed: make(chan struct{}, 1)}
	err := ns.Do(func() error {
		var err error
		if wa.w, err = kernel.Watch(kernel.WatchOptions{ReadBuffer: 32 << 20}); err != nil {
			return err
		}
		wa.conn, err = kernel.Dial()
		return err
	})
	if err != nil {
		wa.Close()
		return nil, err
	}
	if err := wa.resync(); err != nil {
		wa.Close()
		return nil, err
	}
	go wa.loop()
	return wa, nil
}

// Conn is a request socket in the watched namespace.
func (wa *Watch) Conn() *kernel.Conn { return wa.conn }

// Close stops the watcher.
func (wa *Watch) Close() {
	if wa.w != nil {
		wa.w.Close()
	}
	if wa.conn != nil {
		wa.conn.Close()
	}
}

func (wa *Watch) resync() error {
	links, err := wa.conn.Links()
	if err != nil {
		return err
	}
	now := time.Now()
	wa.mu.Lock()
	defer wa.mu.Unlock()
	wa.resyncs++
	wa.links = map[uint32]kernel.Link{}
	wa.ports = map[uint32]map[uint32]bool{}
	for _, l := range links {
		wa.put(l, now)
	}
	wa.rejudgeAll(now)
	return nil
}

func (wa *Watch) loop() {
	for {
		evs, err := wa.w.Receive()
		if err != nil {
			if !errors.Is(err, kernel.ErrClosed) {
				wa.mu.Lock()
				wa.err = err
				wa.mu.Unlock()
			}
			wa.poke()
			return
		}
		now := time.Now()
		for _, ev := range evs {
			if ev.Type == kernel.EventResync {
				if err := wa.resync(); err != nil {
					wa.mu.Lock()
					wa.err = fmt.Errorf("resync after %s: %w", ev.Reason, err)
					wa.mu.Unlock()
				}
				continue
			}
			wa.mu.Lock()
			wa.events++
			if ev.Type == kernel.EventDel {
				wa.remove(ev.Link.Index)
			} else {
				wa.put(ev.Link, now)
			}
			wa.rejudge(ev.Link.Index, now)
			wa.mu.Unlock()
		}
		wa.poke()
	}
}

func (wa *Watch) poke() {
	select {
	case wa.changed <- struct{}{}:
	default:
	}
}

func (wa *Watch) put(l kernel.Link, now time.Time) {
	if old, ok := wa.links[l.Index]; ok && old.Master != l.Master {
		delete(wa.ports[old.Master], l.Index)
	}
	if _, ok := wa.seenAt[l.Name]; !ok {
		wa.seenAt[l.Name] = now
	}
	wa.links[l.Index] = l
	if l.Master != 0 {
		if wa.ports[l.Master] == nil {
			wa.ports[l.Master] = map[uint32]bool{}
		}
		wa.ports[l.Master][l.Index] = true
	}
}

func (wa *Watch) remove(index uint32) {
	if l, ok := wa.links[index]; ok {
		delete(wa.ports[l.Master], index)
		delete(wa.links, index)
		if wa.met != nil {
			delete(wa.met, index)
		}
	}
}

func (wa *Watch) get(index uint32) (kernel.Link, bool) {
	l, ok := wa.links[index]
	return l, ok
}

// rejudge re-evaluates a changed link and the ports of it (a bridge going up
// changes its ports' verdict).
func (wa *Watch) rejudge(index uint32, now time.Time) {
	if wa.goal == nil {
		return
	}
	wa.judge(index, now)
	for p := range wa.ports[index] {
		wa.judge(p, now)
	}
	if len(wa.met) >= wa.goal.Count && wa.doneAt.IsZero() {
		wa.doneAt = now
	}
}

func (wa *Watch) rejudgeAll(now time.Time) {
	if wa.goal == nil {
		return
	}
	for i := range wa.links {
		wa.judge(i, now)
	}
	if len(wa.met) >= wa.goal.Count && wa.doneAt.IsZero() {
		wa.doneAt = now
	}
}

func (wa *Watch) judge(index uint32, now time.Time) {
	l, ok := wa.links[index]
	if ok && wa.goal.Want(l, wa.get) {
		if !wa.met[index] {
			wa.met[index] = true
			if _, ok := wa.metAt[l.Name]; !ok {
				wa.metAt[l.Name] = now
			}
		}
		return
	}
	delete(wa.met, index)
}

// Expect installs the goal to wait for; links already meeting it count.
func (wa *Watch) Expect(g Goal) {
	wa.mu.Lock()
	defer wa.mu.Unlock()
	wa.goal = &g
	wa.met = map[uint32]bool{}
	wa.metAt = map[string]time.Time{}
	wa.doneAt = time.Time{}
	wa.rejudgeAll(time.Now())
}

// Wait blocks until the goal is met and returns when that was (the arrival
// of the event that completed it).
func (wa *Watch) Wait(timeout time.Duration) (time.Time, error) {
	deadline := time.After(timeout)
	for {
		wa.mu.Lock()
		done, err, n, want := wa.doneAt, wa.err, len(wa.met), wa.goal.Count
		wa.mu.Unlock()
		if err != nil {
			return time.Time{}, err
		}
		if !done.IsZero() {
			return done, nil
		}
		select {
		case <-wa.changed:
		case <-deadline:
			return time.Time{}, fmt.Errorf("goal not met after %v: %d of %d links", timeout, n, want)
		}
	}
}

// SeenAt is when the link called name first appeared; MetAt when it first
// met the current goal.
func (wa *Watch) SeenAt(name string) (time.Time, bool) {
	wa.mu.Lock()
	defer wa.mu.Unlock()
	t, ok := wa.seenAt[name]
	return t, ok
}

// MetAt: see SeenAt.
func (wa *Watch) MetAt(name string) (time.Time, bool) {
	wa.mu.Lock()
	defer wa.mu.Unlock()
	t, ok := wa.metAt[name]
	return t, ok
}

// Count is how many links there are whose name starts with prefix.
func (wa *Watch) Count(prefix string) int {
	wa.mu.Lock()
	defer wa.mu.Unlock()
	n := 0
	for _, l := range wa.links {
		if strings.HasPrefix(l.Name, prefix) {
			n++
		}
	}
	return n
}

// WaitCount waits until exactly n links named prefix* exist.
func (wa *Watch) WaitCount(prefix string, n int, timeout time.Duration) error {
	deadline := time.After(timeout)
	for {
		if c := wa.Count(prefix); c == n {
			return nil
		} else {
			select {
			case <-wa.changed:
			case <-time.After(50 * time.Millisecond):
			case <-deadline:
				return fmt.Errorf("%d links %s*, want %d after %v", c, prefix, n, timeout)
			}
		}
	}
}

// Stats: events received and dumps taken (the first, plus one per overrun).
func (wa *Watch) Stats() (events, resyncs int) {
	wa.mu.Lock()
	defer wa.mu.Unlock()
	return wa.events, wa.resyncs
}

// Until waits until ok (called under the watch's lock) holds.
func (wa *Watch) until(ok func() bool, timeout time.Duration) error {
	deadline := time.After(timeout)
	for {
		wa.mu.Lock()
		done, err := ok(), wa.err
		wa.mu.Unlock()
		if err != nil {
			return err
		}
		if done {
			return nil
		}
		select {
		case <-wa.changed:
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			return fmt.Errorf("timed out after %v", timeout)
		}
	}
}

// WaitSeen waits for the link called name to appear and returns it and
// when its first event arrived.
func (wa *Watch) WaitSeen(name string, timeout time.Duration) (kernel.Link, time.Time, error) {
	var l kernel.Link
	var at time.Time
	err := wa.until(func() bool {
		t, ok := wa.seenAt[name]
		if !ok {
			return false
		}
		for _, x := range wa.links {
			if x.Name == name {
				l, at = x, t
				return true
			}
		}
		return false
	}, timeout)
	if err != nil {
		return l, at, fmt.Errorf("link %s: %w", name, err)
	}
	return l, at, nil
}

// WaitMet waits until the link called name has met the goal, and returns
// when it did.
func (wa *Watch) WaitMet(name string, timeout time.Duration) (time.Time, error) {
	var at time.Time
	err := wa.until(func() bool {
		t, ok := wa.metAt[name]
		at = t
		return ok
	}, timeout)
	if err != nil {
		return at, fmt.Errorf("link %s: %w", name, err)
	}
	return at, nil
}

// WaitFor waits until ok holds for the current links (called under the
// watch's lock; it must not keep the map).
func (wa *Watch) WaitFor(ok func(links map[uint32]kernel.Link) bool, timeout time.Duration) error {
	return wa.until(func() bool { return ok(wa.links) }, timeout)
}

// Forget drops the times recorded for the link called name, so that a
// link of that name added again (a replug) is timed from its own first
// event.
func (wa *Watch) Forget(name string) {
	wa.mu.Lock()
	defer wa.mu.Unlock()
	delete(wa.seenAt, name)
	delete(wa.metAt, name)
}
