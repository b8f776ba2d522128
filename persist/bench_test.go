package persist

import (
	"fmt"
	"path/filepath"
	"testing"
)

// BenchmarkApplyBatch measures one durable commit of n puts; the fsyncs
// dominate, which is why ifmgr batches.
func BenchmarkApplyBatch(b *testing.B) {
	for _, n := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("records=%d", n), func(b *testing.B) {
			s := mustOpen(b, filepath.Join(b.TempDir(), "units.db"))
			defer s.Close()
			batch := make([]Record, n)
			i := 0
			for b.Loop() {
				for j := range batch {
					// Rewrite a bounded set of units so the file stays small.
					batch[j] = bridge(uint32((i*n + j) % 10000))
				}
				i++
				if err := s.Apply(batch, nil); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/record")
			b.ReportMetric(float64(s.Size()), "file-bytes")
		})
	}
}

func benchDB(b *testing.B, n int) string {
	path := filepath.Join(b.TempDir(), "units.db")
	s := mustOpen(b, path)
	var puts []Record
	for u := range uint32(n) {
		if u%2 == 0 {
			puts = append(puts, bridge(u))
		} else {
			puts = append(puts, vlan(u, "eth0", uint16(u%4094+1)))
		}
	}
	mustApply(b, s, puts, nil)
	s.Close()
	return path
}

// BenchmarkOpen is the boot cost with 10k records: preflight, bbolt open,
// the full walk and tx.Check.
func BenchmarkOpen(b *testing.B) {
	path := benchDB(b, 10000)
	for b.Loop() {
		s := mustOpen(b, path)
		s.Close()
	}
	b.ReportMetric(float64(fileSize(path)), "file-bytes")
}

func BenchmarkRecords(b *testing.B) {
	s := mustOpen(b, benchDB(b, 10000))
	defer s.Close()
	for b.Loop() {
		if recs := mustRecords(b, s); len(recs) != 10000 {
			b.Fatal(len(recs))
		}
	}
}
