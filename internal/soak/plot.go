package main

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"os"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// series is one panel of the plot: values over time.
type series struct {
	title string
	unit  string
	ys    []float64
}

// plotPNG draws one panel per series, stacked, over a shared time axis (s).
// A plotting library (gonum.org/v1/plot) would upgrade golang.org/x/tools
// and x/mod, which the image build (u-root) uses: lines and labels with the
// standard library and x/image's fixed font are enough here.
func plotPNG(path string, xs []float64, ss []series) error {
	const w, ph, left, right, top, gap = 900, 150, 80, 20, 24, 30
	h := len(ss)*(ph+gap) + top
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.Draw(img, img.Bounds(), image.White, image.Point{}, draw.Src)
	black := color.RGBA{0, 0, 0, 255}
	grey := color.RGBA{200, 200, 200, 255}
	blue := color.RGBA{30, 90, 200, 255}
	xmax := 1.0
	if len(xs) > 0 && xs[len(xs)-1] > 0 {
		xmax = xs[len(xs)-1]
	}
	for i, s := range ss {
		y0 := top + i*(ph+gap)
		lo, hi := minMax(s.ys)
		if hi == lo {
			hi, lo = hi+1, lo-1
		}
		label(img, left, y0-6, black, fmt.Sprintf("%s (%s): %.6g .. %.6g", s.title, s.unit, lo, hi))
		for x := left; x < w-right; x++ {
			img.Set(x, y0+ph, black)
			img.Set(x, y0, grey)
		}
		for y := y0; y <= y0+ph; y++ {
			img.Set(left, y, black)
		}
		label(img, 4, y0+10, black, fmt.Sprintf("%.4g", hi))
		label(img, 4, y0+ph, black, fmt.Sprintf("%.4g", lo))
		px := func(j int) (int, int) {
			x := left + int(xs[j]/xmax*float64(w-left-right-1))
			y := y0 + ph - int((s.ys[j]-lo)/(hi-lo)*float64(ph))
			return x, y
		}
		for j := 1; j < len(s.ys); j++ {
			x1, y1 := px(j - 1)
			x2, y2 := px(j)
			line(img, x1, y1, x2, y2, blue)
		}
	}
	label(img, w-right-160, h-6, black, fmt.Sprintf("time: 0 .. %.0f s", xmax))
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func minMax(ys []float64) (lo, hi float64) {
	for i, y := range ys {
		if i == 0 || y < lo {
			lo = y
		}
		if i == 0 || y > hi {
			hi = y
		}
	}
	return lo, hi
}

func label(img *image.RGBA, x, y int, c color.Color, s string) {
	d := font.Drawer{Dst: img, Src: image.NewUniform(c), Face: basicfont.Face7x13, Dot: fixed.P(x, y)}
	d.DrawString(s)
}

// line: Bresenham.
func line(img *image.RGBA, x1, y1, x2, y2 int, c color.Color) {
	dx, dy := abs(x2-x1), -abs(y2-y1)
	sx, sy := sign(x2-x1), sign(y2-y1)
	e := dx + dy
	for {
		img.Set(x1, y1, c)
		if x1 == x2 && y1 == y2 {
			return
		}
		e2 := 2 * e
		if e2 >= dy {
			e += dy
			x1 += sx
		}
		if e2 <= dx {
			e += dx
			y1 += sy
		}
	}
}

func abs(a int) int {
	if a < 0 {
		return -a
	}
	return a
}

func sign(a int) int {
	switch {
	case a > 0:
		return 1
	case a < 0:
		return -1
	}
	return 0
}
