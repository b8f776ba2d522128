package api

import (
	"context"
	"sync"

	"github.com/uroute/uroute/ifmgr"
)

// recordingBackend answers every operation at once and counts the calls, so
// tests can check which backend method a request reached.
type recordingBackend struct {
	mu    sync.Mutex
	calls []string
}

func (b *recordingBackend) record(op string) {
	b.mu.Lock()
	b.calls = append(b.calls, op)
	b.mu.Unlock()
}

func (b *recordingBackend) taken() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := b.calls
	b.calls = nil
	return out
}

func (b *recordingBackend) Create(_ context.Context, req ifmgr.CreateRequest) (ifmgr.Info, error) {
	b.record(OpCreate)
	return ifmgr.Info{Name: req.Name}, nil
}

func (b *recordingBackend) Destroy(context.Context, string) error { b.record(OpDestroy); return nil }

func (b *recordingBackend) List(context.Context) ([]ifmgr.Info, error) {
	b.record(OpList)
	return []ifmgr.Info{{Name: "bridge0"}}, nil
}

func (b *recordingBackend) Status(context.Context) (ifmgr.Status, error) {
	b.record(OpStatus)
	return ifmgr.Status{}, nil
}

func (b *recordingBackend) Resync(context.Context) error { b.record(OpResync); return nil }

func (b *recordingBackend) Reload(context.Context, bool) ([]string, error) {
	b.record(OpReload)
	return nil, nil
}
