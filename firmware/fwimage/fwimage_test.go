package fwimage

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/uroute/uroute/firmware/fwimage/fittest"
)

func testFIT(board, arch, version string, kernel, ramdisk []byte) []byte {
	return fittest.FIT(board, arch, version, kernel, ramdisk)
}

func TestParseFIT(t *testing.T) {
	fit := testFIT("qemu-arm64", "arm64", "v2", []byte("kernel bytes"), []byte("initramfs bytes"))
	info, err := ParseFIT(fit)
	if err != nil {
		t.Fatal(err)
	}
	if info.Board != "qemu-arm64" || info.Arch != "arm64" || info.Version != "v2" || len(info.Images) != 2 {
		t.Fatalf("info %+v", info)
	}
	if err := CheckTarget(info, "qemu-arm64", "arm64"); err != nil {
		t.Fatal(err)
	}
	if err := CheckTarget(info, "qemu-armv7", "armv7"); !errors.Is(err, ErrWrongTarget) {
		t.Fatalf("another board's image: %v, want ErrWrongTarget", err)
	}
	// A flipped byte in either image's data fails its hash. (Names and
	// descriptions are not hashed: the signature covers them.)
	for _, want := range [][]byte{[]byte("kernel bytes"), []byte("initramfs bytes")} {
		i := bytes.Index(fit, want)
		bad := bytes.Clone(fit)
		bad[i+3] ^= 0x01
		if _, err := ParseFIT(bad); !errors.Is(err, ErrFIT) {
			t.Errorf("%q damaged: %v, want ErrFIT", want, err)
		}
		if _, err := ReadFITInfo(bad); err != nil {
			t.Errorf("ReadFITInfo checks no hashes, but: %v", err)
		}
	}
	for _, n := range []int{0, 39, 100, len(fit) - 1} {
		if _, err := ParseFIT(fit[:n]); err == nil {
			t.Errorf("truncated to %d bytes: accepted", n)
		}
	}
}

func TestSignVerify(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	otherPub, otherPriv, _ := ed25519.GenerateKey(nil)
	fit := testFIT("qemu-arm64", "arm64", "v2", []byte("k"), []byte("r"))
	signed, err := Sign(fit, priv)
	if err != nil {
		t.Fatal(err)
	}
	got, err := VerifySigned(signed, []ed25519.PublicKey{otherPub, pub})
	if err != nil || !bytes.Equal(got, fit) {
		t.Fatalf("VerifySigned: %v", err)
	}
	if _, err := VerifySigned(signed, []ed25519.PublicKey{otherPub}); !errors.Is(err, ErrSignature) {
		t.Errorf("untrusted key: %v", err)
	}
	if _, err := VerifySigned(fit, []ed25519.PublicKey{pub}); !errors.Is(err, ErrSignature) {
		t.Errorf("unsigned: %v", err)
	}
	// Every single flipped bit anywhere in the signed image is refused.
	for i := range signed {
		bad := bytes.Clone(signed)
		bad[i] ^= 0x01
		if _, err := VerifySigned(bad, []ed25519.PublicKey{pub}); err == nil {
			t.Errorf("byte %d flipped: verified", i)
		}
	}
	// A signature by the other key over the same FIT, with our key's ID
	// pasted in, fails the check.
	forged, _ := Sign(fit, otherPriv)
	id := KeyID(pub)
	copy(forged[len(fit)+64:], id[:])
	if _, err := VerifySigned(forged, []ed25519.PublicKey{pub}); !errors.Is(err, ErrSignature) {
		t.Errorf("forged: %v", err)
	}
}

func TestEnvRoundTrip(t *testing.T) {
	e := Env{"BOOT_ORDER": "B A", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "2", "uroute_gen": "1f"}
	block, err := e.Encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeEnv(block)
	if err != nil || len(got) != len(e) || got["BOOT_ORDER"] != "B A" {
		t.Fatalf("DecodeEnv: %v %v", got, err)
	}
	block[10] ^= 1
	if _, err := DecodeEnv(block); !errors.Is(err, ErrEnv) {
		t.Fatalf("damaged: %v", err)
	}
	if _, err := (Env{"a=b": "c"}).Encode(); !errors.Is(err, ErrEnv) {
		t.Fatalf("bad name: %v", err)
	}
}

// TestEnvMkenvimage checks the block against U-Boot's own tool: what
// mkenvimage makes from the same variables is what Encode makes.
func TestEnvMkenvimage(t *testing.T) {
	tool, err := exec.LookPath("mkenvimage")
	if err != nil {
		t.Skip("mkenvimage (u-boot-tools) not installed; scripts/deps.sh installs it")
	}
	dir := t.TempDir()
	txt := filepath.Join(dir, "env.txt")
	os.WriteFile(txt, []byte("BOOT_A_LEFT=3\nBOOT_ORDER=A B\nuroute_gen=1\n"), 0o644)
	out := filepath.Join(dir, "env.bin")
	if b, err := exec.Command(tool, "-p", "0", "-s", "0x10000", "-o", out, txt).CombinedOutput(); err != nil {
		t.Fatalf("mkenvimage: %v\n%s", err, b)
	}
	want, _ := os.ReadFile(out)
	got, _ := Env{"BOOT_A_LEFT": "3", "BOOT_ORDER": "A B", "uroute_gen": "1"}.Encode()
	if !bytes.Equal(got, want) {
		t.Fatalf("Encode differs from mkenvimage: first bytes %x vs %x", got[:48], want[:48])
	}
}

// memDev is an in-memory env partition.
type memDev struct{ b []byte }

func (m *memDev) ReadAt(p []byte, off int64) (int, error)  { return copy(p, m.b[off:]), nil }
func (m *memDev) WriteAt(p []byte, off int64) (int, error) { return copy(m.b[off:], p), nil }
func (m *memDev) Sync() error                              { return nil }

func TestEnvStoreAlternates(t *testing.T) {
	dev := &memDev{b: bytes.Repeat([]byte{0xff}, EnvCopies*EnvSize)}
	st := EnvStore{Dev: dev}
	cur, err := st.Load()
	if !errors.Is(err, ErrEnv) || cur.Copy != -1 || cur.Env[VarOrder] != "A B" {
		t.Fatalf("erased: %+v %v", cur, err)
	}
	for i := 0; i < 5; i++ {
		e := Env{VarOrder: "A B"}
		e.SetLeft("A", i)
		next, err := st.Save(cur, e)
		if err != nil {
			t.Fatal(err)
		}
		if next.Copy == cur.Copy {
			t.Fatalf("write %d went to the current copy %d", i, cur.Copy)
		}
		cur, err = st.Load()
		if err != nil || cur.Left("A") != i || cur.Gen != next.Gen {
			t.Fatalf("after write %d: %+v %v", i, cur, err)
		}
	}
	// Tear the copy the next write goes to: the current one still wins.
	other := 1 - cur.Copy
	dev.b[other*EnvSize+100] ^= 0xff
	again, err := st.Load()
	if err != nil || again.Gen != cur.Gen {
		t.Fatalf("torn other copy: %+v %v", again, err)
	}
}
