package main

import (
	"image/png"
	"os"
	"path/filepath"
	"testing"
)

// The plot of a real soak's figures must come out as a PNG of one panel per
// series, including flat series and lines in every direction.
func TestPlotPNG(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.png")
	xs := []float64{0, 3, 6, 9, 12}
	err := plotPNG(path, xs, []series{
		{"rss", "MB", []float64{12.1, 12.7, 12.5, 13.0, 12.4}},
		{"flat", "count", []float64{11, 11, 11, 11, 11}},
		{"steps", "kB", []float64{65, 65, 131, 131, 131}},
	})
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() != 900 || b.Dy() != 3*(150+30)+24 {
		t.Fatalf("plot is %v, want 900 wide and 3 panels high", b)
	}
}
