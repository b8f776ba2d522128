package persist

import (
	"cmp"
	"log/slog"
	"maps"
	"slices"
)

// memBackend keeps JSON like the file does, so records read back from
// memory go through the same encode/decode as on a router with flash.
type memBackend struct {
	m map[RecordKey][]byte
}

func newMemBackend() *memBackend { return &memBackend{m: make(map[RecordKey][]byte)} }

func (b *memBackend) records(log *slog.Logger) ([]Record, error) {
	keys := slices.SortedFunc(maps.Keys(b.m), func(x, y RecordKey) int {
		return cmp.Or(cmp.Compare(x.Cloner, y.Cloner), cmp.Compare(x.Unit, y.Unit))
	})
	out := make([]Record, 0, len(keys))
	for _, k := range keys {
		r, err := decodeRecord(k.Cloner, unitKey(k.Unit), b.m[k])
		if err != nil {
			warnSkipped(log, k.Cloner, unitKey(k.Unit), err)
			continue
		}
		out = append(out, r)
	}
	return out, nil
}

func (b *memBackend) get(k RecordKey, log *slog.Logger) (Record, bool, error) {
	v, ok := b.m[k]
	if !ok {
		return Record{}, false, nil
	}
	r, err := decodeRecord(k.Cloner, unitKey(k.Unit), v)
	if err != nil {
		warnSkipped(log, k.Cloner, unitKey(k.Unit), err)
		return Record{}, false, nil
	}
	return r, true, nil
}

func (b *memBackend) apply(puts []Record, dels []RecordKey) error {
	for _, k := range dels {
		delete(b.m, k)
	}
	for _, r := range puts {
		b.m[r.Key()] = encodeRecord(r)
	}
	return nil
}

func (b *memBackend) size() int64 { return 0 }

func (b *memBackend) close() error {
	b.m = nil
	return nil
}
