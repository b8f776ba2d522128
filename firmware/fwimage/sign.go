package fwimage

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
)

// A signed image is the FIT followed by a fixed-size trailer, as OpenWrt's
// sysupgrade images carry their metadata and signature after the image:
// U-Boot reads the FIT by its own header's size and never sees the
// trailer, and the signature covers every byte U-Boot will boot.
//
//	signature [64]  Ed25519ph (SHA-512 prehash) of the FIT, context sigContext
//	key ID    [8]   first 8 bytes of SHA-256 of the public key
//	FIT size  [8]   big-endian, must equal the FIT header's totalsize
//	magic     [16]  trailerMagic
const (
	trailerMagic = "uroute signed v1"
	TrailerSize  = 64 + 8 + 8 + len(trailerMagic)
	sigContext   = "uroute firmware image v1"
)

// KeyID names a public key in the trailer.
func KeyID(pub ed25519.PublicKey) [8]byte {
	sum := sha256.Sum256(pub)
	var id [8]byte
	copy(id[:], sum[:8])
	return id
}

func sigOptions() *ed25519.Options {
	return &ed25519.Options{Hash: crypto.SHA512, Context: sigContext}
}

// Sign returns fit with its signature trailer appended.
func Sign(fit []byte, priv ed25519.PrivateKey) ([]byte, error) {
	if _, err := ParseFIT(fit); err != nil {
		return nil, err
	}
	digest := sha512.Sum512(fit)
	sig, err := priv.Sign(nil, digest[:], sigOptions())
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(fit)+TrailerSize)
	out = append(out, fit...)
	out = append(out, sig...)
	id := KeyID(priv.Public().(ed25519.PublicKey))
	out = append(out, id[:]...)
	out = binary.BigEndian.AppendUint64(out, uint64(len(fit)))
	return append(out, trailerMagic...), nil
}

// VerifySigned checks the trailer of a signed image against the trusted
// keys and returns the FIT it covers. It checks the signature only;
// ParseFIT checks the FIT.
func VerifySigned(signed []byte, trusted []ed25519.PublicKey) ([]byte, error) {
	if len(signed) < TrailerSize || string(signed[len(signed)-len(trailerMagic):]) != trailerMagic {
		return nil, fmt.Errorf("%w: no signature trailer (unsigned image? sign it with scripts/sign-image.sh)", ErrSignature)
	}
	tr := signed[len(signed)-TrailerSize:]
	sig, id := tr[:64], tr[64:72]
	fitLen := binary.BigEndian.Uint64(tr[72:80])
	if fitLen != uint64(len(signed)-TrailerSize) {
		return nil, fmt.Errorf("%w: trailer says the FIT is %d bytes, the file holds %d", ErrSignature, fitLen, len(signed)-TrailerSize)
	}
	fit := signed[:fitLen]
	if total, err := fdtTotalSize(fit); err != nil {
		return nil, err
	} else if uint64(total) != fitLen {
		return nil, fmt.Errorf("%w: FIT header says %d bytes, the signature covers %d", ErrFIT, total, fitLen)
	}
	var key ed25519.PublicKey
	for _, k := range trusted {
		kid := KeyID(k)
		if bytes.Equal(kid[:], id) {
			key = k
		}
	}
	if key == nil {
		return nil, fmt.Errorf("%w: signed by key %x, which this firmware does not trust", ErrSignature, id)
	}
	digest := sha512.Sum512(fit)
	if err := ed25519.VerifyWithOptions(key, digest[:], sig, sigOptions()); err != nil {
		return nil, fmt.Errorf("%w: key %x: %v", ErrSignature, id, err)
	}
	return fit, nil
}

// ParsePublicKeys reads a trusted-keys file: one hex-encoded ed25519
// public key a line; blank lines and # comments are skipped.
func ParsePublicKeys(text string) ([]ed25519.PublicKey, error) {
	var keys []ed25519.PublicKey
	for i, l := range strings.Split(text, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		b, err := hex.DecodeString(l)
		if err != nil || len(b) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("line %d: want %d hex-encoded bytes of an ed25519 public key", i+1, ed25519.PublicKeySize)
		}
		keys = append(keys, ed25519.PublicKey(b))
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("no public key")
	}
	return keys, nil
}

// ParsePrivateKey reads a private key file: the hex-encoded 32-byte seed.
func ParsePrivateKey(text string) (ed25519.PrivateKey, error) {
	b, err := hex.DecodeString(strings.TrimSpace(text))
	if err != nil || len(b) != ed25519.SeedSize {
		return nil, fmt.Errorf("want %d hex-encoded bytes of an ed25519 seed", ed25519.SeedSize)
	}
	return ed25519.NewKeyFromSeed(b), nil
}
