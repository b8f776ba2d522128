package qemu

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// imageInput reports whether a repository file goes into the image (or
// into how it is built): the module's non-test Go sources outside the
// test rig, go.mod and go.sum, the board profiles and build-image.sh.
func imageInput(rel string) bool {
	switch {
	case rel == "go.mod" || rel == "go.sum" || rel == "scripts/build-image.sh":
		return true
	case strings.HasPrefix(rel, "board/profiles/"):
		return true
	case strings.HasSuffix(rel, ".go") && !strings.HasSuffix(rel, "_test.go"):
		return true
	}
	return false
}

// skipDir are directories whose files never reach the image.
func skipDir(rel string) bool {
	switch rel {
	case ".git", "qemu-test", "docs", "buildroot", "node_modules":
		return true
	}
	return filepath.Base(rel) == "testdata"
}

// ImageKey is the hash of everything an image is built from: the source
// tree's image inputs, the profile, the kernel modules (names and bytes),
// the target and the Go toolchain. Same key, same image bytes (the build
// is reproducible), so an image with the key is reused as it is.
func ImageKey(repo string, m Machine, profile, modulesDir string) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "uroute image v1\x00%s\x00", m.Name)
	if v, err := exec.Command("go", "env", "GOVERSION").Output(); err == nil {
		fmt.Fprintf(h, "%s\x00", strings.TrimSpace(string(v)))
	}
	add := func(name, file string) error {
		f, err := os.Open(file)
		if err != nil {
			return err
		}
		defer f.Close()
		fmt.Fprintf(h, "%s\x00", name)
		n, err := io.Copy(h, f)
		fmt.Fprintf(h, "\x00%d\x00", n)
		return err
	}
	var files []string
	err := filepath.WalkDir(repo, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(repo, p)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if rel != "." && skipDir(rel) {
				return filepath.SkipDir
			}
			return nil
		}
		if d.Type().IsRegular() && imageInput(rel) {
			files = append(files, rel)
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("image key: %w", err)
	}
	sort.Strings(files)
	for _, f := range files {
		if err := add("src/"+f, filepath.Join(repo, f)); err != nil {
			return "", fmt.Errorf("image key: %w", err)
		}
	}
	if err := add("profile", profile); err != nil {
		return "", fmt.Errorf("image key: %w", err)
	}
	if modulesDir != "" {
		ents, err := os.ReadDir(modulesDir)
		if err != nil {
			return "", fmt.Errorf("image key: %w", err)
		}
		for _, e := range ents { // ReadDir sorts by name
			if e.Type().IsRegular() {
				if err := add("modules/"+e.Name(), filepath.Join(modulesDir, e.Name())); err != nil {
					return "", fmt.Errorf("image key: %w", err)
				}
			}
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Image is an image build: the machine (its KernelDir's modules go in),
// the board profile file, and where it was put.
type Image struct {
	Path  string
	Key   string
	Built bool          // false: reused from the cache
	Took  time.Duration // the build (or the key, when reused)
}

// BuildImage returns the machine's image with the given profile, built by
// scripts/build-image.sh unless the cache ($UROUTE_CACHE/images) already
// holds one with the same ImageKey. Images of older keys for the same
// kernel and profile are removed, all but the newest two.
func BuildImage(ctx context.Context, repo string, m Machine, profile string, log io.Writer) (Image, error) {
	return BuildImageVariant(ctx, repo, m, profile, Variant{}, log)
}

// Variant is what a test's image has beyond BuildImage's inputs: more of
// build-image.sh's environment (EXTRA_CMDS=uroute-crashload,
// UPGRADE_KEYS=FILE) and the files that environment brings in. Name keeps
// its images apart in the cache; Env and the bytes of Files go into the
// key, so a changed upgrade key is a new image.
type Variant struct {
	Name  string
	Env   []string
	Files []string
	// NoModules leaves the kernel's modules out: the image a router
	// whose kernel has those drivers built in would carry, for
	// scripts/image-sizes.sh. It boots none of the QEMU machines.
	NoModules bool
}

// TestTools are the commands every test image carries and a router's
// does not: uroute-probe (marked frames, background jobs for VM.Spawn).
// build-image.sh builds them as binaries of their own, so that a test
// image's busybox is the router's, byte for byte.
var TestTools = []string{"uroute-probe"}

// WithTestTools is v with TestTools added to its EXTRA_CMDS, named "test"
// when v has no name.
func (v Variant) WithTestTools() Variant {
	w := v
	w.Env = nil
	extra := strings.Join(TestTools, " ")
	for _, e := range v.Env {
		if cmds, ok := strings.CutPrefix(e, "EXTRA_CMDS="); ok {
			extra = strings.TrimSpace(extra + " " + cmds)
			continue
		}
		w.Env = append(w.Env, e)
	}
	w.Env = append(w.Env, "EXTRA_CMDS="+extra)
	if w.Name == "" {
		w.Name = "test"
	}
	return w
}

// key is ImageKey extended by the variant (ImageKey itself for none).
func (v Variant) key(repo string, m Machine, profile, modules string) (string, error) {
	if v.NoModules {
		modules = ""
	}
	key, err := ImageKey(repo, m, profile, modules)
	if err != nil || (v.Name == "" && len(v.Env) == 0 && len(v.Files) == 0 && !v.NoModules) {
		return key, err
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00", key, v.Name)
	if v.NoModules {
		fmt.Fprintf(h, "no modules\x00")
	}
	for _, e := range v.Env {
		fmt.Fprintf(h, "env %s\x00", e)
	}
	for _, f := range v.Files {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", fmt.Errorf("image key: %w", err)
		}
		fmt.Fprintf(h, "file %d\x00", len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// fileName is the variant's part of its images' file names.
func (v Variant) fileName() string {
	if v.NoModules {
		return strings.TrimPrefix(v.Name+"-nomodules", "-")
	}
	return v.Name
}

// KeyPath is the variant's image key and where BuildImageVariant keeps
// its image, without building it.
func (v Variant) KeyPath(repo string, m Machine, profile string) (key, path string, err error) {
	key, err = v.key(repo, m, profile, filepath.Join(m.KernelDir(), "modules"))
	if err != nil {
		return "", "", err
	}
	return key, imagePath(m, profile, v.fileName(), key), nil
}

// BuildImageVariant is BuildImage for an image with more in it (Variant),
// cached the same way under its own name.
func BuildImageVariant(ctx context.Context, repo string, m Machine, profile string, v Variant, log io.Writer) (Image, error) {
	start := time.Now()
	modules := filepath.Join(m.KernelDir(), "modules")
	if _, err := os.Stat(filepath.Join(modules, "load-order")); err != nil && !v.NoModules {
		return Image{}, fmt.Errorf("kernel modules: %w (scripts/fetch-kernel.sh %s %s)", err, m.Name, m.KernelDir())
	}
	key, err := v.key(repo, m, profile, modules)
	if err != nil {
		return Image{}, err
	}
	img := Image{Path: imagePath(m, profile, v.fileName(), key), Key: key}
	dir, name := filepath.Split(img.Path)
	prefix := name[:len(name)-len(key[:16])-len(".cpio")]
	if _, err := os.Stat(img.Path); err == nil {
		img.Took = time.Since(start)
		return img, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Image{}, err
	}
	tmp := img.Path + fmt.Sprintf(".tmp%d", os.Getpid())
	cmd := exec.CommandContext(ctx, filepath.Join(repo, "scripts", "build-image.sh"), m.Name, tmp)
	cmd.Env = append(os.Environ(), "BOARD_FILE="+profile, "MODULES_DIR="+modules)
	if v.NoModules {
		cmd.Env = append(os.Environ(), "BOARD_FILE="+profile, "MODULES_DIR=")
	}
	cmd.Env = append(cmd.Env, v.Env...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Run(); err != nil {
		os.Remove(tmp)
		return Image{}, fmt.Errorf("build-image.sh %s: %w", m.Name, err)
	}
	// A source edited during the build: the image is of neither key.
	// Used this once, never cached under the key computed before.
	if again, err := v.key(repo, m, profile, modules); err != nil || again != key {
		uncached := filepath.Join(dir, "uncached-"+name)
		if err := os.Rename(tmp, uncached); err != nil {
			return Image{}, err
		}
		fmt.Fprintf(log, "qemu: inputs changed during the build; %s is not cached\n", uncached)
		img.Path, img.Built, img.Took = uncached, true, time.Since(start)
		return img, nil
	}
	if err := os.Rename(tmp, img.Path); err != nil {
		return Image{}, err
	}
	img.Built, img.Took = true, time.Since(start)
	prune(dir, prefix, 2)
	return img, nil
}

// ImagePath is where BuildImage keeps the image of key:
// $UROUTE_CACHE/images/KERNELDIR-PROFILE-KEY.cpio.
func ImagePath(m Machine, profile, key string) string {
	return imagePath(m, profile, "", key)
}

// imagePath is ImagePath with a variant's name after the profile's.
func imagePath(m Machine, profile, variant, key string) string {
	name := filepath.Base(m.KernelDir()) + "-" + strings.TrimSuffix(filepath.Base(profile), ".toml")
	if variant != "" {
		name += "-" + variant
	}
	return filepath.Join(CacheDir(), "images", name+"-"+key[:16]+".cpio")
}

// BoardProfile is the profile build-image.sh installs by default:
// $BOARD_FILE, else board/profiles/$BOARD.toml, BOARD defaulting to
// qemu-ARCH.
func BoardProfile(repo string, m Machine) (string, error) {
	p := os.Getenv("BOARD_FILE")
	if p == "" {
		board := os.Getenv("BOARD")
		if board == "" {
			board = "qemu-" + m.Name
		}
		p = filepath.Join(repo, "board", "profiles", board+".toml")
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(abs); err != nil {
		return "", fmt.Errorf("board profile: %w", err)
	}
	return abs, nil
}

// prune removes all but the newest keep images named prefix*.cpio.
func prune(dir, prefix string, keep int) {
	old, _ := filepath.Glob(filepath.Join(dir, prefix+strings.Repeat("?", 16)+".cpio"))
	if len(old) <= keep {
		return
	}
	mtime := func(f string) time.Time {
		fi, err := os.Stat(f)
		if err != nil {
			return time.Time{}
		}
		return fi.ModTime()
	}
	sort.Slice(old, func(i, j int) bool { return mtime(old[i]).After(mtime(old[j])) })
	for _, f := range old[keep:] {
		os.Remove(f)
		os.Remove(f + ".reproducible") // scripts/test.sh's stamp
	}
}
